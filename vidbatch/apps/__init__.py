"""What users run besides `label`: train, eval, annotate, report, describe (inspect), demo, synth.

Apps call the pipeline and the stages; nothing in the library below imports an app.
"""
