"""Storage and tables: URLs to filesystems, manifests in, the output schemas and the committed outputs.

Imports only `vidbatch.core`; stages, engines and apps read and write through it.
"""
