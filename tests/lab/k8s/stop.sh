#!/usr/bin/env bash
# Stop the lab cluster start.sh started and put the machine back as it was: the daemons (by
# their pids), the pod containers (k8s_*) dockershim left in dockerd, kubelet's mounts under
# its root dir, the sysctls kubelet changed, the kubepods cgroups. The state (etcd data, PKI)
# stays for the next start; WIPE=1 deletes it too. Safe to run when nothing runs.
set -uo pipefail
RUN=${RUNBOOK_K8S_STATE:-/var/lib/runbook-k8slab}
log() { echo "k8s-stop: $*" >&2; }
stop() { # names...: SIGTERM to each at once, SIGKILL to what is left after 5 s
    local name pid pids=()
    for name in "$@"; do
        pidfile=$RUN/$name.pid
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        rm -f "$pidfile"
        kill "$pid" 2>/dev/null && pids+=("$pid") && log "stopping $name (pid $pid)"
    done
    for _ in $(seq 50); do
        local alive=()
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
        ((${#alive[@]})) || return 0
        sleep 0.1
    done
    kill -9 "${alive[@]}" 2>/dev/null
    true
}
# kubelet first: it would restart the pod containers removed below; etcd last.
stop kubelet
stop kube-scheduler kube-controller-manager kube-apiserver
stop etcd
mapfile -t pods < <(docker ps -aq --filter 'name=^/k8s_')
if ((${#pods[@]})); then
    docker rm -f "${pods[@]}" >/dev/null && log "removed ${#pods[@]} pod containers (k8s_*)"
fi
# kubelet bind-mounts its root dir onto itself and mounts tmpfs for secret volumes.
awk -v root="$RUN/kubelet" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/mounts |
    sort -r | while read -r mount; do umount "$mount" || umount -l "$mount"; done
if [ -f "$RUN/sysctl.orig" ]; then
    while IFS== read -r key value; do sysctl -qw "$key=$value"; done <"$RUN/sysctl.orig"
    rm -f "$RUN/sysctl.orig"
    log "sysctls restored"
fi
for cgroup in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$cgroup" ] && find "$cgroup" -depth -type d -exec rmdir {} \; 2>/dev/null
done
if [ "${WIPE:-0}" = 1 ]; then
    rm -rf --one-file-system "$RUN" && log "wiped $RUN"
fi
true
