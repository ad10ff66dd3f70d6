"""(being written)"""
from __future__ import annotations

from runner.registry import Registry


def register(registry: Registry) -> None:
    """Adds this module's kinds."""
