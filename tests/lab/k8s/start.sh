#!/usr/bin/env bash
# Start the lab's single-node Kubernetes v1.20.2 (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet with its built-in dockershim) on the running dockerd. Everything
# listens on 127.0.0.1 only; pods are docker containers (k8s_*) on the default bridge, their
# IPs reachable from this machine. No kube-proxy, no cluster DNS, no CNI, no metrics-server.
#
#   start.sh        start what is not running, wait until the node is Ready; idempotent (a
#                   running cluster answers in a fraction of a second)
#
# Binaries: build.sh's cache. State (etcd data, PKI, kubeconfigs, kubelet root, logs, pids):
# $RUNBOOK_K8S_STATE (/var/lib/runbook-k8slab). The admin kubeconfig: $STATE/admin.kubeconfig.
# Stop with stop.sh (it also restores the sysctls kubelet changes).
set -euo pipefail
HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
RUN=${RUNBOOK_K8S_STATE:-/var/lib/runbook-k8slab}
BIN=$("$HERE/build.sh" --dir)/bin
NODE=127.0.0.1 # the node's name is its address: kubelet refuses a loopback --node-ip but
#                takes an IP given as --hostname-override, and the apiserver dials it there
PAUSE_IMAGE=k8s.gcr.io/pause:3.2
LOG=$RUN/logs
P=$RUN/pki
API=https://127.0.0.1:16443
DAEMONS=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet)

log() { echo "k8s-start: $*" >&2; }
if [ ! -x "$BIN/kubelet" ] || ! command -v etcd >/dev/null; then
    log "LAB NOT READY: no Kubernetes binaries in $(dirname "$BIN") or no etcd; run scripts/setup"
    exit 1
fi
mkdir -p "$RUN" "$LOG"
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
admin_curl() { curl -sf --max-time 2 --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key" "$@"; }
kubectl() { "$BIN/kubectl" --kubeconfig="$RUN/admin.kubeconfig" --cache-dir="$RUN/kubectl-cache" \
    --request-timeout=5s "$@"; }
# Ready must come from the kubelet running now: etcd still holds the Ready=True of the last one.
node_ready() {
    curl -sf --max-time 2 http://127.0.0.1:10248/healthz >/dev/null || return 1
    local out started
    out=$(kubectl get node "$NODE" -o \
        jsonpath='{range .status.conditions[?(@.type=="Ready")]}{.status} {.lastHeartbeatTime}{end}') ||
        return 1
    started=$(stat -c %Y "$RUN/kubelet.pid")
    set -- $out
    [ "${1:-}" = True ] && [ "$(date -d "$2" +%s)" -ge "$started" ]
}
wait_for() { # what seconds daemon command...: on failure, the end of the daemon's log
    local what=$1 seconds=$2 daemon=$3 t0
    shift 3
    t0=$(now)
    for _ in $(seq $((seconds * 10))); do
        if "$@" >/dev/null 2>&1; then
            log "$what after $(since "$t0") s"
            return 0
        fi
        if [ -n "$daemon" ] && ! running "$daemon"; then
            log "FAILED: $daemon exited; end of $LOG/$daemon.log:"
            tail -n 25 "$LOG/$daemon.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    log "FAILED: $what not reached in $seconds s; end of $LOG/${daemon:-kubelet}.log:"
    tail -n 25 "$LOG/${daemon:-kubelet}.log" >&2
    exit 1
}
start() { # name command...: in the background, in its own session; pid in $RUN/name.pid
    local name=$1
    shift
    running "$name" && return 0
    setsid "$@" >"$LOG/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN/$name.pid"
    log "started $name (pid $!)"
}

all_running() { for d in "${DAEMONS[@]}"; do running "$d" || return 1; done; }
if all_running && node_ready; then
    log "already running; KUBECONFIG=$RUN/admin.kubeconfig"
    exit 0
fi

T0=$(now)
RUN=$RUN NODE=$NODE APISERVER=$API "$HERE/gen-pki.sh"

cat >"$RUN/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
cgroupDriver: $(docker info --format '{{.CgroupDriver}}')   # must be dockerd's
failSwapOn: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: AlwaysAllow}
clusterDomain: cluster.local
imageGCHighThresholdPercent: 100   # never collect the lab's images: none can be pulled again
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
makeIPTablesUtilChains: false      # leave the host's iptables alone
volumePluginDir: $RUN/kubelet-plugins
serializeImagePulls: false
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
featureGates: {DevicePlugins: false}   # else /var/lib/kubelet/device-plugins, a fixed path
EOF

