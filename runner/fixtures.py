"""Playbook fixtures: recorded step results and what must follow from them, in one YAML file.

```yaml
# where the step results come from (a run id, the lab scenario, derived by hand from one)
playbook: ../db-pool-exhausted.yaml     # relative to this file (or `playbook_text:` inline)
run: path/to/runs/<id>                  # optional: steps, targets and params from a run dir
targets: {db: {name: journey-db, kind: postgres}}
params: {idle_after: 60}
identities: {journey-db: {system_identifier: "..."}}   # what targets resolved to (optional)
proposed:                                # what the run proposed: a kind that pins a mutable
  end-idle-transactions:                 # reference (a rollback's image) takes its pinned
    {kind: postgres.terminate_backends, target: journey-db, args: {max: 20}}  # args from here
steps:                                   # step id -> recorded outcome
  usage: {status: ok, result: {used: 97, max: 100, used_pct: 97.0}}
  ping: {status: failed, error: "connection refused"}
verify: {idle_cleared: {status: passed, result: {count: 0}}}
cases:                                   # optional; each case patches the steps above
  - name: idle transactions hold the pool
    steps: {idle_tx: {result: {count: 3}}}   # merged into the step (dicts deeply;
                                             # `replace: true` replaces the result)
    params: {max_terminate: 5}
    expect:
      severity: P1
      findings: {idle-transactions-hold-connections: fired, lock-waits: clear,
                 pool-saturated: {status: fired, severity: P1, says: "97 of 100"}}
      remedies: {end-idle-transactions: {status: proposed, args: {max: 5}},
                 restart-api: not_needed}        # or "not proposed"
      verify: {idle_cleared: passed}
```

The file's own `expect` (what `runbook record` writes) is its first case, then `cases`.
A case runs `runner.replay`: no infrastructure, nothing live.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .recording import RecordedRemedy, RecordedStep, Recording, from_run_dir
from .registry import Registry

NOT_PROPOSED = "not proposed"


@dataclass(frozen=True)
class Case:
    file: Path
    name: str
    recording: Recording
    playbook_text: str
    playbook_path: str
    params: dict[str, Any]
    expect: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"


@dataclass
class Outcome:
    case: Case
    document: dict[str, Any] | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def discover(paths: Iterable[Path]) -> list[Path]:
    """Fixture files: the files named, and every *.yaml/*.yml under the folders named."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.y*ml") if p.suffix in {".yaml", ".yml"})
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(f"no fixture file or folder {path}")
    return found


def read_cases(path: Path) -> list[Case]:
    from . import yamlsource

    doc, problems = yamlsource.read(path)
    if problems:
        raise UsageError("; ".join(str(p) for p in problems))
    data = doc.data
    if not isinstance(data, dict) or not ({"playbook", "playbook_text"} & set(data)):
        raise UsageError(f"{path}: a fixture is a mapping with `playbook` (a path) or "
                         "`playbook_text`")
    if "playbook_text" in data:
        text, where = str(data["playbook_text"]), f"{path}#playbook"
    else:
        book_path = (path.parent / str(data["playbook"])).resolve()
        if not book_path.is_file():
            raise UsageError(f"{path}: playbook {data['playbook']} not found ({book_path})")
        text, where = book_path.read_text(), str(book_path)
    base = _base_recording(path, data, text, where)
    # the file's own `expect` is its first case (as recorded), then its `cases`
    raw_cases = ([{"name": path.stem, "expect": data["expect"]}] if "expect" in data else []) \
        + list(data.get("cases") or [])
    if not raw_cases:
        raw_cases = [{"name": path.stem, "expect": {}}]
    cases = []
    for index, raw in enumerate(raw_cases):
        name = str(raw.get("name") or f"case {index + 1}")
        steps = dict(base.steps)
        for step_id, patch in (raw.get("steps") or {}).items():
            steps[step_id] = _patched(steps.get(step_id), patch)
        verify = dict(base.verify)
        for check_id, patch in (raw.get("verify") or {}).items():
            verify[check_id] = _patched(verify.get(check_id), patch)
        recording = Recording(base.run_id, where, text, base.targets,
                              {**base.params, **(raw.get("params") or {})}, steps,
                              base.findings, base.remedies, verify, base.identities)
        cases.append(Case(path, name, recording, text, where, dict(raw.get("params") or {}),
                          dict(raw.get("expect") or {})))
    return cases


def _base_recording(path: Path, data: dict[str, Any], text: str, where: str) -> Recording:
    if data.get("run"):
        run = from_run_dir(path.parent / str(data["run"]))
        steps, verify = dict(run.steps), dict(run.verify)
        targets, params, identities = dict(run.targets), dict(run.params), dict(run.identities)
        findings, remedies = run.findings, run.remedies
    else:
        steps, verify, targets, params, identities = {}, {}, {}, {}, {}
        findings, remedies = {}, {}
    steps.update({k: _step(v) for k, v in (data.get("steps") or {}).items()})
    verify.update({k: _step(v) for k, v in (data.get("verify") or {}).items()})
    targets.update({role: {"name": str(t["name"]), "kind": str(t["kind"])}
                    for role, t in (data.get("targets") or {}).items()})
    params.update(data.get("params") or {})
    identities.update(data.get("identities") or {})
    recorded_findings = dict(findings)
    recorded_remedies: dict[str, RecordedRemedy] = dict(remedies)
    for remedy_id, shown in (data.get("proposed") or {}).items():
        recorded_remedies[remedy_id] = RecordedRemedy("proposed", str(shown["kind"]),
                                                      str(shown["target"]), True,
                                                      dict(shown.get("args") or {}))
    return Recording(str(data.get("run_id") or path.stem), where, text, targets, params, steps,
                     recorded_findings, recorded_remedies, verify, identities)


def _step(raw: Any) -> RecordedStep:
    if not isinstance(raw, dict) or "status" not in raw:
        raise UsageError(f"a recorded step is a mapping with status (and result or error): "
                         f"{raw!r}")
    return RecordedStep(str(raw["status"]), raw.get("result"), raw.get("error"))


def _patched(base: RecordedStep | None, patch: dict[str, Any]) -> RecordedStep:
    """A case's change to a recorded step: its result merged in, status and error replaced."""
    if base is None:
        return _step(patch)
    result = base.result
    if "result" in patch:  # `replace: true` drops the recorded fields the patch leaves out
        result = patch["result"] if patch.get("replace") else _merge(base.result, patch["result"])
    error = patch.get("error", None if "status" in patch else base.error)
    return RecordedStep(str(patch.get("status", base.status)), result, error)


def _merge(base: Any, patch: Any) -> Any:
    """Dicts merge key by key; anything else is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            merged[key] = _merge(base.get(key), value)
        return merged
    return copy.deepcopy(patch)


def run_case(case: Case, registry: Registry) -> Outcome:
    from .errors import RunbookError
    from .loader import parse
    from .replay import replay

    outcome = Outcome(case)
    try:
        loaded = parse(case.playbook_text, case.playbook_path, registry)
        outcome.document = replay(case.recording, registry, loaded)
    except RunbookError as exc:
        outcome.failures.append(f"cannot replay: {exc}")
        return outcome
    outcome.failures += check(case.expect, outcome.document)
    return outcome


def check(expect: dict[str, Any], document: dict[str, Any]) -> list[str]:
    """Every way `document` (a replay) falls short of `expect`."""
    failures: list[str] = []
    if "severity" in expect and str(expect["severity"]) != document["severity"]:
        failures.append(f"severity: expected {expect['severity']}, got {document['severity']}")
    findings = {f["id"]: f for f in document["findings"]}
    for fid, want in (expect.get("findings") or {}).items():
        want = want if isinstance(want, dict) else {"status": want}
        got = findings.get(fid)
        if got is None:
            failures.append(f"finding {fid}: the playbook has no such finding")
            continue
        status = str(want.get("status", "fired")).replace(" ", "_")
        if (status == "not_fired" and got["status"] == "fired") or \
                (status != "not_fired" and got["status"] != status):
            why = f" ({got['reason']})" if got.get("reason") else ""
            failures.append(f"finding {fid}: expected {status}, got {got['status']}{why}")
        if "severity" in want and str(want["severity"]) != got["severity"]:
            failures.append(f"finding {fid}: expected severity {want['severity']}, "
                            f"got {got['severity']}")
        if "says" in want and str(want["says"]) not in (got["message"] or ""):
            failures.append(f"finding {fid}: expected a message with {want['says']!r}, "
                            f"got {got['message']!r}")
    remedies = {r["id"]: r for r in document["remedies"]}
    for rid, want in (expect.get("remedies") or {}).items():
        want = want if isinstance(want, dict) else {"status": want}
        got = remedies.get(rid)
        status = str(want.get("status", "proposed")).replace("_", " ")
        if got is None:
            failures.append(f"remedy {rid}: the playbook has no such remedy")
            continue
        actual = str(got["status"]).replace("_", " ")
        if (status == NOT_PROPOSED and actual == "proposed") or \
                (status != NOT_PROPOSED and actual != status):
            why = f" ({got['reason']})" if got.get("reason") else ""
            failures.append(f"remedy {rid}: expected {status}, got {actual}{why}")
            continue
        for key in ("kind", "target"):
            if key in want and want[key] != got[key]:
                failures.append(f"remedy {rid}: expected {key} {want[key]}, got {got[key]}")
        for arg, value in (want.get("args") or {}).items():
            have = (got["args"] or {}).get(arg, "(absent)")
            if have != value:
                failures.append(f"remedy {rid}: argument {arg}: expected {value!r}, "
                                f"got {have!r}")
    verify = {v["id"]: v for v in document["verify"]}
    for vid, want in (expect.get("verify") or {}).items():
        got_v = verify.get(vid)
        if got_v is None:
            failures.append(f"verify {vid}: the playbook has no such check")
        elif str(want) != got_v["status"]:
            failures.append(f"verify {vid}: expected {want}, got {got_v['status']}")
    return failures


def run_all(paths: Iterable[Path], registry: Registry) -> Iterator[Outcome]:
    for file in discover(paths):
        try:
            cases = read_cases(file)
        except UsageError as exc:
            broken = Case(file, file.stem, Recording("", "", None, {}, {}), "", "", {}, {})
            yield Outcome(broken, None, [f"cannot read the fixture: {exc}"])
            continue
        for case in cases:
            yield run_case(case, registry)
