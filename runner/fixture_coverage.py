"""What a set of fixtures exercises of each playbook (`runbook test --coverage`).

Per playbook, across every case that replayed: which findings fired (and which never did),
which remedies were proposed (and which were always held back), which `when` branches of
steps and remedies were taken (true and false, each counted once), and which verify checks
were judged on a recorded result. What no fixture reaches is listed by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .fixtures import Outcome
from .loader import LoadedPlaybook, parse
from .registry import Registry

CONDITION_FALSE = "condition is false"


@dataclass
class PlaybookCoverage:
    name: str
    cases: int = 0
    findings: dict[str, bool] = field(default_factory=dict)  # id -> fired in some case
    remedies: dict[str, bool] = field(default_factory=dict)  # id -> proposed in some case
    branches: dict[str, bool] = field(default_factory=dict)  # "step x: true" -> taken
    verify: dict[str, bool] = field(default_factory=dict)  # id -> judged in some case

    def unreached(self) -> list[str]:
        return ((["no fixture replays it"] if not self.cases else [])
                + [f"finding {k} never fired" for k, v in self.findings.items() if not v]
                + [f"remedy {k} never proposed" for k, v in self.remedies.items() if not v]
                + [f"`when` of {k} never taken" for k, v in self.branches.items() if not v]
                + [f"verify {k} never judged" for k, v in self.verify.items() if not v])

    def to_json(self) -> dict[str, Any]:
        def part(seen: dict[str, bool]) -> dict[str, Any]:
            return {"reached": sorted(k for k, v in seen.items() if v),
                    "not_reached": sorted(k for k, v in seen.items() if not v),
                    "pct": _pct(seen)}

        return {"cases": self.cases, "findings": part(self.findings),
                "remedies": part(self.remedies), "when_branches": part(self.branches),
                "verify": part(self.verify)}


@dataclass
class Coverage:
    playbooks: dict[str, PlaybookCoverage]

    @property
    def finding_pct(self) -> float:
        return _pct({f"{p.name}/{k}": v for p in self.playbooks.values()
                     for k, v in p.findings.items()})

    @property
    def remedy_pct(self) -> float:
        return _pct({f"{p.name}/{k}": v for p in self.playbooks.values()
                     for k, v in p.remedies.items()})

    def to_json(self) -> dict[str, Any]:
        return {"findings_pct": self.finding_pct, "remedies_pct": self.remedy_pct,
                "playbooks": {name: p.to_json() for name, p in sorted(self.playbooks.items())}}

    def text(self) -> str:
        lines = []
        for name, p in sorted(self.playbooks.items()):
            lines.append(f"{name} ({p.cases} case(s)): findings {_ratio(p.findings)}, "
                         f"remedies {_ratio(p.remedies)}, when branches {_ratio(p.branches)}, "
                         f"verify {_ratio(p.verify)}")
            lines += [f"    {gap}" for gap in p.unreached()]
        lines.append(f"coverage: findings {self.finding_pct:.1f} %, "
                     f"remedies {self.remedy_pct:.1f} %")
        return "\n".join(lines) + "\n"


def measure(outcomes: Iterable[Outcome], registry: Registry,
            catalogue: Iterable[LoadedPlaybook] = ()) -> Coverage:
    """Coverage of the playbooks the fixtures replay, and of every one in `catalogue`
    (a playbook no fixture names reaches nothing)."""
    playbooks = {loaded.playbook.name: _empty(loaded.playbook) for loaded in catalogue}
    for outcome in outcomes:
        document = outcome.document
        if document is None:
            continue
        book = parse(outcome.case.playbook_text, outcome.case.playbook_path, registry).playbook
        cov = playbooks.get(book.name)
        if cov is None:
            cov = playbooks[book.name] = _empty(book)
        cov.cases += 1
        for f in document["findings"]:
            cov.findings[f["id"]] = cov.findings.get(f["id"], False) or f["status"] == "fired"
        for s in document["steps"]:
            _branch(cov, f"step {s['id']}", s["status"], s["reason"])
        for r in document["remedies"]:
            cov.remedies[r["id"]] = cov.remedies.get(r["id"], False) or \
                r["status"] == "proposed"
            _branch(cov, f"remedy {r['id']}", r["status"], r["reason"])
        for v in document["verify"]:
            cov.verify[v["id"]] = cov.verify.get(v["id"], False) or \
                v["status"] in {"passed", "failed"}
    return Coverage(playbooks)


def _empty(book: Any) -> PlaybookCoverage:
    cov = PlaybookCoverage(book.name)
    cov.findings = {f.id: False for f in book.findings}
    cov.remedies = {r.id: False for r in book.remedies}
    cov.verify = {book.verify_id(i): False for i in range(len(book.verify))}
    for what, items in (("step", book.steps), ("remedy", book.remedies)):
        for item in items:
            if item.when:
                cov.branches[f"{what} {item.id}: true"] = False
                cov.branches[f"{what} {item.id}: false"] = False
    return cov


def _branch(cov: PlaybookCoverage, what: str, status: str, reason: str | None) -> None:
    """A `when` was judged: false when it says so, true when the item went past it."""
    if f"{what}: true" not in cov.branches:
        return
    if reason and reason.startswith(CONDITION_FALSE):
        cov.branches[f"{what}: false"] = True
    elif status not in {"skipped", "not_needed"}:  # it went past its condition
        cov.branches[f"{what}: true"] = True


def _pct(seen: dict[str, bool]) -> float:
    return round(100.0 * sum(seen.values()) / len(seen), 1) if seen else 100.0


def _ratio(seen: dict[str, bool]) -> str:
    return f"{sum(seen.values())}/{len(seen)}"
