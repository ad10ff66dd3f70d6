"""A run as one HTML page, and the list of recent runs: what the daemon serves at
`/runs/{id}` and `/runs`, and what `runbook report RUN_ID --format html` writes.

Plain HTML and CSS, no script: it works with scripts disabled, reads on a phone (one
column under 40em, long values wrap, tables scroll inside their box) and follows the
reader's light or dark theme. A page of a run in progress reloads itself (meta refresh).

Everything shown passes through the redactor (`SECRETS.scrub_output`) and then HTML
escaping; the page holds no secret, whoever reads it. Forms (sign in, approve, decline)
appear only when the caller passes a `Viewer` with its CSRF token: rendering decides
nothing, the daemon's handlers check every POST.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any

from . import charts, timeline
from .durations import format_duration
from .redact import SECRETS
from .state import AWAITING, RUNNING
from .vocabulary import EventKind, RemedyStatus, StepStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from .journal import RunRow
    from .state import RemedyState, RunState

REFRESH_SECONDS = 3  # how often a page of a run in progress reloads


@dataclass(frozen=True)
class Viewer:
    """Who reads the page. `approver` None: not signed in (read-only). `csrf`: the token each
    form carries. `sign_in`: where the sign-in form posts (None: no sign-in, the CLI)."""

    approver: str | None = None
    csrf: str = ""
    sign_in: str | None = None


def t(value: object) -> str:
    """Text for HTML: secrets masked, then escaped (masking first: escaping could split a
    secret the redactor knows)."""
    return escape(str(SECRETS.scrub_output(str(value))), quote=True)


def _json(value: Any) -> str:
    return t(json.dumps(value, indent=2, default=str, ensure_ascii=False))


CSS = """
:root{color-scheme:light dark;--fg:#1f2933;--bg:#fff;--muted:#616e7c;--box:#f5f7fa;
--line:#d9e2ec;--bad:#c62828;--warn:#b26a00;--good:#2e7d32;--accent:#2f6fd0}
@media (prefers-color-scheme:dark){:root{--fg:#e4e7eb;--bg:#12161b;--muted:#9aa5b1;
--box:#1c232b;--line:#323f4b;--bad:#ff6b6b;--warn:#f5a524;--good:#66bb6a;--accent:#79a7ff}}
*{box-sizing:border-box}
body{margin:0;padding:1rem;font:15px/1.45 system-ui,sans-serif;color:var(--fg);
background:var(--bg);max-width:60rem;margin-inline:auto;overflow-wrap:anywhere}
a{color:var(--accent)}
h1{font-size:1.3rem;margin:.2rem 0}h2{font-size:1.05rem;margin:1.4rem 0 .4rem;
border-bottom:1px solid var(--line)}
.meta{color:var(--muted)}
.badge{display:inline-block;padding:0 .45em;border-radius:.3em;border:1px solid currentColor;
font-size:.85em;white-space:nowrap}
.s-running,.s-awaiting_approval,.s-proposed,.s-pending{color:var(--warn)}
.s-completed,.s-succeeded,.s-ok,.s-passed{color:var(--good)}
.s-failed,.s-interrupted,.s-timeout,.s-outcome_unknown,.P1,.P2{color:var(--bad)}
.box{background:var(--box);border:1px solid var(--line);border-radius:.4rem;padding:.6rem;
margin:.5rem 0}
.finding{border-left:4px solid var(--bad)}
.hint{color:var(--muted)}
pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:.3rem 0;font-size:.85em}
code{font-size:.9em;overflow-wrap:anywhere}
details{border-top:1px solid var(--line);padding:.3rem 0}
summary{cursor:pointer}
.chart svg{width:100%;height:auto;max-width:640px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:.25rem .4rem;border-bottom:1px solid var(--line);
vertical-align:top}
form.decide{display:flex;gap:.5rem;flex-wrap:wrap;margin-top:.4rem}
button,input{font:inherit;padding:.35rem .8rem}
button.approve{background:var(--good);color:#fff;border:0;border-radius:.3rem}
button.decline{background:none;color:var(--bad);border:1px solid var(--bad);
border-radius:.3rem}
.error{border-left:4px solid var(--bad)}
.filters a{margin-right:.6rem}
@media (max-width:40em){body{padding:.6rem;font-size:14px}
table.runs thead{display:none}
table.runs tr{display:block;border-bottom:1px solid var(--line);padding:.3rem 0}
table.runs td{display:inline-block;border:0;padding:.1rem .3rem}}
"""


def _document(title: str, body: list[str], *, refresh: bool = False) -> str:
    head = ['<!doctype html>', '<html lang="en">', "<head>", '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="referrer" content="same-origin">',
            f"<title>{t(title)}</title>"]
    if refresh:
        head.append(f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">')
    head += [f"<style>{CSS}</style>", "</head>", "<body>"]
    return "\n".join([*head, *body, "</body>", "</html>"]) + "\n"


def _badge(status: object) -> str:
    return f'<span class="badge s-{t(status)}">{t(status)}</span>'


def in_progress(state: RunState) -> bool:
    """The page changes by itself: steps run, or an approved remedy is about to."""
    return state.status == RUNNING or any(
        r.status in {RemedyStatus.PROPOSED, RemedyStatus.RUNNING} and r.approved_by
        for r in state.remedies.values())


def run_page(state: RunState, *, viewer: Viewer | None = None,
             links: Iterable[dict[str, str]] = (), notice: str = "",
             base: str | None = None, alerts: Iterable[Mapping[str, Any]] = ()) -> str:
    """The whole page of one run. `links`: where the alert came from ({"text", "url"});
    `alerts`: the alerts that started or joined it (JSON), for the timeline;
    `notice`: a message for the reader at the top (a refused decision); `base`: the URL
    prefix of the daemon's pages ("" at its root; None: a file from the CLI, no forms)."""
    viewer = viewer or Viewer()
    body = [f'<p class="meta"><a href="{t(base)}/runs">runs</a> / {t(state.run_id)}</p>'
            if base is not None else ""]
    body += _headline(state, viewer, base)
    if notice:
        body.append(f'<div class="box error" role="alert">{t(notice)}</div>')
    body += _findings(state)
    body += _charts(state)
    body += _remedies(state, viewer, base)
    body += _steps(state)
    body += _verify(state)
    body += _links(links)
    body += _timeline(timeline.entries(state, alerts))
    return _document(f"{state.playbook} {state.status} · runbook", body,
                     refresh=in_progress(state))


def _headline(state: RunState, viewer: Viewer, base: str | None) -> list[str]:
    why = state.severity_why
    out = [f"<h1>{t(state.playbook)}: {t(state.summary)}</h1>",
           f'<p>{_badge(state.status)} <span class="badge {t(state.severity)}">'
           f"{t(state.severity)}</span>" + (f" <span class=\"meta\">{t(why)}</span>"
                                            if why else "") + "</p>"]
    targets = ", ".join(f"{t(role)}=<code>{t(target.get('name', '?'))}</code> "
                        f"({t(target.get('kind', '?'))})"
                        for role, target in state.targets.items())
    out.append(f'<p class="meta">run <code>{t(state.run_id)}</code> · started '
               f"{t(state.started_at)} by {t(state.requested_by or '?')} "
               f"({t(state.trigger or '?')})" + (f" · targets {targets}" if targets else "")
               + "</p>")
    if base is not None and viewer.sign_in is not None:
        if viewer.approver:
            out.append(f'<form method="post" action="{t(base)}/signout" class="meta">'
                       f'signed in as <b>{t(viewer.approver)}</b> '
                       f'<input type="hidden" name="csrf" value="{t(viewer.csrf)}">'
                       '<button type="submit">sign out</button></form>')
        else:
            out.append(f'<p class="meta">read-only · <a href="{t(viewer.sign_in)}">sign in '
                       "as an approver</a> to approve or decline</p>")
    if in_progress(state):
        out.append(f'<p class="meta">in progress: this page reloads every {REFRESH_SECONDS}s'
                   "</p>")
    return out


def _gap(gap: dict[str, str]) -> str:
    if gap["what"] == "finding":
        return f"finding {gap['id']}: {gap['reason']}"
    return f"{gap['id']} ({gap['kind']} on {gap['target']}): {gap['reason']}"


def _findings(state: RunState) -> list[str]:
    out = ['<h2 id="findings">Findings</h2>']
    fired, gaps = state.fired(), state.could_not_check()
    for finding in fired:
        out.append(f'<div class="box finding"><b class="{t(finding.severity)}">'
                   f"{t(finding.severity)}</b> <b>{t(finding.id)}</b>: {t(finding.message)}"
                   + (f'<div class="hint">hint: {t(finding.hint)}</div>' if finding.hint
                      else "") + "</div>")
    if not fired:
        out.append("<p>" + ("Nothing found, but some checks could not run: the problem may "
                            "be there." if gaps else "Nothing wrong found (every check ran)."
                            if state.findings else "No findings judged yet.") + "</p>")
    if gaps:
        out.append('<h2 id="not-checked">Could not check</h2><ul>')
        out += [f"<li>{t(_gap(gap))}</li>" for gap in gaps]
        out.append("</ul>")
    return out


def _charts(state: RunState) -> list[str]:
    found = charts.charts_of(state)
    if not found:
        return []
    out = ['<h2 id="charts">Charts</h2>']
    for series in found:
        # the SVG is built by runbook from numbers; its text went through escape()
        out.append(f'<figure class="chart" id="chart-{t(series.step)}">'
                   f"{SECRETS.scrub_output(charts.svg(series))}"
                   f"<figcaption class=\"meta\">{t(charts.describe(series))}</figcaption>"
                   "</figure>")
    return out


def _identity(state: RunState, remedy: RemedyState) -> dict[str, Any]:
    for event in reversed(state.timeline):
        if event.type == EventKind.REMEDY_PROPOSED and event.data.get("remedy") == remedy.id \
                and event.data.get("fingerprint") == remedy.fingerprint:
            return dict(event.data.get("identity") or {})
    return {}


def _remedies(state: RunState, viewer: Viewer, base: str | None) -> list[str]:
    shown = [r for r in state.remedies.values() if r.status != RemedyStatus.NOT_NEEDED]
    idle = [r.id for r in state.remedies.values() if r.status == RemedyStatus.NOT_NEEDED]
    if not shown and not idle:
        return []
    out = ['<h2 id="remedies">Remedies</h2>']
    for remedy in shown:
        who = f" · approved by {t(remedy.approved_by)}" if remedy.approved_by else ""
        out.append(f'<div class="box remedy" id="remedy-{t(remedy.id)}">'
                   f"<b>{t(remedy.id)}</b> {_badge(remedy.status)}{who}"
                   f"<div><code>{t(remedy.kind)}</code> on <code>{t(remedy.target)}</code>"
                   "</div>")
        if remedy.explain:
            out.append(f"<div>{t(remedy.explain)}</div>")
        out.append(f"<div>action: <pre>{_json(remedy.args)}</pre></div>")
        if identity := _identity(state, remedy):
            out.append(f"<div>acts on: <pre>{_json(identity)}</pre></div>")
        if remedy.fingerprint:
            out.append(f'<div class="meta">fingerprint <code>{t(remedy.fingerprint)}</code>'
                       "</div>")
        for label, value in (("reason", remedy.reason), ("error", remedy.error)):
            if value:
                out.append(f"<div>{label}: {t(value)}</div>")
        if remedy.result:
            out.append(f"<div>result: <pre>{_json(remedy.result)}</pre></div>")
        if remedy.status == RemedyStatus.PROPOSED and state.status == AWAITING:
            out.append(_decide(state, remedy, viewer, base))
        out.append("</div>")
    if idle:
        out.append(f'<p class="meta">not needed: {t(", ".join(idle))}</p>')
    return out


def _decide(state: RunState, remedy: RemedyState, viewer: Viewer, base: str | None) -> str:
    if base is None:
        return (f'<div class="meta">approve: <code>runbook approve {t(state.run_id)} '
                f"{t(remedy.id)} --as YOUR_NAME</code></div>")
    if not viewer.approver:
        return ""
    return (f'<form class="decide" method="post" action="{t(base)}/runs/{t(state.run_id)}'
            f'/decide"><input type="hidden" name="csrf" value="{t(viewer.csrf)}">'
            f'<input type="hidden" name="remedy" value="{t(remedy.id)}">'
            f'<input type="hidden" name="fingerprint" value="{t(remedy.fingerprint)}">'
            f'<button class="approve" name="decision" value="approve">Approve '
            f"{t(remedy.id)}</button>"
            f'<button class="decline" name="decision" value="decline">Decline</button>'
            "</form>")


_OPEN = {StepStatus.FAILED, StepStatus.TIMEOUT}  # what went wrong is shown unfolded


def _steps(state: RunState) -> list[str]:
    if not state.steps:
        return []
    out = ['<h2 id="steps">Steps</h2>']
    for step in state.steps.values():
        took = format_duration(step.duration_ms / 1000) if step.duration_ms is not None else ""
        opened = " open" if step.status in _OPEN else ""
        out.append(f'<details class="step" id="step-{t(step.id)}"{opened}><summary>'
                   f"{_badge(step.status)} <b>{t(step.id)}</b> <code>{t(step.kind)}</code> on "
                   f"{t(step.target)} <span class=\"meta\">{t(took)}</span></summary>")
        if step.error:
            out.append(f"<div>error: {t(step.error)}</div>")
        if step.result is not None:
            out.append(f"<pre>{_json(step.result)}</pre>")
        out.append("</details>")
    return out


def _verify(state: RunState) -> list[str]:
    if not state.verify:
        return []
    out = ['<h2 id="verify">Verify</h2><ul>']
    for check in state.verify.values():
        out.append(f"<li>{_badge(check.status)} <b>{t(check.id)}</b> ({t(check.kind)}, "
                   f"{check.checks} checks){': ' + t(check.error) if check.error else ''}</li>")
    return [*out, "</ul>"]


def _links(links: Iterable[dict[str, str]]) -> list[str]:
    # only http(s): a javascript: URL must never become a link
    shown = [link for link in links if str(link.get("url", "")).startswith(("http://",
                                                                            "https://"))]
    if not shown:
        return []
    return ['<h2 id="links">The alert</h2><ul>',
            *[f'<li><a href="{t(link["url"])}" rel="noopener noreferrer">{t(link["text"])}</a>'
              "</li>" for link in shown], "</ul>"]


def _timeline(entries: list[timeline.Entry]) -> list[str]:
    """What happened when (runner/timeline.py): alerts, steps, findings, the severity,
    approvals, remedies, notifications and people's notes, open by default."""
    if not entries:
        return []
    out = ['<h2 id="timeline">Timeline</h2><details class="timeline" open><summary>'
           f"{len(entries)} entries</summary><div class=\"scroll\"><table><tbody>"]
    for e in entries:
        by = f"{e.by}: " if e.by and e.kind in {"note", "approval"} else ""
        out.append(f'<tr class="entry-{t(e.kind)}"><td class="meta"><time datetime='
                   f'"{t(e.at)}">{t(e.at[11:19])}</time></td><td>{t(e.kind)}</td>'
                   f"<td>{t(by + e.what)}</td></tr>")
    return [*out, "</tbody></table></div></details>"]


def _age(created_at: str, now: datetime) -> str:
    try:
        seconds = (now - datetime.fromisoformat(created_at)).total_seconds()
    except ValueError:
        return "?"
    return format_duration(max(seconds, 0.0))


def runs_page(rows: list[RunRow], *, status: str | None = None, base: str = "",
              now: datetime | None = None, statuses: Iterable[str] = ()) -> str:
    """Recent runs, those awaiting approval first; `status` filters (the caller did)."""
    now = now or datetime.now(UTC)
    ordered = sorted(rows, key=lambda r: r.status != AWAITING)  # stable: newest first within
    filters = [f'<a href="{t(base)}/runs"' + (' aria-current="page"' if not status else "")
               + ">all</a>"]
    filters += [f'<a href="{t(base)}/runs?status={t(s)}"'
                + (' aria-current="page"' if s == status else "") + f">{t(s)}</a>"
                for s in statuses]
    body = ["<h1>runbook: recent runs</h1>", f'<p class="filters">{" ".join(filters)}</p>']
    if not ordered:
        body.append("<p>No runs" + (f" with status {t(status)}" if status else "") + ".</p>")
        return _document("runs · runbook", body)
    body.append('<div class="scroll"><table class="runs"><thead><tr><th>status</th>'
                "<th>severity</th><th>playbook</th><th>target</th><th>age</th><th>run</th>"
                "</tr></thead><tbody>")
    for row in ordered:
        targets = ", ".join(f"{r}={n}" for r, n in row.source.get("targets", {}).items())
        body.append(f"<tr><td>{_badge(row.status)}</td><td class=\"{t(row.severity)}\">"
                    f"{t(row.severity)}</td><td>{t(row.playbook)}</td><td>{t(targets)}</td>"
                    f"<td>{t(_age(row.created_at, now))}</td><td><a href=\"{t(base)}/runs/"
                    f"{t(row.id)}\">{t(row.id)}</a></td></tr>")
    body.append("</tbody></table></div>")
    refresh = any(row.status in {RUNNING, AWAITING} for row in rows)
    return _document("runs · runbook", body, refresh=refresh)


def message_page(title: str, message: str, *, base: str = "") -> str:
    """A page that only says something (an unknown run)."""
    return _document(f"{title} · runbook", [f"<h1>{t(title)}</h1>", f"<p>{t(message)}</p>",
                                            f'<p><a href="{t(base)}/runs">recent runs</a></p>'])


def sign_in_page(*, action: str, csrf: str, next_url: str, notice: str = "") -> str:
    """The approver's sign-in: the token in a password field, posted, never in a URL."""
    body = ["<h1>Sign in as an approver</h1>"]
    if notice:
        body.append(f'<div class="box error" role="alert">{t(notice)}</div>')
    body.append(f'<form method="post" action="{t(action)}" class="box">'
                f'<input type="hidden" name="csrf" value="{t(csrf)}">'
                f'<input type="hidden" name="next" value="{t(next_url)}">'
                '<label>approver token <input type="password" name="token" '
                'autocomplete="current-password" required></label> '
                '<button type="submit">Sign in</button></form>'
                '<p class="meta">The token is the one the daemon config names for you '
                "(approvers: NAME: token_env). Signing in gives a session of 15 minutes.</p>")
    return _document("sign in · runbook", body)
