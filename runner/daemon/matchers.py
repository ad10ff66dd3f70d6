r"""Alertmanager-style label matchers, parsed from a route's `match:` list.

A matcher is `label="value"`, `label!="value"`, `label=~"regex"` or `label!~"regex"`; a
regex must match the whole value, as in Alertmanager; a missing label reads as "".
The text is read as Alertmanager 0.25 reads its `matchers:` (pkg/labels/parse.go): the
value may be unquoted (`alertname=Foo`), an entry may hold several matchers
(`{a="b", c=~"d"}`, braces and a trailing comma optional), and inside a value `\\`, `\"`
and `\n` are escapes while any other backslash stays literal (so a regex's `\.` keeps
its meaning).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# Alertmanager's own: '=~' before '=', the value lazily up to trailing whitespace; Go's \s.
_MATCHER = re.compile(r"^[ \t\n\f\r]*([a-zA-Z_:][a-zA-Z0-9_:]*)[ \t\n\f\r]*(=~|=|!=|!~)"
                      r"[ \t\n\f\r]*(.*?)[ \t\n\f\r]*$", re.DOTALL)


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


def parse_matchers(text: str) -> list[Matcher]:
    """Every matcher of one entry: `{a="b", c!~"d"}`, `a=b,c!=d` or one matcher. Commas
    split matchers outside double quotes (a `\\"` is no quote), as Alertmanager splits them."""
    body = text.removeprefix("{").removesuffix("}")
    parts: list[str] = []
    current: list[str] = []
    inside_quotes = escaped = False
    for char in body:
        if char == "," and not inside_quotes:
            parts.append("".join(current))
            current = []
            continue
        if char == '"':
            inside_quotes = inside_quotes if escaped else not inside_quotes
            escaped = False
        elif char == "\\":
            escaped = not escaped
        else:
            escaped = False
        current.append(char)
    if "".join(current).strip():  # a trailing comma (and blanks) ends the list
        parts.append("".join(current).strip())
    return [parse_matcher(part) for part in parts]


def parse_matcher(text: str) -> Matcher:
    """One matcher: a label name, an operator, a value quoted or not (Alertmanager's
    ParseMatcher, with its escapes and its errors)."""
    match = _MATCHER.match(text)
    if not match:
        raise ValueError(f'bad matcher {text!r}: use label="value", label!="value", '
                         'label=~"regex" or label!~"regex"')
    label, op, raw = match.groups()
    value = _unquoted(text, raw)
    if op in {"=~", "!~"}:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"bad regex in matcher {text!r}: {exc}") from None
    return Matcher(label, op, value)


def _unquoted(text: str, raw: str) -> str:
    if not raw:
        raise ValueError(f"bad matcher {text!r}: the value is not present (write \"\" for empty)")
    quoted = raw.startswith('"')
    body = raw[1:] if quoted else raw
    value: list[str] = []
    escaped = False
    for index, char in enumerate(body):
        last = index == len(body) - 1
        if escaped:
            escaped = False
            value.append("\n" if char == "n" else char if char in '"\\' else "\\" + char)
        elif char == "\\" and not last:
            escaped = True
        elif char == '"':
            if not quoted or not last:
                raise ValueError(f"bad matcher {text!r}: unescaped double quote in the value "
                                 f"{raw!r} (write \\\" for a quote)")
            quoted = False  # the closing quote
        else:
            value.append(char)
    if quoted:
        raise ValueError(f"bad matcher {text!r}: unescaped double quote in the value {raw!r} "
                         "(the closing quote is missing)")
    return "".join(value)
