"""Environment variables a target's settings name (`dsn_env`, `key_env`, `token_env`, ...)
that are not set here: found by `plan` and `validate` before a run, not once per step of it.

Any setting whose name ends in `_env` names a variable, in every backend's settings, nested
ones too: a new backend's `*_env` fields are checked without being listed anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from pydantic import BaseModel, RootModel


class MissingVariable(NamedTuple):
    target: str  # the first target that names it
    source: str  # that target's file:line in the inventory
    setting: str  # e.g. dsn_env
    variable: str

    def __str__(self) -> str:
        return (f"target {self.target}: {self.setting} names {self.variable}, which is not set "
                "in this environment")


def missing_variables(targets: Iterable[Any]) -> list[MissingVariable]:
    """Each unset variable once, with the first target (in the order given) naming it."""
    found: dict[str, MissingVariable] = {}
    for target in targets:
        for setting, variable in _env_settings(target.settings):
            if variable not in os.environ and variable not in found:
                found[variable] = MissingVariable(target.name, getattr(target, "source", ""),
                                                  setting, variable)
    return list(found.values())


def _env_settings(value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, RootModel):
        yield from _env_settings(value.root)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            field = getattr(value, name)
            if name.endswith("_env") and isinstance(field, str) and field:
                yield name, field
            else:
                yield from _env_settings(field)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _env_settings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _env_settings(item)
