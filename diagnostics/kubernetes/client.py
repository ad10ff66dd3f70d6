"""The Kubernetes API client: credentials (the read-only ones for probes, the remedies' own
for actions) and the read-only guard at every layer of the client (its call_api, the REST
client, urllib3's connection pools, the websockets of `kubernetes.stream`). `_Api` makes the
calls, each with timeouts, answered as plain JSON, its errors as runbook's kinds."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.errors import PermanentError, StepError, TemporaryError

from ..request_guard import ReadOnlyRefusal, check_kubernetes_request


def _kubeconfig(settings: Any, action: bool) -> tuple[str | None, str | None]:
    """(kubeconfig path or None, context) for probes or for remedies."""
    if action and settings.action_kubeconfig:
        return settings.action_kubeconfig, settings.action_context
    if not action and (problem := probe_credentials_problem(settings)):
        raise PermanentError(problem)
    return settings.kubeconfig, (settings.action_context if action else None) or settings.context


def probe_credentials_problem(settings: Any) -> str | None:
    """Why probes must not run with these settings: remedies have their own credentials
    but probes none of their own, so they would fall back to KUBECONFIG, ~/.kube/config or
    the pod's service account, which may well be the broad ones."""
    if settings.action_kubeconfig and not settings.kubeconfig:
        return ("probes refuse to run: action_kubeconfig is set but kubeconfig is not, and "
                "the default credentials (KUBECONFIG, ~/.kube/config, the pod's service "
                "account) may be as broad as the remedies'; name the read-only ones with "
                "kubeconfig (deploy/kubernetes/rbac.yaml: runbook-diagnostics)")
    return None


# A mark on the client configuration of read-only handles: the websocket layer sees only
# the configuration, not the client.
_READ_ONLY_MARK = "runbook_read_only"


def _guard_rest_client(rest_client: Any) -> None:
    """Refuse every request but a GET or HEAD of a read path at the bottom of the client:
    its `request` (what call_api and any caller of the REST client use) and the urllib3
    connection pools under it (what anything reaching for the pool manager uses)."""
    inner_request = rest_client.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        check_kubernetes_request(method, url)
        return inner_request(method, url, *args, **kwargs)

    rest_client.request = request
    manager = rest_client.pool_manager
    manager.pool_classes_by_scheme = {
        scheme: _read_only_pool(pool) for scheme, pool in manager.pool_classes_by_scheme.items()}
    manager.clear()


def _read_only_pool(pool: type) -> type:
    def urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        check_kubernetes_request(method, url)
        return pool.urlopen(self, method, url, *args, **kwargs)  # type: ignore[attr-defined]

    return type(f"ReadOnly{pool.__name__}", (pool,), {"urlopen": urlopen})


def _guard_websockets() -> None:
    """exec, attach and port-forward go over websockets that `kubernetes.stream` opens
    itself (it swaps the client's call_api out while it does): refuse to open one for a
    read-only configuration. Installed once, in the library's module."""
    from kubernetes.stream import ws_client

    original: Any = ws_client.create_websocket
    if getattr(original, _READ_ONLY_MARK, False):
        return

    def create_websocket(configuration: Any, url: str, headers: Any = None) -> Any:
        if getattr(configuration, _READ_ONLY_MARK, False):
            raise ReadOnlyRefusal("this Kubernetes handle is read-only: diagnostics cannot "
                                  "open a websocket (exec, attach, port-forward)")
        return original(configuration, url, headers)

    setattr(create_websocket, _READ_ONLY_MARK, True)
    ws_client.create_websocket = create_websocket


