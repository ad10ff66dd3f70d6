"""Read-only `kubernetes.*` checks of a `service` target with `runtime: kubernetes`.

`pods` explains why a workload's pods do not run (image pulls, crash loops, scheduling,
container config, probes, evictions) and `cluster` what is wrong with the nodes under them;
`workloads` reads the controllers above them (rollouts, HPAs, Jobs, Services, warning events).
They read the API through `diagnostics.kubernetes`'s read-only client (GET and HEAD only,
refused at its transport), so a check cannot change a workload even by a bug.
"""
