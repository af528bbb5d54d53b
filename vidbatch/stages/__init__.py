"""The pipeline's stages, in order: decode (probe, sampling, shots) -> classify -> smooth, segments -> assemble.

Each is plain code over NumPy arrays and Arrow tables, with no scheduling
inside; the engines (`vidbatch.engines`) decide where and when they run. The
manifest that feeds them and the writer they feed live in `vidbatch.io`.
"""
