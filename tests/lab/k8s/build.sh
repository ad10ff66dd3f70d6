#!/usr/bin/env bash
# The lab's Kubernetes: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
# kubectl v1.20.2 built from Debian bookworm's `kubernetes` SOURCE package (the only place a
# Kubernetes is reachable from here), etcd from Debian's etcd-server, and the pod sandbox
# ("pause") image compiled from the same tree. Needs root (apt-get, docker import).
#
#   build.sh           make sure everything is there; a no-op (well under a second) when it is
#   build.sh --dir     print the cache directory of the current recipe, build nothing
#   build.sh --check   exit 0 when nothing is missing, 1 otherwise; build nothing
#
# The binaries are cached OUTSIDE the clone, in $RUNBOOK_K8S_CACHE (/var/cache/runbook-k8slab)
# under <source version>-r<recipe>-<patch hash>/: a new patch or recipe builds a new directory,
# a fresh machine builds it again by itself. The build takes about 5 minutes on 2 cores and
# ~3 GB of scratch space under /var/tmp, deleted afterwards; the cache keeps 380 MB.
# Only missing apt packages are installed. The comments below say why each step is here.
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
CACHE_ROOT=${RUNBOOK_K8S_CACHE:-/var/cache/runbook-k8slab}
ORIG_VERSION=1.20.5+really1.20.2 # Debian's upstream tarball: Kubernetes 1.20.2 with vendor/
KUBE_VERSION=v1.20.2
KUBE_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56
RECIPE=1 # bump when the steps below change what ends up in bin/
PATCH=$HERE/kubelet.patch
PAUSE_IMAGE=k8s.gcr.io/pause:3.2 # kubelet 1.20's default sandbox image; start.sh passes it too
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
RUN_PACKAGES=(etcd-server)
BUILD_PACKAGES=(golang-go rsync gcc libc6-dev golang-github-modern-go-reflect2-dev
    golang-github-json-iterator-go-dev)

KEY="$ORIG_VERSION-r$RECIPE-$(sha256sum "$PATCH" | cut -c1-12)"
DIR=$CACHE_ROOT/$KEY

log() { echo "k8s-build: $*" >&2; }
missing_packages() {
    local pkg
    for pkg in "$@"; do
        # no `grep -q`: dpkg would get SIGPIPE and pipefail would call that a miss
        dpkg -s "$pkg" 2>/dev/null | grep -x 'Status: install ok installed' >/dev/null ||
            echo "$pkg"
    done
}
binaries_cached() { [ -f "$DIR/.complete" ]; }
pause_imported() { docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1; }

case "${1:-}" in
--dir)
    echo "$DIR"
    exit 0
    ;;
--check)
    binaries_cached && pause_imported && [ -z "$(missing_packages "${RUN_PACKAGES[@]}")" ]
    exit
    ;;
"") ;;
*)
    echo "usage: $0 [--dir|--check]" >&2
    exit 2
    ;;
esac

install_packages() { # packages...; only the missing ones
    local missing
    mapfile -t missing < <(missing_packages "$@")
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    local apt_log=$CACHE_ROOT/apt-install.log
    # Package scripts start their services through invoke-rc.d where they can (etcd-server
    # would run an etcd on :2379 that nothing here wants): a policy-rc.d saying 101 ("action
    # forbidden") stops that for the length of the install. One already there is left alone.
    local policy=/usr/sbin/policy-rc.d own_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# runbook tests/lab/k8s/build.sh, during apt-get install only\nexit 101\n' \
            >"$policy"
        chmod 755 "$policy"
        own_policy=1
    fi
    if ! {
        DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -qq \
            "${missing[@]}" ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
                apt-get install -y -qq "${missing[@]}"; }
    } >"$apt_log" 2>&1; then
        log "FAILED: apt-get install ${missing[*]}; end of $apt_log:"
        tail -n 30 "$apt_log" >&2
        [ -z "$own_policy" ] || rm -f "$policy"
        exit 1
    fi
    [ -z "$own_policy" ] || rm -f "$policy"
}

mkdir -p "$CACHE_ROOT"
# One build at a time (two setups at once would both spend 5 minutes and 3 GB).
exec 9>"$CACHE_ROOT/.lock"
flock 9

install_packages "${RUN_PACKAGES[@]}"

