"""Services on Kubernetes: the runtime behind `service.*` steps when `runtime: kubernetes`.

    journey-api:
      kind: service
      runtime: kubernetes
      namespace: journey
      deployment: journey-api            # or statefulset: NAME, or selector: app=journey-api
      kubeconfig: /etc/runbook/diagnostics.kubeconfig  # default: KUBECONFIG, ~/.kube/config,
                                                       # then the pod's service account
      action_kubeconfig: /etc/runbook/remedies.kubeconfig  # remedies only (default: kubeconfig)
      health_url: http://{pod_ip}:8080/health   # {pod_ip}: a ready pod's IP, looked up per step

`KubernetesReader` is what probes get; `KubernetesOperator` (remedies only, through the
gate) adds rollout restart, rollback, scale and a memory limit, each of which waits for its
rollout to finish and reports how it went; a rollback deploys the revision pinned when it
was proposed, or refuses if that revision changed (`rollback`,
which also says what the pin does not cover). Both return what `diagnostics.docker` returns
for the same methods, so that the service playbooks run unchanged; Kubernetes adds its own
keys (pods, conditions, rollout, events, revisions).

Read-only is enforced twice: the reader's API client refuses every HTTP method but GET and
HEAD, and exec, attach, port-forward and proxy paths, matched on the decoded path, at its
lowest layers (urllib3's connection pools, the REST client, the websockets of
`kubernetes.stream`), so that a bug cannot change a workload or reach into a pod; and
the credentials should be bound to deploy/kubernetes/rbac.yaml's `runbook-diagnostics` role
(get, list, watch), so that the API server refuses too. A 403 becomes a PermanentError that
says which verb on which resource was refused.

Every request has a connect and a read timeout, and urllib3's own retries are off (the
engine decides about retries). Responses are read as plain JSON rather than the client's
model classes: the client is much newer than many servers (1.20 in the lab), and plain JSON
does not care about fields one side does not know.

Memory comes from the metrics.k8s.io API where a metrics-server serves it. Without one (the
lab), when the pods' containers run on this machine's Docker engine (dockershim), their
cgroup is sampled through it, read-only; otherwise the step says memory use is unknown.

The modules: `client` (credentials, the read-only guards, `_Api`), `objects` (pure helpers
over the API's JSON: quantities, times, a pod's view), `reads` (`KubernetesReader`), `usage`
(memory and processes), `remedies` (`KubernetesOperator`), `rollback` (the revision a
rollback is pinned to). This package re-exports what other modules and tests import.
"""
from __future__ import annotations

from .client import (
    _Api,
    _api_client,
    _guard_rest_client,
    _guard_websockets,
    _read_only_pool,
    probe_credentials_problem,
)
from .objects import (
    HASH_LABEL,
    MAX_PODS,
    REVISION,
    STUCK,
    format_quantity,
    label_selector,
    parse_quantity,
    quantity,
)
from .reads import KubernetesReader
from .remedies import RESTARTED_AT, KubernetesOperator

__all__ = [
    "HASH_LABEL",
    "MAX_PODS",
    "RESTARTED_AT",
    "REVISION",
    "STUCK",
    "KubernetesOperator",
    "KubernetesReader",
    "_Api",
    "_api_client",
    "_guard_rest_client",
    "_guard_websockets",
    "_read_only_pool",
    "format_quantity",
    "label_selector",
    "parse_quantity",
    "probe_credentials_problem",
    "quantity",
]
