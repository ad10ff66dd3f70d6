"""Secret redaction: every secret shape, registered secrets as whole tokens, per-run scopes,
and a secret echoed by a backend reaching none of the places runbook writes or prints."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from runner import inventory, loader
from runner.calls import Call
from runner.engine import Engine
from runner.gate import Gate
from runner.journal import Approval, Journal, new_run_id, now
from runner.plan import make_plan, replan
from runner.redact import MASK, MIN_SECRET_CHARS, SECRETS, Redactor, ScrubbingFormatter
from runner.registry import Registry
from runner.state import AWAITING, COMPLETED
from tests.support import secretbackend

ROOT = Path(__file__).resolve().parents[2]

# Secret shapes, masked without anyone registering them: (text, the secret inside it).
SHAPES = [
    ("GET /x Authorization: Bearer abc.DEF-123_xyz", "abc.DEF-123_xyz"),
    ("authorization=Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ("proxy-authorization: Token tk-77aa99", "tk-77aa99"),
    ("upstream sent bearer eyAbCdEf0123456789", "eyAbCdEf0123456789"),
    ("login with password: hunter2 ok", "hunter2"),
    ("PGPASSWORD=pg-pass-1 psql", "pg-pass-1"),
    ("GET /x?api_key=AbC123&y=1", "AbC123"),
    ("X-Api-Key: 0123456789abcdef", "0123456789abcdef"),
    ("ALTER ROLE app WITH ENCRYPTED PASSWORD 'p@ss''w0rd'; SELECT 1", "p@ss''w0rd"),
    ("CREATE ROLE x LOGIN PASSWORD 'cut-off-by-track_activity_query_si", "cut-off-by"),
    ("CREATE USER x PASSWORD $pw$dollar-quoted$pw$", "dollar-quoted"),
    ("CREATE USER 'x' IDENTIFIED BY 'mysql-pw'", "mysql-pw"),
    ("env AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCY"),
    ("key AKIAIOSFODNN7EXAMPLE in use", "AKIAIOSFODNN7EXAMPLE"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789 used", "abcdefghijklmnopqrstuvwxyz0123"),
    ("github_pat_11ABCDEFG0abcdefghijklmnopqrstuvwxyz", "11ABCDEFG0abcdefghijklmnop"),
    ("slack xoxb-1234567890-abcdefghijkl used", "1234567890-abcdefghijkl"),
    ("slack xoxp-99887766554-aabbccddeeff", "99887766554-aabbccddeeff"),
    ("gitlab glpat-abcdefghij0123456789", "abcdefghij0123456789"),
    ("key sk-proj-abcdefghijklmnopqrstuvwxyz1234", "abcdefghijklmnopqrstuvwxyz1234"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcDEF123", "abcDEF123"),
    ("hook https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX", "XXXXsecretXXXX"),
    ("dsn postgresql://app:s3cret@db:5432/app failed", "s3cret"),
    ("dsn postgresql://app:p@ss@w0rd@db:5432/app failed", "p@ss@w0rd"),
    ("redis://:r3dis-pw@cache:6379/0", "r3dis-pw"),
    ('body {"password": "s3cr\\"et", "user": "x"}', 's3cr\\"et'),
    ('{"client_secret":"cs-123456"}', "cs-123456"),
    ("token=tok-abc123 secret=sec-xyz", "tok-abc123"),
    ("token=tok-abc123 secret=sec-xyz", "sec-xyz"),
    ("client_secret=zzzz9999&grant_type=x", "zzzz9999"),
    ("db_password = 'two words' dbname=app", "two words"),
    ("host=db password=s3cret dbname=app", "s3cret"),
    ("mysql -u root --password hunter3 -h db", "hunter3"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA\n"
     "-----END OPENSSH PRIVATE KEY-----", "b3BlbnNzaC1rZXktdjEAAAA"),
    ("-----BEGIN RSA PRIVATE KEY----- MIIEowIBAAKCAQEA cut off", "MIIEowIBAAKCAQEA"),
    ('missing "=" after "cret" in connection info string', "cret"),
    ('unexpected spaces found in "pa ss", use percent-encoded spaces', "pa ss"),
    ('invalid percent-encoded token: "p%zzss"', "p%zzss"),
]


@pytest.mark.parametrize(("text", "secret"), SHAPES)
def test_every_secret_shape_is_masked_without_registration(text: str, secret: str) -> None:
    scrubbed = Redactor().scrub(text)
    assert secret not in scrubbed
    assert MASK in scrubbed


@pytest.mark.parametrize(("text", "expected"), [
    ("postgresql://app:s3cret@db:5432/app", f"postgresql://app:{MASK}@db:5432/app"),
    ("host=db password = 'two words' dbname=app", f"host=db password = '{MASK}' dbname=app"),
    ('{"password": "x", "user": "app"}', f'{{"password": "{MASK}", "user": "app"}}'),
    ("Authorization: Bearer abc.def", f"Authorization: Bearer {MASK}"),
    ("ALTER ROLE app PASSWORD 'pw'; SELECT 1", f"ALTER ROLE app PASSWORD {MASK}; SELECT 1"),
])
def test_masking_keeps_what_surrounds_the_secret(text: str, expected: str) -> None:
    assert Redactor().scrub(text) == expected


@pytest.mark.parametrize("text", [
    "postgresql://app@db/app",
    'password authentication failed for user "app"',
    "FATAL: too many connections for role \"app\"",
    "run: service.restart",
    "basic checks passed",
    "verify: passed=3 bypass=on compass: north",
    "max_sessions=2 keys=4",
])
def test_text_without_a_secret_is_left_alone(text: str) -> None:
    assert Redactor().scrub(text) == text


def test_a_secret_named_key_masks_its_value_in_structured_data() -> None:
    scrubbed = Redactor().scrub({"env": {"DB_PASSWORD": "pw-in-a-dict", "HOME": "/root"},
                                 "labels": [{"api_key": "k-123"}], "count": 3,
                                 "passed": "yes", "key": "name"})
    assert scrubbed == {"env": {"DB_PASSWORD": MASK, "HOME": "/root"},
                        "labels": [{"api_key": MASK}], "count": 3,
                        "passed": "yes", "key": "name"}


def test_keep_leaves_structural_fields_exactly_as_they_are() -> None:
    redactor = Redactor()
    redactor.register("service")
    scrubbed = redactor.scrub({"kind": "service", "target": "service", "error": "service down"},
                              keep={"kind", "target"})
    assert scrubbed == {"kind": "service", "target": "service", "error": f"{MASK} down"}


# Registered secrets


def test_a_registered_secret_is_masked_in_nested_structures() -> None:
    redactor = Redactor()
    redactor.register("hunter22")
    scrubbed = redactor.scrub({"error": "auth hunter22 failed",
                               "hunter22": [("x", "hunter22!"), 3, None]})
    assert scrubbed == {"error": f"auth {MASK} failed", MASK: [["x", f"{MASK}!"], 3, None]}


def test_the_shortest_registered_secret_is_four_characters() -> None:
    assert MIN_SECRET_CHARS == 4
    redactor = Redactor()
    redactor.register("abc")  # three: would mask noise everywhere
    redactor.register("wxyz")
    assert redactor.scrub("abc wxyz") == f"abc {MASK}"


@pytest.mark.parametrize("secret", ["", None, "abc"])
def test_empty_and_short_secrets_are_not_registered(secret: str | None) -> None:
    redactor = Redactor()
    redactor.register(secret)
    assert redactor.scrub("abc abcd") == "abc abcd"


@pytest.mark.parametrize(("text", "expected"), [
    ("login service refused", f"login {MASK} refused"),
    ("(service).", f"({MASK})."),
    ("'service'", f"'{MASK}'"),
    ("u:service@db", f"u:{MASK}@db"),
    ("service", MASK),
    ("a\tservice\n", f"a\t{MASK}\n"),
    # part of a longer word or identifier: not the secret
    ("run: service.restart", "run: service.restart"),
    ("myservice service_x services", "myservice service_x services"),
    ("target service-db, host db.service", "target service-db, host db.service"),
])
def test_a_registered_secret_is_masked_only_as_a_whole_token(text: str, expected: str) -> None:
    redactor = Redactor()
    redactor.register("service")
    assert redactor.scrub(text) == expected


def test_a_secret_with_regex_characters_is_masked_literally() -> None:
    redactor = Redactor()
    redactor.register("p(a)ss*w+rd")
    assert redactor.scrub("with p(a)ss*w+rd now; paass") == f"with {MASK} now; paass"


def test_a_run_scope_keeps_its_secrets_to_itself() -> None:
    """Two runs at once in one process (the daemon): neither masks the other's data."""
    redactor = Redactor()
    redactor.register("process-token")  # the daemon's own: masked in every run
    barrier = threading.Barrier(2)
    seen: dict[str, str] = {}

    def run(name: str, secret: str) -> None:
        with redactor.scope():
            redactor.register(secret)
            with redactor.scope():  # a scope inside a run's scope joins it
                redactor.register(secret + "-inner")
            barrier.wait()  # both registered before either scrubs
            seen[name] = redactor.scrub("alpha-pw beta-pw alpha-pw-inner process-token")

    threads = [threading.Thread(target=run, args=(n, f"{n}-pw")) for n in ("alpha", "beta")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen["alpha"] == f"{MASK} beta-pw {MASK} {MASK}"
    assert seen["beta"] == f"alpha-pw {MASK} alpha-pw-inner {MASK}"
    assert redactor.scrub("alpha-pw beta-pw") == "alpha-pw beta-pw"  # scopes ended
    # what is never read back masks every secret ever registered
    assert redactor.scrub_output("alpha-pw beta-pw") == f"{MASK} {MASK}"


def test_a_backend_call_on_a_worker_thread_registers_into_the_run_scope() -> None:
    """Backends register on the engine's worker threads (`runner.calls.Call`)."""
    with SECRETS.scope():
        result, error = Call(lambda _: (SECRETS.register("worker-pw-81"), {})[1], 5).wait()
        assert error is None and result == {}
        assert SECRETS.scrub("worker-pw-81") == MASK
    assert SECRETS.scrub("worker-pw-81") == "worker-pw-81"  # that run's, not the process's


def test_log_lines_and_tracebacks_are_scrubbed_of_every_run_secret() -> None:
    with SECRETS.scope():
        SECRETS.register("log-secret-9Q")  # a run's, and the run has ended by the log line
    formatter = ScrubbingFormatter("%(message)s")
    try:
        raise RuntimeError("connect failed with log-secret-9Q")
    except RuntimeError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "dsn postgresql://u:pw@h/db",
                                   (), sys.exc_info())
    text = formatter.format(record)
    assert "log-secret-9Q" not in text and ":pw@" not in text
    assert "RuntimeError" in text


