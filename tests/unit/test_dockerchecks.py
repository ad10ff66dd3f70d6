"""The docker.* checks' reading of what Docker says, without an engine: what an error line
points at, the last error before each exit, grading against thresholds, and the refusal of a
service that does not run on Docker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest
from pydantic import ValidationError

from diagnostics import dockerchecks as dc
from diagnostics.service import KubernetesService, ServiceView
from runner.errors import PermanentError


@pytest.mark.parametrize(("line", "cause", "target"), [
    ("Error: connect ECONNREFUSED 10.0.0.5:5432", "database", "10.0.0.5:5432"),
    ('psycopg.OperationalError: connection to server at "10.0.0.5", port 5432 failed: '
     "Connection refused", "database", "10.0.0.5:5432"),
    ("dial tcp db.internal:3306: connect: connection refused", "database", "db.internal:3306"),
    ("Error: connect ECONNREFUSED 10.0.0.7:8080", "dependency", "10.0.0.7:8080"),
    ("requests.exceptions.ConnectionError: payments:9000 Connection refused", "dependency",
     "payments:9000"),
    ("Error: getaddrinfo ENOTFOUND db.internal", "dns", "db.internal"),
    ("socket.gaierror: [Errno -2] Name or service not known", "dns", None),
    ("ERROR could not resolve orders-db.invalid: [Errno -3] Temporary failure in name "
     "resolution", "dns", "orders-db.invalid"),
    ('psql: could not translate host name "db" to address: Temporary failure in name '
     "resolution", "dns", "db"),
    ("FileNotFoundError: [Errno 2] No such file or directory: '/etc/app/config.yaml'",
     "missing_file", "/etc/app/config.yaml"),
    ("Error: ENOENT: no such file or directory, open /app/.env", "missing_file", "/app/.env"),
    ("fatal: missing required environment variable DATABASE_URL", "missing_file", None),
    ("KeyError: 'user_id'", None, None),
    ("ERROR something broke at 12:30", None, None),
])
def test_what_an_error_line_points_at(line: str, cause: str | None,
                                      target: str | None) -> None:
    from diagnostics import logclass

    pointed = dc.point_at(line, logclass.classify_message(line))
    assert (pointed["cause"], pointed["target"]) == (cause, target), pointed
    if cause is not None:
        assert pointed["advice"].endswith("a restart will not help")


@pytest.mark.parametrize(("seconds", "said"), [(600, "10 min"), (7200, "2 h"), (45, "45 s"),
                                               (90, "90 s"), (5400, "90 min")])
def test_a_window_as_a_person_says_it(seconds: float, said: str) -> None:
    assert dc.span(seconds) == said


def test_an_oom_class_points_at_memory_whatever_the_line() -> None:
    assert dc.point_at("Killed process 7 (python3)", "oom")["cause"] == "oom"


def at(second: int) -> datetime:
    return datetime(2026, 12, 2, 3, 0, second, tzinfo=UTC)


def stamp(second: int, text: str) -> str:
    return f"2026-12-02T03:00:{second:02d}.123456789Z {text}"


def test_the_last_error_before_each_exit_is_taken_from_that_run_only() -> None:
    lines = [
        stamp(1, "starting v1"),
        stamp(2, "Error: getaddrinfo ENOTFOUND db.internal"),
        stamp(3, "Traceback (most recent call last):"),
        stamp(3, '  File "app.py", line 3, in <module>'),
        stamp(3, "ConnectionRefusedError: [Errno 111] Connection refused"),
        stamp(10, "starting v1"),  # second run: logs no error
        stamp(20, "starting v1"),  # third run
        stamp(21, "Error: connect ECONNREFUSED 10.0.0.5:5432"),
    ]
    found = dc.last_errors_before_exits(lines, [at(22), at(4), at(11)])
    assert [f["at"] for f in found] == [at(4).isoformat(), at(11).isoformat(),
                                        at(22).isoformat()]
    assert found[0]["last_error"] == "ConnectionRefusedError: [Errno 111] Connection refused"
    # the traceback under the Error: line is that error's (logclass), refined by its last line
    assert found[0]["classes"] == {"connection_refused": 1}
    assert found[1]["last_error"] is None and found[1]["classes"] == {}
    assert found[2]["class"] == "db_connection"


STATE_EXITED = {"Status": "exited", "Running": False, "Restarting": False, "ExitCode": 3,
                "OOMKilled": False}


def diagnose(exits: int, restarts: int = 0, state: dict[str, Any] | None = None,
             line: str | None = "Error: connect ECONNREFUSED 10.0.0.5:5432",
             **thresholds: Any) -> dict[str, Any]:
    from diagnostics import logclass

    events = [{"at": at(i), "exit_code": 3, "oom": False} for i in range(exits)]
    errors: list[dict[str, Any]] = [{"at": at(i).isoformat(), "last_error": line,
               "class": logclass.classify_message(line) if line else None, "classes": {}}
              for i in range(exits)]
    return dc.diagnose(state or STATE_EXITED, restarts, events, errors, 600.0,
                       dc.CrashLoopParams(**thresholds), "journey-api")


def test_a_crash_loop_on_a_refusing_database_says_a_restart_will_not_help() -> None:
    found = diagnose(3, restarts=2)
    assert found["level"] == "critical" and found["cause"] == "database"
    assert found["summary"] == (
        "journey-api crash-loops because its database at 10.0.0.5:5432 refuses connections "
        "(3 exit(s) in the last 10 min, 2 restart(s), exit code 3): check the database; "
        "a restart will not help")
    assert found["exits_per_hour"] == 18.0


@pytest.mark.parametrize(("exits", "restarts", "thresholds", "level"), [
    (0, 0, {}, "ok"),
    (1, 0, {}, "warning"),
    (2, 0, {}, "warning"),
    (3, 0, {}, "critical"),
    (2, 0, {"exits_warning": 3, "exits_critical": 5}, "ok"),
    (4, 0, {"exits_warning": 3, "exits_critical": 5}, "warning"),
    (0, 3, {}, "warning"),  # restarts in all, down now
    (0, 10, {}, "critical"),
    (0, 9, {"restarts_critical": 9}, "critical"),
])
def test_crash_loop_thresholds(exits: int, restarts: int, thresholds: dict[str, int],
                               level: str) -> None:
    assert diagnose(exits, restarts, None, "ECONNREFUSED 10.0.0.5:5432",
                    **thresholds)["level"] == level


def test_restarts_of_a_container_running_now_are_not_a_finding() -> None:
    running = {**STATE_EXITED, "Status": "running", "Running": True, "ExitCode": 0}
    found = diagnose(0, restarts=50, state=running)
    assert found["level"] == "ok" and found["summary"].startswith("journey-api is running")


def test_restarting_now_is_at_least_a_warning() -> None:
    restarting = {**STATE_EXITED, "Status": "restarting", "Running": True, "Restarting": True}
    assert diagnose(0, state=restarting)["level"] == "warning"


def test_oom_killed_is_critical_and_named() -> None:
    found = diagnose(1, state={**STATE_EXITED, "ExitCode": 137, "OOMKilled": True}, line=None)
    assert found["level"] == "critical" and found["cause"] == "oom"
    assert "runs out of memory" in found["summary"]


def test_an_exit_with_no_cause_quotes_its_last_error_or_says_there_was_none() -> None:
    quoted = diagnose(3, line="KeyError: 'user_id'")
    assert quoted["cause"] is None
    assert quoted["summary"].endswith("the last error before it exited: KeyError: 'user_id'")
    silent = diagnose(3, line=None)
    assert "logs no error before it exits" in silent["summary"]


def health(status: str, streak: int, exit_code: int = 1) -> dict[str, Any]:
    return {"Status": status, "FailingStreak": streak,
            "Log": [{"Start": "t", "ExitCode": exit_code, "Output": "curl: (7) refused\n"}]}


@pytest.mark.parametrize(("state", "level"), [
    (None, "ok"),
    (health("healthy", 0, exit_code=0), "ok"),
    (health("healthy", 1), "warning"),
    (health("starting", 2), "warning"),
    (health("unhealthy", 3), "critical"),
])
def test_healthcheck_grading(state: dict[str, Any] | None, level: str) -> None:
    found = dc.grade_health(state, ["CMD-SHELL", "curl -f localhost/health"], "api",
                            dc.HealthParams())
    assert found["level"] == level, found
    if level != "ok":
        assert "curl -f localhost/health" in found["summary"]
        assert "last failure exit 1: curl: (7) refused" in found["summary"]


def test_a_higher_streak_threshold_tolerates_a_flap() -> None:
    found = dc.grade_health(health("healthy", 1), None, "api", dc.HealthParams(streak_warning=2))
    assert found["level"] == "ok"


def container(policy: str, retries: int, restarts: int, status: str,
              code: int) -> dict[str, Any]:
    return {"HostConfig": {"RestartPolicy": {"Name": policy, "MaximumRetryCount": retries}},
            "RestartCount": restarts,
            "State": {"Status": status, "Running": status == "running", "ExitCode": code}}


@pytest.mark.parametrize(("info", "level"), [
    (container("on-failure", 2, 2, "exited", 3), "critical"),
    (container("on-failure", 2, 3, "exited", 1), "critical"),
    (container("on-failure", 5, 2, "exited", 3), "ok"),  # Docker still retries
    (container("on-failure", 2, 2, "running", 0), "ok"),
    (container("on-failure", 2, 2, "exited", 0), "ok"),  # a clean exit is not retried
    (container("no", 0, 0, "exited", 1), "warning"),
    (container("always", 0, 7, "running", 0), "ok"),
])
def test_restart_policy_grading(info: dict[str, Any], level: str) -> None:
    found = dc.grade_restart_policy(info, "api")
    assert found["level"] == level, found
    assert found["exhausted"] == (level == "critical")


def test_an_exhausted_policy_says_why_docker_stopped() -> None:
    found = dc.grade_restart_policy(container("on-failure", 2, 2, "exited", 3), "api")
    assert found["summary"].startswith(
        "api's restart policy on-failure:2 is exhausted: it exited with code 3 after 2 "
        "restart(s) and Docker will not start it again")


GIB = 1024**3
DF = {
    "LayersSize": 30 * GIB,
    "Images": [{"Size": 10 * GIB, "SharedSize": 2 * GIB, "Containers": 0},
               {"Size": 20 * GIB, "SharedSize": 2 * GIB, "Containers": 1},
               {"Size": 1 * GIB, "SharedSize": -1, "Containers": 0}],
    "BuildCache": [{"Size": 4 * GIB, "InUse": False, "Shared": False},
                   {"Size": 1 * GIB, "InUse": True, "Shared": False}],
    "Volumes": [{"UsageData": {"Size": 3 * GIB, "RefCount": 0}},
                {"UsageData": {"Size": 2 * GIB, "RefCount": 1}},
                {"UsageData": {"Size": -1, "RefCount": 0}}],  # size unknown to Docker
    "Containers": [{"SizeRw": 1 * GIB}],
}


def test_disk_usage_sums_and_what_is_reclaimable() -> None:
    found = dc.grade_disk(DF, dc.DiskParams())
    assert found["total_bytes"] == (30 + 5 + 5 + 1) * GIB
    assert found["reclaimable_images_bytes"] == (8 + 1) * GIB  # shared layers stay
    assert found["reclaimable_build_cache_bytes"] == 4 * GIB
    assert found["reclaimable_volumes_bytes"] == 3 * GIB
    assert found["reclaimable_bytes"] == 16 * GIB
    assert found["level"] == "ok"


@pytest.mark.parametrize(("params", "level", "said"), [
    ({"total_warning": "40g"}, "warning", "over the 40.0 GiB threshold"),
    ({"total_warning": "40g", "total_critical": "41g"}, "critical", "over the 41.0 GiB"),
    ({"reclaimable_warning": "16g"}, "warning", "16.0 GiB reclaimable, over the 16.0 GiB"),
    ({"total_warning": 42 * GIB, "reclaimable_warning": 17 * GIB}, "ok", ""),
])
def test_disk_usage_thresholds(params: dict[str, Any], level: str, said: str) -> None:
    found = dc.grade_disk(DF, dc.DiskParams(**params))
    assert found["level"] == level, found
    assert said in found["summary"]
    if level != "ok":
        assert "pruning unused images, build cache and volumes would free it" in found["summary"]


def test_byte_thresholds_refuse_what_is_not_a_size() -> None:
    with pytest.raises(ValidationError):
        dc.DiskParams(total_warning="lots")


def test_a_service_not_on_docker_is_refused_before_any_engine_is_asked() -> None:
    settings = KubernetesService(runtime="kubernetes", deployment="api")
    # a runtime that fails if touched: the refusal comes first
    view = ServiceView(target="api-k8s", settings=settings, runtime=cast(Any, object()),
                       http=None)
    for _name, func, params, *_ in dc.KINDS:
        with pytest.raises(PermanentError, match=r"api-k8s: docker\.\* checks need a service "
                           r"with runtime: docker; this one runs on kubernetes"):
            func(view, params())
