"""The promotion dashboard: what an ML engineer looks at before promoting (or rolling back) a stage.

``data`` gathers the evidence (registry, statistics, gate verdicts, the tail of ``compare.<stage>``),
``server`` serves it as JSON plus one static page, and guards promote/rollback with a bearer token.
"""
