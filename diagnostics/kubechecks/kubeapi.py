"""What the workload checks share: the reader of a service on Kubernetes (or a refusal),
status conditions, and lists of API groups whose version depends on the server (HPAs,
CronJobs), as plain JSON.

The client library follows the newest Kubernetes (autoscaling/v2, batch/v1 CronJobs); servers
as old as 1.20 (the lab's) serve only autoscaling/v2beta2 and batch/v1beta1 CronJobs. So
the version is picked from what the server says it serves (discovery), and the list is a
plain GET through the read-only client of `diagnostics.kubernetes` (its guards refuse any
other verb below this code).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from runner.errors import PermanentError

from ..service import KubernetesService


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def reader(view: Any) -> Any:
    """The service's read-only KubernetesReader, or a refusal when it is not on Kubernetes."""
    if not isinstance(view.settings, KubernetesService):
        runtime = getattr(view.settings, "runtime", "?")
        raise PermanentError(f"{view.target}: kubernetes.* checks need a service with runtime: "
                             f"kubernetes; this one runs on {runtime} (use its own checks)")
    return view.runtime


def seconds_since(moment: datetime | None, now: datetime) -> float | None:
    return round((now - moment).total_seconds(), 1) if moment else None


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """The object's status condition of type `kind` ({} when it has none)."""
    return next((c for c in (obj.get("status") or {}).get("conditions") or []
                 if c.get("type") == kind), {})


def _get(client: Any, path: str, _preload_content: bool = False,
         _request_timeout: Any = None) -> Any:
    """GET `path` on the API server with the client's credentials; the response (raw)."""
    from kubernetes.client.exceptions import ApiException

    request = client.param_serialize("GET", path, header_params={"Accept": "application/json"},
                                     auth_settings=["BearerToken"])
    response = client.call_api(*request, _request_timeout=_request_timeout)
    response.read()
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=None, data=None)
    return response


def get(api: Any, path: str, resource: str) -> dict[str, Any]:
    """`path` as JSON, through `_Api.call` (timeouts, errors as runbook's kinds)."""
    return dict(api.call("list", resource, _get, api.client, path))


def served(api: Any, group: str, version: str) -> set[str]:
    """The resources the server serves in group/version; empty when it serves none."""
    try:
        found = get(api, f"/apis/{group}/{version}", f"{group}/{version}")
    except PermanentError as exc:
        if str(exc).startswith("not found"):
            return set()
        raise
    return {str(r.get("name")) for r in found.get("resources") or []}


def list_preferred(api: Any, group: str, versions: tuple[str, ...], resource: str
                   ) -> list[dict[str, Any]]:
    """The namespace's `resource` objects from the first of `versions` that serves it."""
    for version in versions:
        if resource in served(api, group, version):
            found = get(api, f"/apis/{group}/{version}/namespaces/{api.namespace}/{resource}",
                        resource)
            return [dict(item, apiVersion=f"{group}/{version}")
                    for item in found.get("items") or []]
    raise PermanentError(f"the API server serves no {resource} in {group} "
                         f"{', '.join(versions)}")
