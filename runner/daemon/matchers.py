"""Alertmanager-style label matchers, parsed from a route's `match:` list.

A matcher is `label="value"`, `label!="value"`, `label=~"regex"` or `label!~"regex"`; a
regex must match the whole value, as in Alertmanager; a missing label reads as "".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$')


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op in {"=", "!="}:
            return (actual == self.value) == (self.op == "=")
        return bool(re.fullmatch(self.value, actual)) == (self.op == "=~")


def parse_matcher(text: str) -> Matcher:
    match = _MATCHER.match(text)
    if not match:
        raise ValueError(f'bad matcher {text!r}: use label="value", label!="value", '
                         'label=~"regex" or label!~"regex"')
    label, op, value = match.groups()
    value = value.replace('\\"', '"')
    if op in {"=~", "!~"}:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"bad regex in matcher {text!r}: {exc}") from None
    return Matcher(label, op, value)