start etcd etcd --name runbook-k8slab --data-dir "$RUN/etcd" \
    --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
    --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
    --initial-cluster runbook-k8slab=http://127.0.0.1:23800 \
    --listen-metrics-urls http://127.0.0.1:23810
wait_for "etcd healthy" 30 etcd curl -sf --max-time 2 http://127.0.0.1:23790/health

start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers=http://127.0.0.1:23790 \
    --bind-address=127.0.0.1 --secure-port=16443 --insecure-port=0 --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none \
    --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
    --client-ca-file="$P/ca.crt" \
    --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$P/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultTolerationSeconds,NodeRestriction,ResourceQuota \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 --allow-privileged=true \
    --profiling=false --v=1
wait_for "kube-apiserver ready" 60 kube-apiserver admin_curl "$API/readyz"

start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$RUN/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$RUN/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$RUN/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10257 --port=0 --leader-elect=false \
    --controllers='*,bootstrapsigner,tokencleaner' --use-service-account-credentials=true \
    --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
    --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
    --flex-volume-plugin-dir="$RUN/kcm-flexvolume" --profiling=false --v=1
start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$RUN/scheduler.kubeconfig" \
    --authentication-kubeconfig="$RUN/scheduler.kubeconfig" \
    --authorization-kubeconfig="$RUN/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10259 --port=0 --leader-elect=false \
    --profiling=false --v=1

# kubelet sets vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1 (and may touch
# the others): the values before it, for stop.sh to put back. Kept from the first start on.
if [ ! -f "$RUN/sysctl.orig" ]; then
    for s in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
        kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
        echo "$s=$(sysctl -n "$s")"
    done >"$RUN/sysctl.orig.tmp"
    mv "$RUN/sysctl.orig.tmp" "$RUN/sysctl.orig"
fi
mkdir -p "$RUN/kubelet" "$RUN/dockershim" "$RUN/kubelet-plugins" "$RUN/log"
# Without CAP_SYS_RESOURCE (bit 24 of CapEff; missing in some sandboxes) runc cannot set the
# negative oom_score_adj dockershim asks for: the patched kubelet clamps it to 0 when told.
min_oom=""
(((0x$(awk '/^CapEff/ {print $2}' /proc/self/status) >> 24) & 1)) || min_oom=0
start kubelet env KUBELET_LOG_ROOT="$RUN/log" KUBELET_MIN_OOM_SCORE_ADJ="$min_oom" \
    "$BIN/kubelet" --config="$RUN/kubelet-config.yaml" --kubeconfig="$RUN/kubelet.kubeconfig" \
    --container-runtime=docker --docker-endpoint=unix:///var/run/docker.sock \
    --pod-infra-container-image="$PAUSE_IMAGE" --hostname-override="$NODE" \
    --root-dir="$RUN/kubelet" --cert-dir="$RUN/kubelet/pki" \
    --experimental-dockershim-root-directory="$RUN/dockershim" --v=1
wait_for "node $NODE Ready" 120 kubelet node_ready
for d in "${DAEMONS[@]}"; do
    if ! running "$d"; then
        log "FAILED: $d exited; end of $LOG/$d.log:"
        tail -n 25 "$LOG/$d.log" >&2
        exit 1
    fi
done
# Pods are admitted only once their namespace's default ServiceAccount exists.
wait_for "default ServiceAccount" 60 kube-controller-manager \
    kubectl -n default get serviceaccount default
log "cluster up in $(since "$T0") s; KUBECONFIG=$RUN/admin.kubeconfig"
echo "START_SECONDS=$(since "$T0")"
