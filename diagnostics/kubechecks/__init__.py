"""Read-only `kubernetes.*` checks of a `service` target with `runtime: kubernetes`.

`pods` explains why a workload's pods do not run (image pulls, crash loops, scheduling,
container config, probes, evictions) and `cluster` what is wrong with the nodes under them;
`workloads` reads the controllers above them (rollouts, HPAs, Jobs, Services, warning events)
and `capacity` what bounds them (OOM kills against their limits, namespace quotas,
disruption budgets).
`pods` registers the pod checks, whose reasoning lives in `crashes` (the previous
container's exit and the last error in its log, classified by `diagnostics.errorcause`),
`scheduling` (the scheduler's message parsed into causes) and `probes`; `podstate` is how
they read a workload (its pods and folded events) and `cluster` reads nodes, which are
cluster-scoped: the read-only role needs get/list on nodes through a ClusterRoleBinding.
They read the API through `diagnostics.kubernetes`'s read-only client (GET and HEAD only,
refused at its transport), so a check cannot change a workload even by a bug.
"""
