"""Command lines built from templates: a rendered value must not become an option.

`argv: [sync-engine, run, --client, "{{ params.client }}"]` with a client named `--reset`
would reset the client: a value that came from outside (an alert's label, a file name a
probe read) would have changed what the command does. So every argv element that a
template produced, and that renders to text starting with '-', is refused before the step
or remedy is resolved, unless the step says `allow_options: true`. Elements written
literally in the playbook (`--client`, `--skip-errors`) are the author's and pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import expressions

# The `with` fields that become a command's argv (ssh.exec, ssh.exec_read_only).
ARGV_FIELDS = ("argv",)


class OptionRefused(expressions.ExpressionError):
    """A templated argv element renders to something an option parser would take."""


def refuse_templated_options(raw: Mapping[str, Any], rendered: Mapping[str, Any], *,
                             allowed: bool = False) -> None:
    """Raise OptionRefused when a templated element of an argv field renders to '-...'."""
    if allowed:
        return
    for field in ARGV_FIELDS:
        template, values = raw.get(field), rendered.get(field)
        if not isinstance(values, list):
            continue
        for index, value in enumerate(values):
            # A whole-list template: every element came from it.
            source = template[index] if isinstance(template, list) and \
                index < len(template) else template
            if isinstance(value, str) and value.startswith("-") and \
                    expressions.is_template(source):
                raise OptionRefused(
                    f"{field}[{index}]: {source!r} renders to {value!r}, which starts with "
                    "'-' and would be read as an option; refused (a step that means it "
                    "says `allow_options: true`)")
