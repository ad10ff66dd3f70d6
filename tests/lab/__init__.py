"""The lab: a local Docker engine and images built from Debian packages (docs/ARCHITECTURE.md)."""
