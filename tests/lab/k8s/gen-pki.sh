#!/usr/bin/env bash
# The lab cluster's PKI, made once per state directory with openssl: a CA, the apiserver's
# serving certificate (loopback), client certificates for admin (system:masters), the node
# (system:node:<NODE>, for the Node authorizer), the controller manager, the scheduler and
# the apiserver's kubelet client; the service-account signing key; one kubeconfig per client.
#   RUN=<state dir> NODE=127.0.0.1 gen-pki.sh      (start.sh calls it; a no-op once made)
set -euo pipefail
RUN=${RUN:?RUN must name the state directory}
NODE=${NODE:-127.0.0.1}
APISERVER=${APISERVER:-https://127.0.0.1:16443}
P=$RUN/pki
[ -f "$P/.complete" ] && exit 0
rm -rf "$P"
mkdir -p "$P"
cd "$P"
umask 077
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
    -subj "/CN=runbook-k8slab-ca" 2>/dev/null
cert() { # name CN O [subjectAltName]: a server+client certificate when a SAN is given
    local n=$1 cn=$2 o=$3 san=${4:-}
    openssl req -newkey rsa:2048 -nodes -keyout "$n.key" -out "$n.csr" \
        -subj "/CN=$cn${o:+/O=$o}" 2>/dev/null
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=${san:+serverAuth,}clientAuth"
        [ -z "$san" ] || echo "subjectAltName=$san"
    } >"$n.ext"
    openssl x509 -req -in "$n.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$n.crt" \
        -days 3650 -extfile "$n.ext" 2>/dev/null
    rm -f "$n.csr" "$n.ext"
}
cert apiserver kube-apiserver "" "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,\
DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert admin admin system:masters
cert kubelet "system:node:$NODE" system:nodes
cert controller-manager system:kube-controller-manager ""
cert scheduler system:kube-scheduler ""
cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
for u in admin kubelet controller-manager scheduler; do
    cat >"$RUN/$u.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: runbook-lab
  cluster: {server: $APISERVER, certificate-authority: $P/ca.crt}
users:
- name: $u
  user: {client-certificate: $P/$u.crt, client-key: $P/$u.key}
contexts:
- name: $u@runbook-lab
  context: {cluster: runbook-lab, user: $u}
current-context: $u@runbook-lab
KC
done
touch "$P/.complete"