def _api_client(settings: Any, timeout: float, *, read_only: bool) -> tuple[Any, str]:
    """An ApiClient for the target and a description of whose credentials it uses."""
    from kubernetes import client
    from kubernetes import config as kube_config

    config: Any = kube_config  # (its loaders are untyped)

    class ReadOnlyApiClient(client.ApiClient):
        """Kubernetes changes state through POST, PUT, PATCH and DELETE, and acts on a
        pod's processes through exec, attach, port-forward and proxy: refuse them all, here
        for a clear error, and again at every layer below (`_guard_rest_client`,
        `_guard_websockets`)."""

        def __init__(self, configuration: Any) -> None:
            setattr(configuration, _READ_ONLY_MARK, True)
            super().__init__(configuration)
            _guard_rest_client(self.rest_client)
            _guard_websockets()

        def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            check_kubernetes_request(method, url)
            return super().call_api(method, url, *args, **kwargs)

    path, context = _kubeconfig(settings, not read_only)
    configuration = client.Configuration()
    try:
        if path or os.environ.get("KUBECONFIG") or Path("~/.kube/config").expanduser().exists():
            # The file(s) by name: the client reads KUBECONFIG once, when it is imported.
            files = os.path.expanduser(os.path.expandvars(path)) if path else \
                os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
            config.load_kube_config(config_file=files, context=context,
                                    client_configuration=configuration, persist_config=False)
            source = f"kubeconfig {files}" + (f" (context {context})" if context else "")
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
            source = "the pod's service account"
        else:
            raise PermanentError("no Kubernetes credentials: name a kubeconfig in the inventory, "
                                 "set KUBECONFIG, or run runbook in a pod")
    except (config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise PermanentError(f"cannot load Kubernetes credentials ({path or 'default'}): "
                             f"{exc}") from None
    configuration.retries = False  # the engine retries, within the step's deadline
    cls = ReadOnlyApiClient if read_only else client.ApiClient
    return cls(configuration), source


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_namespace(settings: Any, action: bool) -> str:
    """The namespace a target that names none works in, as kubectl chooses it: the
    kubeconfig context's (the one the target names, else the current one), in a pod its
    own, else `default`."""
    if settings.namespace:
        return str(settings.namespace)
    path, context = _kubeconfig(settings, action)
    files = os.path.expanduser(os.path.expandvars(path)) if path else \
        os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    if path or os.environ.get("KUBECONFIG") or Path(files).exists():
        return context_namespace(files, context) or "default"
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        with contextlib.suppress(OSError):
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    return "default"


def context_namespace(files: str, context: str | None) -> str | None:
    """The namespace a kubeconfig's context names (the current context when None); None
    when it names none. `files` as KUBECONFIG lists them (merged as kubectl merges them)."""
    from kubernetes import config as kube_config

    reader: Any = kube_config
    try:
        contexts, current = reader.list_kube_config_contexts(config_file=files)
    except (reader.ConfigException, OSError, ValueError, TypeError) as exc:
        raise PermanentError(f"cannot read the Kubernetes contexts of {files}: {exc}") from None
    chosen = next((c for c in contexts if c.get("name") == context), None) if context \
        else current
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


def _message(exc: Any) -> str:
    """The API server's own message from an ApiException's Status body."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    return str(body.get("message") or exc.reason or exc).strip()


class _Api:
    """The calls the runtime makes, each with timeouts, its answer as plain JSON, and its
    errors as runbook's temporary and permanent kinds."""

    def __init__(self, settings: Any, timeout: float, *, read_only: bool) -> None:
        from kubernetes import client

        self.settings = settings
        self.client, self.source = _api_client(settings, timeout, read_only=read_only)
        self.namespace: str = default_namespace(settings, not read_only)
        self.core = client.CoreV1Api(self.client)
        self.apps = client.AppsV1Api(self.client)
        self.custom = client.CustomObjectsApi(self.client)
        read = max(1.0, float(timeout))
        self.timeouts = (min(5.0, read), read)

    def close(self) -> None:
        self.client.close()

    def cancel(self) -> None:
        # Closes the connections: a request in flight fails at once.
        with contextlib.suppress(Exception):
            self.client.rest_client.pool_manager.clear()

    def call(self, verb: str, resource: str, func: Callable[..., Any], *args: Any,
             raw: bool = False, **kwargs: Any) -> Any:
        """`func(*args, **kwargs)`, as JSON (bytes decoded to text when `raw`)."""
        import urllib3
        from kubernetes.client.exceptions import ApiException

        try:
            response = func(*args, _preload_content=False, _request_timeout=self.timeouts,
                            **kwargs)
            data = response.data
        except ApiException as exc:
            raise self._error(exc, verb, resource) from None
        except urllib3.exceptions.HTTPError as exc:
            host = self.client.configuration.host
            raise TemporaryError(f"Kubernetes API at {host} unreachable: {exc}") from None
        if raw:
            return bytes(data).decode("utf-8", errors="replace")
        return json.loads(data) if data else {}

    def _error(self, exc: Any, verb: str, resource: str) -> StepError:
        status, message = exc.status, _message(exc)
        where = f"in namespace {self.namespace}"
        if status == 403:
            hint = (" Remedies need credentials bound to the runbook-remedies role "
                    "(action_kubeconfig; deploy/kubernetes/rbac.yaml)."
                    if verb in {"patch", "update", "create", "delete"} else
                    " Diagnostics need the runbook-diagnostics role "
                    "(deploy/kubernetes/rbac.yaml).")
            return PermanentError(f"forbidden: the Kubernetes API server refused to {verb} "
                                  f"{resource} {where} with {self.source}: {message}.{hint}")
        if status == 401:
            return PermanentError(f"the Kubernetes API server did not accept the credentials "
                                  f"of {self.source}: {message}")
        if status == 404:
            return PermanentError(f"not found: {message} ({verb} {resource} {where})")
        if status in (409, 429) or (status and status >= 500):
            return TemporaryError(f"Kubernetes API: {message} ({verb} {resource} {where})")
        return PermanentError(f"Kubernetes API refused to {verb} {resource} {where}: "
                              f"HTTP {status}: {message}")
