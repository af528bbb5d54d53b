"""Engines schedule the stages: `local` (one process, decode workers overlapped with inference) and `ray`."""
