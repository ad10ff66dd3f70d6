"""The playbook JSON Schema, for editors: completion of fields and of step kind names."""

from __future__ import annotations

from typing import Any

from .model import Playbook
from .registry import Registry

SCHEMA_ID = "https://github.com/runbook-runner/runbook/playbook.schema.json"


def playbook_schema(registry: Registry) -> dict[str, Any]:
    schema = Playbook.model_json_schema(by_alias=True)
    probes = sorted(k.name for k in registry if not k.mutating)
    actions = sorted(k.name for k in registry if k.mutating)
    defs = schema["$defs"]
    for name in ("Step", "Verify"):
        defs[name]["properties"]["run"] = {"enum": probes, "description": "read-only step kind"}
    defs["Remedy"]["properties"]["run"] = {"enum": actions, "description": "mutating step kind"}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "runbook playbook", **schema}
