"""The exit codes (their meanings are in the package's docstring)."""

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_UNDIAGNOSED, EXIT_JOURNAL = 0, 1, 2, 3, 4
EXIT_INTERNAL = 5  # a bug or an unforeseen failure: not a finding, not a usage error
