"""What a container's error line points at, and the last error before each exit: shared by
the crash-loop checks of every runtime (`docker.crash_loop`, `kubernetes.crash_loop`).

    point_at(line, log_class)            -> {cause, target, explain, advice}
    last_errors_before_exits(lines, exits) -> [{at, last_error, class, classes}]

A cause is one of database (a database port refusing or failing), dns (a name that does not
resolve), missing_file (a file or setting it needs), dependency (another service refusing),
oom, or None: an error that names no outside cause. Lines are timestamped log lines (the
runtime's RFC 3339 prefix), classified by `diagnostics.logclass`. Pure functions.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from . import logclass

_HOST_PORT = re.compile(
    r"(?:\bat\s+\"?(?P<h1>[\w.-]+|\[[0-9a-fA-F:]+\])\"?,?\s+port\s+(?P<p1>\d{1,5}))"
    r"|(?P<h2>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_-][\w.-]*):(?P<p2>\d{1,5})\b")
_DB_PORTS = {5432, 6432, 3306, 1433, 1521, 27017, 6379}
_DNS = re.compile(
    r"\bENOTFOUND\b|\bEAI_AGAIN\b|Name or service not known|Temporary failure in name resolution"
    r"|\bno such host\b|could not translate host name|nodename nor servname|Unknown host"
    r"|UnknownHostException|getaddrinfo failed|\bNXDOMAIN\b", re.IGNORECASE)
_DNS_NAME = re.compile(
    r"(?:ENOTFOUND|EAI_AGAIN|lookup|host name|resolve|resolving|UnknownHostException:?)\s+"
    r"\"?(?P<name>[\w.-]*[A-Za-z][\w.-]*)\"?",
    re.IGNORECASE)
_MISSING_FILE = re.compile(
    r"No such file or directory|\bENOENT\b|FileNotFoundError|\bfile not found\b"
    r"|\bcannot open\b.{0,80}\bfile\b|\bconfig(?:uration)?(?: file)? .{0,80}\bnot found\b"
    r"|\bmissing (?:required )?(?:config|configuration|setting|environment variable|env var)"
    r"|\benvironment variable .{0,60} (?:is )?(?:not set|missing|required)", re.IGNORECASE)
_PATH = re.compile(r"['\"](?P<q>/[^'\"]+)['\"]|(?P<p>/[\w./-]+)")
_REFUSED = re.compile(r"\bECONNREFUSED\b|connection refused", re.IGNORECASE)


def _host_port(line: str) -> tuple[str, int] | None:
    found = None
    for match in _HOST_PORT.finditer(line):
        host = match.group("h1") or match.group("h2")
        port = int(match.group("p1") or match.group("p2"))
        if 0 < port < 65536 and not host.isdigit():
            found = (host, port)  # the last one: "connect ECONNREFUSED host:port" ends with it
    return found


def point_at(line: str, log_class: str | None) -> dict[str, Any]:
    """What an error line points at: {cause, target, advice}; cause is one of database, dns,
    missing_file, dependency, oom, or None (an error that names no outside cause)."""
    if log_class == "oom":
        return {"cause": "oom", "target": None,
                "explain": "it runs out of memory",
                "advice": "raise its memory limit or fix the leak; a restart will not help"}
    if _DNS.search(line):
        name = _DNS_NAME.search(line)
        target = name.group("name") if name else None
        return {"cause": "dns", "target": target,
                "explain": f"the name {target} does not resolve (DNS)" if target
                           else "a name it looks up does not resolve (DNS)",
                "advice": "check the name and the DNS it uses; a restart will not help"}
    endpoint = _host_port(line)
    refused = bool(_REFUSED.search(line))
    where = f"{endpoint[0]}:{endpoint[1]}" if endpoint else None
    if log_class == "db_connection" or (refused and endpoint and endpoint[1] in _DB_PORTS):
        return {"cause": "database", "target": where,
                "explain": f"its database{' at ' + where if where else ''} "
                           + ("refuses connections" if refused or log_class == "db_connection"
                              else "fails"),
                "advice": "check the database; a restart will not help"}
    if refused or log_class == "connection_refused":
        return {"cause": "dependency", "target": where,
                "explain": f"a dependency{' at ' + where if where else ''} refuses connections",
                "advice": "check that dependency; a restart will not help"}
    if _MISSING_FILE.search(line):
        path = _PATH.search(line)
        target = (path.group("q") or path.group("p")) if path else None
        return {"cause": "missing_file", "target": target,
                "explain": f"a file or setting it needs is missing"
                           f"{' (' + target + ')' if target else ''}",
                "advice": "fix its configuration or mounts; a restart will not help"}
    return {"cause": None, "target": None, "explain": None, "advice": None}


# Exits and the errors before them


def is_error_line(message: str) -> bool:
    """An error line to the classifier, or one that names a cause it has no class for
    (`socket.gaierror: ... Name or service not known`, `cat: /etc/app.conf: No such file`)."""
    return (logclass.classify_message(message) is not None or bool(_DNS.search(message))
            or bool(_MISSING_FILE.search(message)))


def last_errors_before_exits(lines: list[str], exits: list[datetime]) -> list[dict[str, Any]]:
    """For each exit (in time order), the last error line logged before it and after the
    previous exit, classified; lines are Docker's, each with its timestamp prefix."""
    stamped = [logclass.split_timestamp(line) for line in lines]
    found = []
    previous: datetime | None = None
    for moment in sorted(exits):
        run = [message for at, message in stamped
               if at is not None and at <= moment and (previous is None or at > previous)]
        previous = moment
        classified = logclass.classify(run)
        last = next((m for m in reversed(run) if is_error_line(m)), None)
        name = logclass.classify_message(last) if last is not None else None
        found.append({"at": moment.isoformat(), "last_error": last.strip()[:300] if last else None,
                      "class": name, "classes": {k: v["count"] for k, v in
                                                 classified["classes"].items()}})
    return found
