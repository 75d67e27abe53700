#!/usr/bin/env bash
# Create (`up`) or delete (`down`) the voicemesh kind cluster and its local image registry.
#
#   deploy/kind/registry.sh up     # registry on localhost:5001, cluster from cluster.yaml
#   deploy/kind/registry.sh down   # delete both
#
# Needs docker and kind (docs/kind.md). Safe to run again: each step is skipped when it is
# already done. Images pushed to localhost:5001/<name> (Tilt does this) are pulled by the
# nodes from the registry container over the "kind" Docker network.
set -euo pipefail

cluster="${KIND_CLUSTER_NAME:-voicemesh}"
reg_name="${KIND_REGISTRY_NAME:-kind-registry}"
reg_port="${KIND_REGISTRY_PORT:-5001}"
config="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/cluster.yaml"
# The directory cluster.yaml's containerdConfigPatches point containerd at.
certs_dir="/etc/containerd/certs.d"

up() {
  # 1. The registry: localhost:5001 on the host, <reg_name>:5000 inside Docker.
  if [ "$(docker inspect -f '{{.State.Running}}' "${reg_name}" 2>/dev/null || true)" != "true" ]; then
    docker run -d --restart=always -p "127.0.0.1:${reg_port}:5000" --network bridge \
      --name "${reg_name}" registry:2
  fi

  # 2. The cluster.
  if ! kind get clusters | grep -qx "${cluster}"; then
    kind create cluster --name "${cluster}" --config "${config}"
  fi

  # 3. On every node, send pulls of localhost:<reg_port>/... to the registry container
  #    (a node's own localhost is not the host's).
  for node in $(kind get nodes --name "${cluster}"); do
    docker exec "${node}" mkdir -p "${certs_dir}/localhost:${reg_port}"
    printf '[host."http://%s:5000"]\n' "${reg_name}" |
      docker exec -i "${node}" cp /dev/stdin "${certs_dir}/localhost:${reg_port}/hosts.toml"
  done

  # 4. Put the registry on the cluster's network.
  if [ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "${reg_name}")" = "null" ]; then
    docker network connect kind "${reg_name}"
  fi

  # 5. Advertise the registry (KEP-1755), so Tilt pushes to it without being told.
  kubectl --context "kind-${cluster}" apply -f - <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "localhost:${reg_port}"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
EOF
}

down() {
  kind delete cluster --name "${cluster}"
  docker rm -f "${reg_name}" >/dev/null 2>&1 || true
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 [up|down]" >&2; exit 2 ;;
esac
