#!/usr/bin/env bash
# Builds the local control plane from the Go module proxy into a cache that
# later runs reuse: kube-apiserver and etcd by default, more components when
# named (kube-controller-manager, kube-scheduler, kubelet from the same
# Kubernetes build; kwok as the simulated kubelet; CoreDNS; containerd, its
# runc shim and ctr for the real node; nats-server, the real peer software the
# node runs; helm and kubectl, to install and use the chart as users do). Prints the directory holding the
# binaries on its last line, ready for KUBEBUILDER_ASSETS.
#
#   hack/controlplane/build.sh [component ...]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
version="v1.37.2"
bin="${PEERGROUP_CACHE:-$root/.cache}/controlplane/$version/bin"
mkdir -p "$bin"

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(etcd kube-apiserver)

declare -A pkg=(
  [etcd]=go.etcd.io/etcd/server/v3
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
  [kubelet]=k8s.io/kubernetes/cmd/kubelet
  [kubectl]=k8s.io/kubernetes/cmd/kubectl
)
# Tools with their own module and pinned dependencies: `go install pkg@v`.
declare -A tool=(
  [kwok]=sigs.k8s.io/kwok/cmd/kwok@v0.8.0
  [coredns]=github.com/coredns/coredns@v1.15.0
  [containerd]=github.com/containerd/containerd/v2/cmd/containerd@v2.4.2
  [containerd-shim-runc-v2]=github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@v2.4.2
  [ctr]=github.com/containerd/containerd/v2/cmd/ctr@v2.4.2
  [nats-server]=github.com/nats-io/nats-server/v2@v2.15.2
  [helm]=helm.sh/helm/v3/cmd/helm@v3.22.0
)
# containerd without cgo: the snapshotters that need C libraries are left out
# (the node uses overlayfs).
declare -A tags=(
  [containerd]="no_btrfs no_devmapper no_zfs"
  [containerd-shim-runc-v2]="no_btrfs no_devmapper no_zfs"
  [ctr]="no_btrfs no_devmapper no_zfs"
)

# Kubernetes binaries report this version (kubectl version, /version, the
# Node's kubeletVersion); built from the module proxy they would say
# v0.0.0-master, which charts' kubeVersion constraints refuse.
kube_ldflags="-s -w"
for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $v.gitVersion=$version -X $v.gitMajor=1 -X $v.gitMinor=37 -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
done

gover="$(go env GOVERSION)"
sum="$(sha256sum "$here/go.sum" | cut -c1-16)"

log() { printf '[controlplane %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cd "$here"
for c in "${components[@]}"; do
  [ -n "${pkg[$c]:-}${tool[$c]:-}" ] || { log "unknown component $c (known: ${!pkg[*]} ${!tool[*]})"; exit 2; }
  # A binary is reused only if it was built the way this script builds it
  # now (package and flags), recorded beside it.
  # (go.sum pins what the k8s.io packages build from; go's version what
  # compiles them).
  recipe="${pkg[$c]:-${tool[$c]}} tags=${tags[$c]:-} ldflags=$([ -n "${pkg[$c]:-}" ] && echo "$kube_ldflags" || true) $gover sum=$sum"
  if [ -x "$bin/$c" ] && [ "$(cat "$bin/.$c.recipe" 2>/dev/null)" = "$recipe" ]; then
    log "$c cached at $bin/$c"
    continue
  fi
  log "building $c from ${pkg[$c]:-${tool[$c]}}; the first build takes several minutes on 2 cores"
  start=$(date +%s)
  # A heartbeat, because go build is silent while it compiles Kubernetes.
  ( while sleep 30; do log "still building $c ($(( $(date +%s) - start ))s)"; done ) &
  beat=$!
  trap 'kill $beat 2>/dev/null || true' EXIT
  if [ -n "${tool[$c]:-}" ]; then
    gobin="$(mktemp -d)"
    (cd "$gobin" && CGO_ENABLED=0 GOBIN="$gobin" go install -trimpath -tags "${tags[$c]:-}" -ldflags='-s -w' "${tool[$c]}")
    mv "$gobin/$c" "$bin/$c.tmp" && rm -rf "$gobin"
  else
    CGO_ENABLED=0 go build -trimpath -ldflags="$kube_ldflags" -o "$bin/$c.tmp" "${pkg[$c]}"
  fi
  kill $beat 2>/dev/null || true
  trap - EXIT
  mv "$bin/$c.tmp" "$bin/$c"
  printf '%s' "$recipe" > "$bin/.$c.recipe"
  log "built $c in $(( $(date +%s) - start ))s"
done
echo "$bin"
