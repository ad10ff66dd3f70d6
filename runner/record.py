"""`runbook record`: a fixture (`runner.fixtures`) written from a recorded run.

The fixture holds the run's targets, params, identities, step and verify results, and as
its expectations what a replay of exactly that concludes (findings, severity, remedies and
their arguments, verify): it passes when written, and fails when an edited playbook
concludes otherwise. Secrets are masked again on the way out (`runner.redact`: registered
ones and common shapes), and bulky evidence is trimmed: long strings cut, long lists
shortened. When trimming changes what a replay concludes, the caller is told.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .recording import RecordedStep, Recording
from .redact import SECRETS
from .registry import Registry

MAX_TEXT = 2000  # characters of one string in a result
MAX_ITEMS = 50  # items of one list in a result


def trim(value: Any) -> Any:
    """Evidence cut to what a fixture needs, secrets masked."""
    if isinstance(value, str):
        value = SECRETS.scrub(value)
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + " ... (trimmed)"
    if isinstance(value, dict):
        return {str(SECRETS.scrub(str(k))): trim(v) for k, v in value.items()}
    if isinstance(value, list):
        return [trim(v) for v in value[:MAX_ITEMS]]
    return value


def trimmed(recording: Recording) -> Recording:
    def step(s: RecordedStep) -> RecordedStep:  # masked as a whole too: secret-named keys
        return RecordedStep(s.status, SECRETS.scrub(trim(s.result)), trim(s.error))

    return Recording(recording.run_id, recording.playbook_path, recording.playbook_text,
                     recording.targets, SECRETS.scrub(trim(recording.params)),
                     {k: step(v) for k, v in recording.steps.items()}, recording.findings,
                     recording.remedies, {k: step(v) for k, v in recording.verify.items()},
                     recording.identities)


def expectations(document: dict[str, Any]) -> dict[str, Any]:
    """What a replay concluded, as a fixture's `expect`."""
    remedies: dict[str, Any] = {}
    for r in document["remedies"]:
        remedies[r["id"]] = ({"status": "proposed", "target": r["target"], "args": r["args"]}
                             if r["status"] == "proposed" else r["status"])
    return {"severity": document["severity"],
            "findings": {f["id"]: ({"status": f["status"], "severity": f["severity"]}
                                   if f["status"] == "fired" else f["status"])
                         for f in document["findings"]},
            "remedies": remedies,
            "verify": {v["id"]: v["status"] for v in document["verify"]
                       if v["status"] != "not recorded"}}


def fixture_of(recording: Recording, registry: Registry, to: Path) -> tuple[str, list[str]]:
    """The fixture's YAML text, and notes for the person recording it."""
    import yaml

    from .replay import replay

    notes: list[str] = []
    small = trimmed(recording)
    document = replay(small, registry)
    if document["diff"] != replay(recording, registry)["diff"]:
        notes.append("trimming the evidence changed what a replay concludes; the fixture "
                     "expects what the trimmed evidence gives")
    data: dict[str, Any] = {}
    source = Path(recording.playbook_path)
    if source.is_file() and source.read_text() == recording.playbook_text:
        data["playbook"] = os.path.relpath(source.resolve(), to.resolve().parent)
    else:
        notes.append("the playbook file differs from the one the run used (or is gone): "
                     "the fixture holds the recorded text")
        data["playbook_text"] = recording.playbook_text
    data.update({
        "run_id": recording.run_id,
        "targets": recording.targets,
        "params": small.params,
        "identities": recording.identities,
        "proposed": {rid: {"kind": r.kind, "target": r.target,
                           "args": SECRETS.scrub(trim(r.args))}
                     for rid, r in recording.remedies.items() if r.proposed},
        "steps": {k: _step_data(v) for k, v in small.steps.items()},
        "verify": {k: _step_data(v) for k, v in small.verify.items()},
        "expect": expectations(document),
    })
    header = (f"# Recorded by `runbook record` from run {recording.run_id} of "
              f"{document['playbook']}: step results as the run recorded them (secrets\n"
              f"# masked, strings over {MAX_TEXT} characters and lists over {MAX_ITEMS} "
              "items trimmed); `expect` is what a replay of them concludes.\n")
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    return header + body, notes


def _step_data(step: RecordedStep) -> dict[str, Any]:
    data: dict[str, Any] = {"status": step.status}
    if step.result is not None:
        data["result"] = step.result
    if step.error:
        data["error"] = step.error
    return data


def write_fixture(recording: Recording, registry: Registry, to: Path) -> list[str]:
    text, notes = fixture_of(recording, registry, to)
    to.parent.mkdir(parents=True, exist_ok=True)
    to.write_text(text)
    return notes
