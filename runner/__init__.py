"""runbook: incident runbooks as declarative playbooks.

Read-only diagnostics run at once; remedies run only through the gate, after an approval
that is recorded with who gave it. The engine here knows step kinds only through the
registry; the backends (PostgreSQL, ...) live in the `diagnostics` package.
"""

__version__ = "0.1.0"  # the one source: pyproject.toml reads it (hatch dynamic version)
