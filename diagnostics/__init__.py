"""The step library: one module per backend, each registering its probes and actions.

A module's `register(registry)` is its entry point (`runbook.backends` in pyproject.toml).
Client libraries are imported inside functions, never at module import, so loading the
registry for validation stays cheap.
"""