# A malformed DSN: libpq quotes a fragment of it, maybe of the password, in its error.


@pytest.mark.parametrize(("dsn", "fragment"), [
    ("host=db password=se cret4u dbname=app", "cret4u"),
    ("postgresql://app:pa ss-frag@db/app", "ss-frag"),
    ("postgresql://app:p%zz-frag@db/app", "zz-frag"),
    ("host=db password=a4 fragx=c", "fragx"),
])
def test_a_dsn_that_does_not_parse_does_not_echo_its_password(
        dsn: str, fragment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from diagnostics import postgres
    from runner.errors import PermanentError

    monkeypatch.setenv("BROKEN_DSN", dsn)
    settings = postgres.PostgresSettings(dsn_env="BROKEN_DSN")
    target = inventory.Target("db", "postgres", settings)
    with pytest.raises(PermanentError, match="does not parse") as caught:
        postgres._conninfo(target, settings, action=False)
    assert fragment not in str(caught.value)


# End to end, with a backend that registers a secret and echoes it back


WEAK = "service"  # a weak DSN password that is also a word of the playbook

WEAK_PLAYBOOK = """\
name: weak
summary: a weak password that is also a word of the playbook
severity: P2
targets:
  box: {kind: vault}
steps:
  - {id: login, run: vault.echo, target: box}
findings:
  - {id: refused, when: steps.login.ok, say: "{{ steps.login.log }}"}
remedies:
  - id: restart
    when: findings['refused']
    run: service.restart
    target: box
    with: {items: [service, api]}
"""


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    secretbackend.register(registry)
    registry.add(secretbackend.restart_kind("service.restart"))
    return registry


def _inventory_file(root: Path, password_env: str) -> Path:
    path = root / "inventory.yaml"
    path.write_text(f"targets:\n  box:\n    kind: vault\n    path: {root / 'box'}\n"
                    f"    password_env: {password_env}\n")
    return path


def test_a_weak_password_never_rewrites_the_playbook_and_the_approved_remedy_runs(
        tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEAK_PW", WEAK)
    inv = inventory.load([_inventory_file(tmp_path, "WEAK_PW")], registry)
    journal = Journal(tmp_path / "home")
    plan = make_plan(loader.parse(WEAK_PLAYBOOK, "weak.yaml", registry), inv, registry, {}, {})
    engine = Engine(registry, journal, Gate(journal, registry, approver="t", prompter=None))
    run_id = new_run_id()
    state = engine.start(plan, run_id, trigger="test", requested_by="t")
    assert state.status == AWAITING
    # the whole-token password is masked in what the probe said ...
    assert state.steps["login"].result["log"] == f"FATAL: login {MASK} refused for user app"
    # ... but the stored playbook, kinds and arguments are as written
    source = journal.get_run(run_id).source
    assert source["playbook_text"] == WEAK_PLAYBOOK
    assert state.remedies["restart"].kind == "service.restart"
    assert state.remedies["restart"].args == {"items": ["service", "api"]}

    remedy = state.remedies["restart"]
    journal.record_approval(Approval(run_id, "restart", remedy.fingerprint, "approved", "alice",
                                     "runbook approve", now()))
    resumed = Engine(registry, journal, Gate(journal, registry, approver="t", prompter=None))
    state = resumed.resume(replan(source, inv, registry), run_id, by="alice")
    assert state.status == COMPLETED
    assert state.remedies["restart"].status == "succeeded"
    restarts = (tmp_path / "box" / "restarts.jsonl").read_text().splitlines()
    assert [json.loads(line)["items"] for line in restarts] == [["service", "api"]]


STRONG = "Vx9-q7Zs<&>secret"  # holds Slack's control characters too

ECHO_PLAYBOOK = """\
name: echo
summary: a backend that echoes its password
severity: P2
targets:
  box: {kind: vault}
steps:
  - {id: echo, run: vault.echo, target: box}
  - {id: broken, run: vault.fail, target: box}
findings:
  - {id: said, when: steps.echo.ok, say: "it said {{ steps.echo.log }} and {{ steps.echo.lines }}"}
remedies:
  - {id: restart, run: vault.restart, target: box, with: {items: [one]}}
"""


def _every_byte_under(root: Path) -> Iterator[tuple[Path, bytes]]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path, path.read_bytes()


def test_an_echoed_secret_reaches_no_output_journal_file_or_run_file(
        tmp_path: Path, runbook_home: Path) -> None:
    """Through the real CLI: the secret, registered by the backend and echoed back in a
    result, an error and an action's result, is in no byte of stdout, stderr, the journal's
    database (WAL included) or any file of the run directory."""
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "echo.yaml").write_text(ECHO_PLAYBOOK)
    env = {**os.environ, "RUNBOOK_BACKENDS": "tests.support.secretbackend:register",
           "RUNBOOK_PLAYBOOKS": str(books), "ECHO_PW": STRONG,
           "RUNBOOK_INVENTORY": str(_inventory_file(tmp_path, "ECHO_PW"))}
    run = subprocess.run(
        [sys.executable, "-m", "runner", "run", "echo", "--format", "json",
         "--approve", "restart=vault.restart", "--no-input"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.stdout, run.stderr
    report = json.loads(run.stdout)
    assert {s["id"]: s["status"] for s in report["steps"]} == {"echo": "ok", "broken": "failed"}
    assert [(r["id"], r["status"]) for r in report["remedies"]] == [("restart", "succeeded")]
    needle = STRONG.encode()
    assert needle not in run.stdout.encode() and needle not in run.stderr.encode()
    files = dict(_every_byte_under(runbook_home))
    assert any(p.name == "journal.sqlite3" for p in files)
    assert {"run.json", "events.jsonl", "report.md", "echo.json",
            "remedy-restart.json"} <= {p.name for p in files}
    leaked = [str(p) for p, data in files.items() if needle in data]
    assert leaked == []
    # the masks are there: the secret was echoed into each of these and masked
    events = next(data for p, data in files.items() if p.name == "events.jsonl").decode()
    assert f"wrong password {MASK}" in events and f"login {MASK} refused" in events
    assert f"restarted with {MASK}" in events


class _Capture(BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_slack_notification_carries_no_secret_of_any_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Posted to a real HTTP server on loopback; the secret came from an alert's annotation
    and a finding, after the run that registered it ended; Slack's escaping of `<&>` comes
    after the mask, so it cannot disguise the secret."""
    from runner.daemon.alerts import Alert
    from runner.daemon.config import Notify
    from runner.daemon.notify import Notifier, incident
    from runner.state import RunState

    with SECRETS.scope():
        SECRETS.register(STRONG)
    server = HTTPServer(("127.0.0.1", 0), _Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("SLACK_URL", f"http://127.0.0.1:{server.server_port}/hook")
        journal = Journal(tmp_path / "home")
        journal.create_run("r1", "echo", "P2", {})
        state = RunState("r1")
        alert = Alert(source="test", status="firing", labels={"alertname": "x"},
                      annotations={"summary": f"login {STRONG} refused"}, fingerprint="f")
        message = incident(state, [alert])
        message["found"] = [f"[P2] it said {STRONG}"]
        assert Notifier([Notify(kind="slack", url_env="SLACK_URL", retries=0)],
                        journal).send("r1", message) == 0
    finally:
        server.shutdown()
        server.server_close()
    body = _Capture.bodies[-1].decode()
    assert "refused" in body and MASK in body
    assert STRONG not in body
    escaped = STRONG.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert escaped not in body and "Vx9-q7Zs" not in body


def test_a_scope_per_run_in_the_engine(tmp_path: Path, registry: Registry,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret a run's backend registered masks that run's data, and nothing after it."""
    monkeypatch.setenv("SCOPED_PW", "scoped-pw-31")
    inv = inventory.load([_inventory_file(tmp_path, "SCOPED_PW")], registry)
    journal = Journal(tmp_path / "home")
    text = textwrap.dedent(ECHO_PLAYBOOK)
    plan = make_plan(loader.parse(text, "echo.yaml", registry), inv, registry, {}, {})
    engine = Engine(registry, journal, Gate(journal, registry, approver="t", prompter=None))
    state = engine.start(plan, new_run_id(), trigger="test", requested_by="t")
    assert state.steps["echo"].result["log"] == f"FATAL: login {MASK} refused for user app"
    assert SECRETS.scrub("scoped-pw-31") == "scoped-pw-31"


def test_whatever_the_cli_prints_a_traceback_included_is_scrubbed() -> None:
    """`runbook` wraps stdout and stderr first thing: even an unexpected error's traceback,
    printed by Python itself, has its secrets masked."""
    program = ("import sys\nfrom runner.redact import SECRETS, scrub_stdio\n"
               "SECRETS.register('tb-secret-5Xq')\nscrub_stdio()\nscrub_stdio()\n"
               "print('said tb-secret-5Xq and password=pw-777', flush=True)\n"
               "assert sys.stderr.isatty() is False\n"
               "raise RuntimeError('connect failed with tb-secret-5Xq')\n")
    run = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert run.returncode == 1
    assert run.stdout == f"said {MASK} and password={MASK}\n"
    assert f"RuntimeError: connect failed with {MASK}" in run.stderr
    assert "tb-secret-5Xq" not in run.stderr


def test_concurrent_runs_in_one_process_never_mask_each_others_data(
        tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """As in the daemon: run B's weak password `service` is masked in B's data only; run A
    says "login service ok" and keeps it, its own password masked."""
    monkeypatch.setenv("A_PW", "alpha-pw-1")
    monkeypatch.setenv("B_PW", WEAK)
    inv_file = tmp_path / "inventory.yaml"
    inv_file.write_text("targets:\n" + "".join(
        f"  {n}:\n    kind: vault\n    path: {tmp_path / n}\n    password_env: {n.upper()}_PW\n"
        for n in ("a", "b")))
    inv = inventory.load([inv_file], registry)
    journal = Journal(tmp_path / "home")
    book = textwrap.dedent("""\
        name: pb
        summary: two runs at once
        targets:
          box: {kind: vault}
        steps:
          - {id: echo, run: vault.echo, target: box, with: {say: "login service ok"}}
        """)
    loaded = loader.parse(book, "pb.yaml", registry)
    barrier = threading.Barrier(2)
    states: dict[str, Any] = {}

    def run(name: str) -> None:
        plan = make_plan(loaded, inv, registry, {"box": name}, {})
        engine = Engine(registry, journal, Gate(journal, registry, approver="t", prompter=None))
        barrier.wait()
        states[name] = engine.start(plan, new_run_id(), trigger="test", requested_by="t")

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    a, b = (states[n].steps["echo"].result for n in ("a", "b"))
    refused = f"FATAL: login {MASK} refused for user app"
    assert (a["said"], a["log"]) == ("login service ok", refused)
    assert (b["said"], b["log"]) == (f"login {MASK} ok", refused)


# ~100 KB each: linear masking takes a fraction of a second; a quadratic pattern, many
# minutes (one that is gone took 32 s on 20 KB)
HOSTILE = ["a" * 100_000, "a://b:" * 15_000, "-" * 100_000, "password" * 12_500,
           "-eyJ" * 25_000, 'missing "=" after "' * 5_000, "sk-" * 30_000,
           "bearer " * 15_000, "authorization " * 7_500, "--password" * 10_000,
           "password: " * 10_000, "password $" * 10_000, "postgres://u:" + "@" * 100_000]


def test_masking_hostile_text_stays_linear() -> None:
    """A log line is data from a system, maybe an attacker's: text shaped to make a careless
    pattern backtrack quadratically is masked within a CPU-time limit (a resource bound of
    the child process, not a wall clock)."""
    program = ("import json, resource, sys\n"
               "resource.setrlimit(resource.RLIMIT_CPU, (30, 30))\n"
               "from runner.redact import Redactor\n"
               "redactor = Redactor()\nredactor.register('hostile-pw')\n"
               "for text in json.load(sys.stdin):\n"
               "    redactor.scrub(text)\n"
               "print('done')\n")
    run = subprocess.run([sys.executable, "-c", program], input=json.dumps(HOSTILE), cwd=ROOT,
                         capture_output=True, text=True, timeout=600, check=False)
    assert (run.returncode, run.stdout) == (0, "done\n"), run.stderr


def test_a_scrubbing_stream_masks_every_write_and_is_otherwise_the_stream() -> None:
    import io

    from runner.redact import ScrubbingStream

    secret = "stream-pw-42"
    SECRETS.register(secret)
    target = io.StringIO()
    stream = ScrubbingStream(target)
    assert stream.write(f"a {secret}\n") == len(f"a {secret}\n")
    stream.writelines([f"b {secret}\n", "token=t-1\n"])
    assert target.getvalue() == f"a {MASK}\nb {MASK}\ntoken={MASK}\n"
    assert stream.getvalue() == target.getvalue()  # anything else is the wrapped stream's
    assert stream.isatty() is False
