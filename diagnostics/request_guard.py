"""Which raw HTTP requests a read-only client may send, decided on method and decoded path.

The probe handles of Docker, Kubernetes and plain HTTP install these checks at the lowest
layer of their clients (the transport that puts the request on the wire), so that a call
through any higher layer, documented or not, meets them. Only GET and HEAD pass; and since
some GETs act (a websocket that attaches to a container's stdin, an exec into a pod, a proxy
into a pod or a node), the path is checked as the server would route it: percent-decoded
until nothing changes (so `%65xec` and `%2565xec` are `exec`), with `.` and `..` segments
refused rather than resolved.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from runner.errors import PermanentError

READ_METHODS = frozenset({"GET", "HEAD"})

# Kubernetes subresources a GET may read; any other (exec, attach, portforward, proxy, and
# whatever an aggregated API adds) is refused.
KUBERNETES_READ_SUBRESOURCES = frozenset({"log", "status", "scale"})
# Refused wherever they appear in a Kubernetes path (an API server behind a path prefix
# shifts the positions): the subresources that reach into a pod's or a node's processes.
KUBERNETES_CONNECT_SEGMENTS = frozenset({"exec", "attach", "portforward", "proxy"})
_DOCKER_VERSION = re.compile(r"^v\d+(\.\d+)*$")


class ReadOnlyRefusal(PermanentError):
    """A read-only client was asked to send a request that could change something."""


def decoded_path(url: str) -> str:
    """The path of `url` (absolute, or a bare path with a query), percent-decoded until it
    no longer changes: however many times a server or a proxy decodes it, no more hides."""
    path = urlsplit(url).path if "://" in url else url.split("?", 1)[0].split("#", 1)[0]
    for _ in range(10):
        decoded = unquote(path)
        if decoded == path:
            return path
        path = decoded
    raise ReadOnlyRefusal(f"the path of {url[:200]!r} is encoded more than 10 times")


def _segments(method: str, url: str, who: str) -> list[str]:
    if method.upper() not in READ_METHODS or method != method.strip():
        raise ReadOnlyRefusal(f"this {who} handle is read-only: diagnostics cannot send "
                              f"{method.upper()!r} requests (GET and HEAD only)")
    segments = decoded_path(url).rstrip("/").split("/")[1:]
    if any(s in {".", ".."} for s in segments) or "" in segments or "\\" in "".join(segments):
        raise ReadOnlyRefusal(f"this {who} handle refuses the ambiguous path "
                              f"{decoded_path(url)[:200]!r}")
    return segments


def check_docker_request(method: str, url: str) -> None:
    """Refuse (ReadOnlyRefusal) anything but a GET or HEAD that reads Docker's API.

    Docker's API changes state only through POST, PUT and DELETE, but one GET acts: the
    websocket attach (`/containers/{id}/attach/ws`), which writes to a container's stdin.
    """
    segments = _segments(method, url, "Docker")
    if segments and _DOCKER_VERSION.match(segments[0]):
        segments = segments[1:]
    if len(segments) >= 3 and segments[0] == "containers" and segments[2].lower() == "attach":
        raise ReadOnlyRefusal("this Docker handle is read-only: diagnostics cannot attach "
                              "to a container")


def check_kubernetes_request(method: str, url: str) -> None:
    """Refuse (ReadOnlyRefusal) anything but a GET or HEAD of a Kubernetes read path: an
    object, a list, a watch, or the subresources log, status and scale."""
    segments = _segments(method, url, "Kubernetes")
    words = {s.lower().split(";")[0].split(":")[0] for s in segments}
    if acting := words & KUBERNETES_CONNECT_SEGMENTS:
        raise ReadOnlyRefusal(f"this Kubernetes handle is read-only: diagnostics cannot "
                              f"{'/'.join(sorted(acting))} ({'/'.join(segments)[:200]})")
    anchor = next((i for i, s in enumerate(segments) if s in {"api", "apis"}), None)
    if anchor is None:
        return  # a non-resource URL: /version, /healthz, /openapi/v2
    # /api/{version}/... or /apis/{group}/{version}/...
    rest = segments[anchor + (2 if segments[anchor] == "api" else 3):]
    if rest[:1] == ["watch"]:
        rest = rest[1:]
    if len(rest) > 2 and rest[0] == "namespaces":
        rest = rest[2:]  # namespaces/{ns}/{resource}/{name}/{subresource}
    subresource = rest[2:]
    if subresource and (len(subresource) > 1
                        or subresource[0] not in KUBERNETES_READ_SUBRESOURCES):
        raise ReadOnlyRefusal(f"this Kubernetes handle is read-only: diagnostics may read "
                              f"the subresources {', '.join(sorted(KUBERNETES_READ_SUBRESOURCES))}"
                              f", not {'/'.join(subresource)[:200]}")


def check_http_request(method: str) -> None:
    """Refuse (ReadOnlyRefusal) anything but GET and HEAD: an HTTP probe only reads."""
    if method.upper() not in READ_METHODS or method != method.strip():
        raise ReadOnlyRefusal(f"this HTTP handle is read-only: a probe may only read "
                              f"(GET, HEAD), not {method.upper()!r}")
