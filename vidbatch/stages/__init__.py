"""The pipeline's stages, in order: manifest -> decode -> classify -> smooth -> assemble -> write.

Each is plain code over NumPy arrays and Arrow tables, with no scheduling
inside; the engines (`vidbatch.engines`) decide where and when they run.
"""
