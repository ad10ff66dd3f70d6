"""The raw-request guards of the read-only clients, lab-free: a table of method and path,
with the encodings an attacker would try. The lab tests (test_services.py for Docker,
test_kubernetes_safety.py for Kubernetes, tests/unit/test_http.py for HTTP) prove each is
installed at the client's lowest layer."""

from __future__ import annotations

import pytest

from diagnostics.request_guard import (
    ReadOnlyRefusal,
    check_docker_request,
    check_http_request,
    check_kubernetes_request,
    decoded_path,
)

POD = "/api/v1/namespaces/web/pods/web-1"
DEPLOYMENT = "/apis/apps/v1/namespaces/web/deployments/web"


@pytest.mark.parametrize(("method", "url"), [
    ("GET", POD),
    ("HEAD", POD),
    ("get", POD),
    ("GET", f"https://10.0.0.1:6443{POD}?pretty=true"),
    ("GET", "/api/v1/namespaces/web/pods?labelSelector=app%3Dweb&limit=500"),
    ("GET", f"{POD}/log?container=api&previous=true&tailLines=100"),
    ("GET", f"{POD}/status"),
    ("GET", f"{DEPLOYMENT}/scale"),
    ("GET", "/api/v1/namespaces/web/events?fieldSelector=involvedObject.name%3Dweb"),
    ("GET", "/api/v1/watch/namespaces/web/pods"),
    ("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/web/pods"),
    ("GET", "/api/v1/namespaces/web"),
    ("GET", "/api/v1/nodes/node-1"),
    ("GET", "/version"),
    ("GET", f"{POD}/"),  # a trailing slash
])
def test_kubernetes_reads_pass(method: str, url: str) -> None:
    check_kubernetes_request(method, url)


@pytest.mark.parametrize(("method", "url"), [
    # verbs that write
    ("POST", "/api/v1/namespaces/web/pods"),
    ("PUT", POD),
    ("PATCH", DEPLOYMENT),
    ("patch", DEPLOYMENT),
    ("DELETE", POD),
    ("OPTIONS", POD),
    ("CONNECT", POD),
    ("GET ", POD),
    (" GET", POD),
    ("GET\r\nX-Injected: 1", POD),
    # GETs that act: exec, attach, port-forward, proxy, however spelled
    ("GET", f"{POD}/exec?command=touch&command=/tmp/x&stdout=true"),
    ("GET", f"{POD}/attach?stdin=true"),
    ("GET", f"{POD}/portforward?ports=8080"),
    ("GET", f"{POD}/proxy/admin"),
    ("GET", f"{POD}:8080/proxy/"),
    ("GET", "/api/v1/namespaces/web/services/web:80/proxy/admin"),
    ("GET", "/api/v1/nodes/node-1/proxy/run/web/web-1/api/"),
    ("GET", "/api/v1/proxy/namespaces/web/pods/web-1/"),
    ("GET", f"{POD}/%65xec?command=id"),
    ("GET", f"{POD}/%65%78%65%63"),
    ("GET", f"{POD}/%2565xec"),
    ("GET", f"{POD}/%252565xec"),
    ("GET", f"{POD}/EXEC"),
    ("GET", f"{POD}/exec/"),
    ("GET", f"{POD}/exec;x=y"),
    ("GET", f"https://10.0.0.1:6443/prefix/k8s{POD}/exec"),
    ("GET", f"https://rancher.example/k8s/clusters/c-1{POD}/exec?command=id"),
    # paths the server would resolve differently from how they read
    ("GET", f"{POD}/log/../exec"),
    ("GET", f"{POD}/log/%2e%2e/exec"),
    ("GET", f"{POD}/log/%252e%252e/attach"),
    ("GET", "/api/v1/namespaces/web/pods//web-1/exec"),
    ("GET", "/api/v1/namespaces/web/pods/web-1%2Fexec"),
    ("GET", f"{POD}/log\\..\\exec"),  # a proxy may take a backslash for /
    # subresources not on the read list
    ("GET", "/apis/kubevirt.io/v1/namespaces/web/virtualmachineinstances/vm/console"),
    ("GET", "/apis/subresources.kubevirt.io/v1/namespaces/web/virtualmachineinstances/vm/vnc"),
    ("GET", f"{POD}/ephemeralcontainers"),
    ("GET", "/api/v1/namespaces/web/serviceaccounts/default/token"),
    ("GET", f"{POD}/log/extra"),
])
def test_kubernetes_refuses(method: str, url: str) -> None:
    with pytest.raises(ReadOnlyRefusal, match="Kubernetes handle"):
        check_kubernetes_request(method, url)


