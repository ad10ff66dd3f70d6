"""The step kinds described for people: one kind in full (`runbook kinds KIND`), and the
catalogue page `docs/catalogue.md`, generated from the registry so it cannot drift:

    python -m runner.catalogue_doc > docs/catalogue.md

Everything here comes from what a backend registers: the kind's summary, its function's and
its parameter model's docstrings, the model's JSON schema (types, defaults, limits) and
`StepKind.result` (the fields it returns).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .registry import Registry, StepKind

# JSON-schema keywords that bound a value, shown as the parameter's limits.
_LIMITS = {"minimum": ">= {}", "maximum": "<= {}", "exclusiveMinimum": "> {}",
           "exclusiveMaximum": "< {}", "minLength": "at least {} characters",
           "maxLength": "at most {} characters", "minItems": "at least {} items",
           "maxItems": "at most {} items", "pattern": "matches `{}`"}
REGENERATE = "python -m runner.catalogue_doc > docs/catalogue.md"


def _type(schema: dict[str, Any]) -> str:
    """A parameter's type in a few words: `integer`, `string or null`, `list of string`."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    for combined in ("anyOf", "oneOf", "allOf"):
        if combined in schema:
            return " or ".join(dict.fromkeys(_type(s) for s in schema[combined]))
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of {_type(schema['additionalProperties'])}"
    return " or ".join(kind) if isinstance(kind, list) else str(kind)


def _limits(schema: dict[str, Any]) -> list[str]:
    found = [template.format(schema[key]) for key, template in _LIMITS.items() if key in schema]
    for option in schema.get("anyOf", []):  # `int | None`: the int's limits
        found += _limits(option)
    if isinstance(schema.get("items"), dict):
        found += [f"each {limit}" for limit in _limits(schema["items"])]
    return list(dict.fromkeys(found))


def _doc(obj: Any) -> str:
    return inspect.cleandoc(obj.__doc__) if getattr(obj, "__doc__", None) else ""


def describe(kind: StepKind) -> dict[str, Any]:
    """One kind in full, as `runbook kinds KIND -o json` prints it."""
    schema = kind.params.model_json_schema()
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        params.append({"name": name, "type": _type(prop), "required": name in required,
                       "default": prop["default"] if "default" in prop
                       else _factory_default(kind, name, name in required),
                       "limits": _limits(prop), "description": prop.get("description", "")})
    return {
        "name": kind.name, "backend": kind.name.split(".", 1)[0],
        "target_kind": kind.target_kind, "mutating": kind.mutating,
        "read_only_by_author": kind.read_only_by_author, "summary": kind.summary,
        "description": "\n\n".join(filter(None, [_doc(kind.func), _doc(kind.params)])),
        "timeout": kind.timeout, "params": params, "result": dict(kind.result),
        "params_schema": schema,
    }


def _factory_default(kind: StepKind, name: str, required: bool) -> Any:
    """A default made by a factory (`[]`, `{}`): the schema leaves it out, the model knows."""
    from pydantic_core import to_jsonable_python

    for python_name, field in kind.params.model_fields.items():
        if not required and name in {python_name, field.alias}:
            return to_jsonable_python(field.get_default(call_default_factory=True))
    return None


def _safety(document: dict[str, Any]) -> str:
    if document["mutating"]:
        return "MUTATING: runs only as an approved remedy"
    if document["read_only_by_author"]:
        return "read-only (marked by the playbook's author)"
    return "read-only"


def _default(param: dict[str, Any]) -> str:
    return "required" if param["required"] else f"default {json.dumps(param['default'])}"


def text(kind: StepKind) -> str:
    """`runbook kinds KIND`: what it reads, its parameters and what it returns."""
    document = describe(kind)
    out = [f"{kind.name}  [{kind.target_kind}]  {_safety(document)}  "
           f"timeout {kind.timeout:g}s", f"  {kind.summary}"]
    if document["description"]:
        out += [""] + [f"  {line}".rstrip() for line in document["description"].splitlines()]
    out += ["", "params" if document["params"] else "params: none"]
    for param in document["params"]:
        limits = f"; {', '.join(param['limits'])}" if param["limits"] else ""
        out.append(f"  {param['name']} ({param['type']}, {_default(param)}{limits})")
        if param["description"]:
            out.append(f"      {param['description']}")
    out += ["", "result" if document["result"] else "result: not documented"]
    out += [f"  {field}: {meaning}" for field, meaning in document["result"].items()]
    return "\n".join(out) + "\n"