build() {
    local started scratch src apt_dir
    started=$(date +%s)
    install_packages "${BUILD_PACKAGES[@]}"

    # 1. The source package through a private apt configuration (the system's sources.list
    #    stays as it is); the tarball is kept, so that a new patch does not download again.
    apt_dir=$CACHE_ROOT/apt
    src=$CACHE_ROOT/src
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$src"
    printf '%s\n' 'deb-src http://deb.debian.org/debian bookworm main' \
        'deb-src http://deb.debian.org/debian-security bookworm-security main' \
        >"$apt_dir/sources.list"
    local tarball=$src/kubernetes_$ORIG_VERSION.orig.tar.gz
    if [ ! -f "$tarball" ]; then
        log "downloading Debian's kubernetes source package (34 MB)"
        local apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list"
            -o "Dir::Etc::sourceparts=-" -o "Dir::State::Lists=$apt_dir/lists"
            -o "Dir::Cache=$apt_dir/cache" -o "APT::Sandbox::User=root")
        apt-get "${apt_opts[@]}" update -qq
        (cd "$src" && apt-get "${apt_opts[@]}" source --download-only -qq kubernetes >/dev/null)
        if [ ! -f "$tarball" ]; then
            log "FAILED: Debian's kubernetes source no longer has $(basename "$tarball"):"
            ls "$src" >&2
            exit 1
        fi
    fi

    # 2. Unpack into scratch space that is deleted however this ends (2.8 GB with the Go cache).
    scratch=$(mktemp -d /var/tmp/runbook-k8slab-build.XXXXXX)
    # shellcheck disable=SC2064 # expand now: the trap must remove this very directory
    trap "rm -rf --one-file-system '$scratch'" EXIT
    log "building Kubernetes $KUBE_VERSION into $DIR (about 5 minutes; log: $scratch/build.log)"
    tar -C "$scratch" -xzf "$tarball"
    local tree=$scratch/kubernetes-${ORIG_VERSION#*really}
    # 3. The vendored reflect2 1.0.1 crashes under Go >= 1.18 ("fatal error: fault" at run
    #    time): Debian's reflect2 1.0.2 and json-iterator 1.1.12 instead.
    local vendor=$tree/vendor/github.com
    rm -rf "$vendor/modern-go/reflect2" "$vendor/json-iterator/go"
    cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$vendor/modern-go/reflect2"
    cp -r /usr/share/gocode/src/github.com/json-iterator/go "$vendor/json-iterator/go"
    # 4. Two kubelet patches, each inert unless its environment variable is set (start.sh):
    #    KUBELET_MIN_OOM_SCORE_ADJ (no CAP_SYS_RESOURCE here) and KUBELET_LOG_ROOT.
    patch -s -d "$tree" -p1 <"$PATCH"
    # 5. Static binaries, cgo off (as Debian builds its own kubelet); no network (GOPROXY=off).
    if ! (cd "$tree" && env CGO_ENABLED=0 GOPROXY=off HOME="$scratch/home" \
        KUBE_GIT_VERSION=$KUBE_VERSION KUBE_GIT_TREE_STATE=clean \
        KUBE_GIT_COMMIT=$KUBE_COMMIT \
        make WHAT="${BINARIES[*]/#/cmd/}") >"$scratch/build.log" 2>&1; then
        log "FAILED: make; end of the build log:"
        tail -n 40 "$scratch/build.log" >&2
        exit 1
    fi
    # 6. The sandbox image's one program, from the same tree.
    local staging=$CACHE_ROOT/.staging-$KEY
    rm -rf "$staging"
    mkdir -p "$staging/bin" "$staging/pause"
    gcc -Os -Wall -Werror -static -DVERSION=v3.4-runbook -o "$staging/pause/pause" \
        "$tree/build/pause/linux/pause.c"
    strip "$staging/pause/pause"
    for b in "${BINARIES[@]}"; do
        install -m 755 "$tree/_output/bin/$b" "$staging/bin/$b"
    done
    echo "built $(date -u +%FT%TZ) in $(($(date +%s) - started)) s from $(basename "$tarball")" \
        >"$staging/BUILD_INFO"
    touch "$staging/.complete"
    rm -rf "$DIR"
    mv "$staging" "$DIR" # whole or not at all: a killed build leaves no half cache
    rm -rf --one-file-system "$scratch"
    trap - EXIT
    log "built in $(($(date +%s) - started)) s: $(du -sh "$DIR" | cut -f1) in $DIR"
}

binaries_cached || build

if ! pause_imported; then
    tar -C "$DIR/pause" -c --owner=0 --group=0 pause |
        docker import --change 'ENTRYPOINT ["/pause"]' - "$PAUSE_IMAGE" >/dev/null
    log "imported $PAUSE_IMAGE"
fi
