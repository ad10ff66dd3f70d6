"""Request-guard cases mutation testing found untested (scripts/mutation
diagnostics/request_guard.py): attach without the websocket, dot and backslash segments, a
path that urlsplit would read as a host, non-resource Kubernetes paths that hide a connect
verb, watches of one object, cluster-scoped subresources, and what each refusal says. The
main table is test_request_guard.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from diagnostics.request_guard import (
    ReadOnlyRefusal,
    check_docker_request,
    check_http_request,
    check_kubernetes_request,
)

CONTAINER = "/containers/3f2a"
DOCKER_ATTACH = "this Docker handle is read-only: diagnostics cannot attach to a container"
K8S = "this Kubernetes handle is read-only: diagnostics "
SUBRESOURCES = K8S + "may read the subresources log, scale, status, not "


def refusal(check: Callable[[str, str], None], method: str, url: str) -> str:
    with pytest.raises(ReadOnlyRefusal) as refused:
        check(method, url)
    return str(refused.value)


@pytest.mark.parametrize(("url", "message"), [
    (f"{CONTAINER}/attach", DOCKER_ATTACH),  # the plain attach, not only its websocket
    (f"{CONTAINER}/attach?stream=1?x", DOCKER_ATTACH),  # the query starts at the first `?`
    (f"{CONTAINER}/attach#a#b", DOCKER_ATTACH),  # the fragment starts at the first `#`
    (f"{CONTAINER}/./json", "this Docker handle refuses the ambiguous path "
                            "'/containers/3f2a/./json'"),
    ("/containers/a\\b/json", "this Docker handle refuses the ambiguous path "
                              "'/containers/a\\\\b/json'"),
    # urlsplit would read `containers` as a host and pass `/json`
    ("//containers/json", "this Docker handle refuses the ambiguous path '//containers/json'"),
])
def test_docker_refusals(url: str, message: str) -> None:
    assert refusal(check_docker_request, "GET", url) == message


def test_docker_names_the_refused_method_in_capitals() -> None:
    assert refusal(check_docker_request, "post", f"{CONTAINER}/stop") == (
        "this Docker handle is read-only: diagnostics cannot send 'POST' requests "
        "(GET and HEAD only)")


def test_an_ambiguous_path_is_quoted_up_to_200_characters() -> None:
    path = "/" + "a" * 300 + "/.."
    message = refusal(check_docker_request, "GET", path)
    assert message == f"this Docker handle refuses the ambiguous path {path[:200]!r}"


@pytest.mark.parametrize(("url", "message"), [
    # non-resource paths: only the connect-verb check stands between them and the server
    ("/EXEC", K8S + "cannot exec (EXEC)"),
    ("/exec;x=1", K8S + "cannot exec (exec;x=1)"),
    ("/exec:8080", K8S + "cannot exec (exec:8080)"),
    ("/exec/attach", K8S + "cannot attach/exec (exec/attach)"),
    ("/api/v1/nodes/node-1/eviction", SUBRESOURCES + "eviction"),  # cluster-scoped
    ("/api/v1/namespaces/web/pods/web-1/log/x", SUBRESOURCES + "log/x"),
])
def test_kubernetes_refusals(url: str, message: str) -> None:
    assert refusal(check_kubernetes_request, "GET", url) == message


def test_kubernetes_quotes_a_long_path_up_to_200_characters() -> None:
    tail = "b" * 300
    assert refusal(check_kubernetes_request, "GET", f"/exec/{tail}") == (
        K8S + f"cannot exec ({f'exec/{tail}'[:200]})")
    assert refusal(check_kubernetes_request, "GET",
                   f"/api/v1/namespaces/web/pods/web-1/log/{tail}") == (
        SUBRESOURCES + f"log/{tail}"[:200])


@pytest.mark.parametrize("url", ["/api/v1/watch/namespaces/web/pods/web-1",
                                 "/api/v1/nodes/node-1/status"])
def test_kubernetes_reads_of_one_object_pass(url: str) -> None:
    check_kubernetes_request("GET", url)


def test_http_names_the_refused_method_in_capitals() -> None:
    with pytest.raises(ReadOnlyRefusal) as refused:
        check_http_request("post")
    assert str(refused.value) == ("this HTTP handle is read-only: a probe may only read "
                                  "(GET, HEAD), not 'POST'")