def _cell(value: Any) -> str:
    """Text that stays inside one Markdown table cell."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _section(kind: StepKind) -> list[str]:
    document = describe(kind)
    out = [f"### `{kind.name}`", "",
           f"{_cell(kind.summary)}  ", f"*{_safety(document)}; targets of kind "
           f"`{kind.target_kind}`; timeout {kind.timeout:g}s*", ""]
    if document["description"]:
        out += [document["description"], ""]
    if document["params"]:
        out += ["| parameter | type | default | limits | meaning |", "|---|---|---|---|---|"]
        out += [f"| `{p['name']}` | {_cell(p['type'])} | {_cell(_default(p))} | "
                f"{_cell(', '.join(p['limits']))} | {_cell(p['description'])} |"
                for p in document["params"]]
    else:
        out.append("No parameters.")
    out.append("")
    if document["result"]:
        out += ["| result field | meaning |", "|---|---|"]
        out += [f"| `{_cell(field)}` | {_cell(meaning)} |"
                for field, meaning in document["result"].items()]
    else:
        out.append("Result fields not documented.")
    return [*out, ""]


def markdown_section(kind: StepKind) -> str:
    """One kind's section of the catalogue page."""
    return "\n".join(_section(kind))


def markdown(registry: Registry) -> str:
    """The catalogue page: every kind, grouped by backend (the name's prefix)."""
    kinds = list(registry)
    groups: dict[str, list[StepKind]] = {}
    for kind in kinds:
        groups.setdefault(kind.name.split(".", 1)[0], []).append(kind)
    mutating = sum(k.mutating for k in kinds)
    out = ["# Step kinds", "",
           f"Generated from the installed backends by `{REGENERATE}` (or `runbook kinds "
           "-o markdown`); do not edit by hand: a unit test fails when it is stale.", "",
           f"{len(kinds)} kinds: {len(kinds) - mutating} read-only, {mutating} mutating "
           "(a mutating kind runs only as a remedy, after a recorded approval). "
           "`runbook kinds KIND` shows one kind; `-o json` adds its parameters' JSON schema.",
           "", "| backend | read-only | mutating | targets |", "|---|---|---|---|"]
    for backend, members in groups.items():
        changing = sum(k.mutating for k in members)
        targets = ", ".join(sorted({f"`{k.target_kind}`" for k in members}))
        out.append(f"| [{backend}](#{backend}) | {len(members) - changing} | {changing} | "
                   f"{targets} |")
    for backend, members in groups.items():
        out += ["", f"## {backend}", ""]
        out += _backend_summaries(registry, members)
        out += ["| kind | | summary |", "|---|---|---|"]
        out += [f"| [`{k.name}`](#{k.name.replace('.', '')}) | "
                f"{'MUTATING' if k.mutating else 'read-only'} | {_cell(k.summary)} |"
                for k in members]
        out.append("")
        for kind in members:
            out += _section(kind)
    return "\n".join(out).rstrip("\n") + "\n"


def _backend_summaries(registry: Registry, members: Iterable[StepKind]) -> list[str]:
    lines = []
    for target_kind in sorted({k.target_kind for k in members}):
        summary = registry.backend(target_kind).summary if registry.has_backend(target_kind) \
            else ""
        lines.append(f"Targets of kind `{target_kind}`{': ' + _cell(summary) if summary else ''}.")
    return [*lines, ""]


def shipped_registry() -> Registry:
    """The backends installed with runbook, without RUNBOOK_BACKENDS' development ones."""
    import os

    from .registry import Registry

    extra = os.environ.pop("RUNBOOK_BACKENDS", None)
    try:
        return Registry.from_entry_points()
    finally:
        if extra is not None:
            os.environ["RUNBOOK_BACKENDS"] = extra


def main() -> None:
    print(markdown(shipped_registry()), end="")


if __name__ == "__main__":
    main()