CONTAINER = "/v1.41/containers/3f2a"


@pytest.mark.parametrize(("method", "url"), [
    ("GET", f"http+docker://localhost{CONTAINER}/json"),
    ("GET", f"{CONTAINER}/json"),
    ("HEAD", f"{CONTAINER}/archive?path=/etc"),
    ("GET", "/v1.41/containers/json?all=1&filters=%7B%22label%22%3A+%5B%22x%22%5D%7D"),
    ("GET", f"{CONTAINER}/logs?stdout=1&stderr=1&tail=100"),
    ("GET", f"{CONTAINER}/stats?stream=0"),
    ("GET", f"{CONTAINER}/top"),
    ("GET", "/containers/attach/json"),  # a container named "attach"
    ("GET", "/v1.41/version"),
    ("GET", "/_ping"),
    ("GET", f"http+unix://%2Fvar%2Frun%2Fdocker.sock{CONTAINER}/json"),
    ("GET", f"{CONTAINER}/json/"),
])
def test_docker_reads_pass(method: str, url: str) -> None:
    check_docker_request(method, url)


@pytest.mark.parametrize(("method", "url"), [
    ("POST", f"{CONTAINER}/stop"),
    ("POST", f"{CONTAINER}/kill?signal=KILL"),
    ("post", f"{CONTAINER}/restart"),
    ("PUT", f"{CONTAINER}/archive?path=/"),
    ("DELETE", f"{CONTAINER}?force=1"),
    ("PATCH", f"{CONTAINER}/update"),
    ("OPTIONS", f"{CONTAINER}/json"),
    ("GET ", f"{CONTAINER}/json"),
    ("GET", f"{CONTAINER}/attach/ws?stdin=1&stream=1"),
    ("GET", f"{CONTAINER}/%61ttach/ws?stdin=1"),
    ("GET", f"{CONTAINER}/%2561ttach/ws"),
    ("GET", f"{CONTAINER}/ATTACH/ws"),
    ("GET", f"{CONTAINER}/attach/ws/"),
    ("GET", "/containers/3f2a/attach/ws"),
    ("GET", f"http+docker://localhost{CONTAINER}/attach/ws"),
    ("GET", f"{CONTAINER}/json/../attach/ws"),
    ("GET", f"{CONTAINER}/json/%2e%2e/attach/ws"),
    ("GET", "/v1.41/containers//3f2a/json"),
    ("GET", f"{CONTAINER}/json%5c..%5cattach%5cws"),
])
def test_docker_refuses(method: str, url: str) -> None:
    with pytest.raises(ReadOnlyRefusal, match="Docker handle"):
        check_docker_request(method, url)


@pytest.mark.parametrize("method", ["GET", "HEAD", "get"])
def test_http_reads_pass(method: str) -> None:
    check_http_request(method)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
                                    "CONNECT", "GET ", "", "GETX"])
def test_http_refuses(method: str) -> None:
    with pytest.raises(ReadOnlyRefusal, match="HTTP handle is read-only"):
        check_http_request(method)


@pytest.mark.parametrize(("url", "path"), [
    ("/a/%65xec", "/a/exec"),
    ("/a/%2565xec", "/a/exec"),
    ("/a/%25252565xec", "/a/exec"),
    ("https://h:1/a%2Fb?x=%2F#frag", "/a/b"),
    ("/a?b=/exec", "/a"),
    ("", ""),
])
def test_paths_are_decoded_until_nothing_changes(url: str, path: str) -> None:
    assert decoded_path(url) == path


def test_a_path_encoded_without_end_is_refused() -> None:
    url = "/a/%" + "25" * 12 + "65xec"  # each decoding peels one 25 off
    with pytest.raises(ReadOnlyRefusal, match="encoded more than 10 times"):
        decoded_path(url)
