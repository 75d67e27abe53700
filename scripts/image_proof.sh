#!/usr/bin/env bash
# The images proof (issue 9), on a machine with no Docker engine and no registry but with
# Debian's buildah, podman, runc and debootstrap, run as root:
#
#   1. a local base image: a debootstrapped Debian bookworm (python3 is 3.11) imported with
#      podman under the name the Dockerfiles' FROM uses, so the real Dockerfiles build unchanged
#      (an image of that name that this script did not make is used as it is);
#   2. each image built with `buildah bud --isolation chroot --pull-never` (uv fetches the
#      locked wheels from PyPI; the host's CA bundle is mounted over the build's system store);
#   3. its models loaded in a container with no network at all;
#   4. each service started with podman as user 10001 on a read-only root (only /tmp is a
#      tmpfs, no capabilities) against a Valkey and a NATS started here, until
#      `python -m voicemesh.mesh.probe health` answers SERVING; then drained with
#      `python -m voicemesh.mesh.probe drain` (the preStop hook), then SIGTERM, and its exit status checked;
#   5. with every image built: the whole mesh from the images, and a scripted four-turn call
#      placed by the cli image with its /app/fixtures recordings.
#
#   scripts/image_proof.sh [KEY...]   KEY: media-edge stt reasoning tts session-router cli
#                                     (default: stt; `all`: every image and the call)
# Environment: VOICEMESH_PROOF_DIR (work folder, default /tmp/voicemesh-image-proof),
#   VOICEMESH_PROOF_FRESH_BASE=1 (remake the local base), VOICEMESH_BUILD_CA (CA bundle for
#   the build, default $SSL_CERT_FILE or /etc/ssl/certs/ca-certificates.crt),
#   DEBIAN_MIRROR (default http://deb.debian.org/debian).
# Every step prints its time; the last lines are a table of steps and the image sizes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

ALL_KEYS=(session-router stt reasoning tts media-edge cli)
WORK=${VOICEMESH_PROOF_DIR:-/tmp/voicemesh-image-proof}
CA=${VOICEMESH_BUILD_CA:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TAG=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1)
BASE=$(sed -n 's/^ARG PYTHON_IMAGE=//p' services/stt/Dockerfile)
BASE_LABEL=io.voicemesh.proof-base
PODMAN=(podman --runtime runc --cgroup-manager cgroupfs)
# The ulimits are needed here: runc may not raise this sandbox's limits (EPERM on rlimit 7).
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
RUN_FLAGS=(--network host --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges "${LIMITS[@]}")
PY=$ROOT/.venv/bin/python
TOKEN=proof-edge-token-0123456789

STEPS=()
PIDS=()
CONTAINERS=()

say() { echo "image_proof: $*" >&2; }
die() { say "FAILED: $*"; exit 1; }

# step NAME CMD...: run CMD with its output in $WORK/logs/NAME.log, print and record its time.
# CMD runs in this shell (so it can start servers and set variables); `set -e` does not reach
# inside it, so every step function checks each command itself (`|| return 1`).
step() {
  local name=$1 log="$WORK/logs/${1//[^A-Za-z0-9.-]/_}.log" started ended
  shift
  started=$(date +%s.%N)
  if ! "$@" >"$log" 2>&1; then
    ended=$(date +%s.%N)
    STEPS+=("$(printf '%-34s %7.1f s  FAILED' "$name" "$(echo "$ended - $started" | bc)")")
    say "step '$name' failed; the end of $log:"
    tail -n 25 "$log" >&2
    exit 1
  fi
  ended=$(date +%s.%N)
  STEPS+=("$(printf '%-34s %7.1f s' "$name" "$(echo "$ended - $started" | bc)")")
  say "$(printf '%-34s %7.1f s' "$name" "$(echo "$ended - $started" | bc)")"
}

cleanup() {
  local c p
  for c in "${CONTAINERS[@]}"; do "${PODMAN[@]}" rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() { "$PY" -c 'from voicemesh.mesh.localservers import free_port; print(free_port())'; }

# poll DEADLINE_S CMD...: run CMD until it succeeds or the deadline passes.
poll() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

preflight() {
  [[ $(id -u) == 0 ]] || die "run as root (Debian's buildah and podman run rootful here)"
  local tool
  for tool in debootstrap buildah podman runc bc; do
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install $tool)"
  done
  [[ -x $PY ]] || die "no $PY: run 'make env' first (the proof starts Valkey and NATS from it)"
  [[ -r $CA ]] || die "no CA bundle at $CA (set VOICEMESH_BUILD_CA)"
  [[ -n $BASE ]] || die "no 'ARG PYTHON_IMAGE=' in services/stt/Dockerfile"
}

make_base() {
  local rootfs="$WORK/rootfs"
  rm -rf "$rootfs" || return 1
  debootstrap --variant=minbase --include=python3,python3-pip,python-is-python3,ca-certificates \
    bookworm "$rootfs" "$MIRROR" || return 1
  chroot "$rootfs" apt-get clean || return 1
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  chroot "$rootfs" python3 --version
}

import_base() {
  local old=
  old=$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$BASE" 2>/dev/null || true)
  tar -C "$WORK/rootfs" --numeric-owner -c . | "${PODMAN[@]}" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    --change "LABEL $BASE_LABEL=debootstrap-bookworm" - "docker.io/library/$BASE" || return 1
  rm -rf "$WORK/rootfs"
  [[ -z $old ]] || "${PODMAN[@]}" rmi "$old" >/dev/null 2>&1 || true
}

ensure_base() {
  local label
  if label=$("${PODMAN[@]}" image inspect --format "{{ index .Labels \"$BASE_LABEL\" }}" "$BASE" 2>/dev/null); then
    if [[ -z $label || $label == "<no value>" ]]; then
      say "using the real $BASE found in local storage"
      return
    fi
    if [[ ${VOICEMESH_PROOF_FRESH_BASE:-0} != 1 ]]; then
      say "reusing the local base $BASE made earlier (VOICEMESH_PROOF_FRESH_BASE=1 remakes it)"
      return
    fi
  fi
  step "base: debootstrap bookworm" make_base
  step "base: podman import as $BASE" import_base
}

build() {
  local key=$1 file=services/$1/Dockerfile
  if [[ $key == cli ]]; then file=cli/Dockerfile; fi
  buildah bud --isolation chroot --pull-never --layers --format docker \
    --volume "$CA:/etc/ssl/certs/ca-certificates.crt:ro" \
    --build-arg "VERSION=$TAG" --build-arg "REVISION=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" \
    -f "$file" -t "voicemesh/$key:$TAG" .
}

inspect_image() {
  local image=voicemesh/$1:$TAG
  "${PODMAN[@]}" image inspect --format \
    'user={{.Config.User}} entrypoint={{.Config.Entrypoint}} healthcheck={{.Config.Healthcheck}}' "$image" \
    || return 1
  [[ $("${PODMAN[@]}" image inspect --format '{{.Config.User}}' "$image") == 10001:10001 ]]
}

# The models load from the image alone: no network namespace at all, read-only root.
OFFLINE_CHECK='
import sys
from voicemesh.audio.vad import SileroModel
key = sys.argv[1]
if key in ("stt", "media-edge"):
    SileroModel.load()
    print("silero vad loaded")
if key == "stt":
    from voicemesh.stt.engine import WhisperEngine, default_model_path
    WhisperEngine().load()
    print("whisper loaded and warmed up from", default_model_path())
if key == "tts":
    from voicemesh.tts.engine import PiperEngine
    PiperEngine().load()
    print("piper voice loaded and warmed up")
'

models_offline() {
  "${PODMAN[@]}" run --rm --network none --read-only --tmpfs /tmp --cap-drop ALL "${LIMITS[@]}" --no-healthcheck \
    --entrypoint python "voicemesh/$1:$TAG" -c "$OFFLINE_CHECK" "$1"
}

cli_runs() {
  "${PODMAN[@]}" run --rm "${RUN_FLAGS[@]}" "voicemesh/cli:$TAG" --help || return 1
  "${PODMAN[@]}" run --rm "${RUN_FLAGS[@]}" --entrypoint ls "voicemesh/cli:$TAG" -l /app/fixtures
}

start_servers() {
  local valkey nats
  read -r valkey nats < <("$PY" -c 'from voicemesh.mesh.localservers import valkey_binary as v, nats_binary as n; print(v(), n())')
  [[ -x $valkey && -x $nats ]] || return 1
  VALKEY_PORT=$(free_port) && NATS_PORT=$(free_port) || return 1
  rm -rf "$WORK/jetstream" && mkdir -p "$WORK/jetstream" || return 1
  "$valkey" --bind 127.0.0.1 --port "$VALKEY_PORT" --save '' --appendonly no >"$WORK/logs/valkey.log" 2>&1 &
  PIDS+=($!)
  "$nats" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$WORK/jetstream" >"$WORK/logs/nats.log" 2>&1 &
  PIDS+=($!)
  poll 20 port_open "$VALKEY_PORT" && poll 20 port_open "$NATS_PORT" \
    && echo "valkey on $VALKEY_PORT, nats (JetStream) on $NATS_PORT"
}

# The mesh's mTLS: a fresh CA and a set per identity (voicemesh.mesh.certs), each service's
# readable by the containers' user 10001 as a mounted Secret would be; `cli` is the host's.
issue_certs() {
  rm -rf "$WORK/tls" || return 1
  "$PY" -c 'import datetime as dt, sys; from pathlib import Path
from voicemesh.mesh.access import GRPC_IDENTITIES; from voicemesh.mesh.certs import write_mesh_tls
write_mesh_tls(Path(sys.argv[1]), GRPC_IDENTITIES, dt.datetime.now(dt.UTC))' "$WORK/tls" || return 1
  chmod 0755 "$WORK/tls" && for d in "$WORK"/tls/*; do [[ $d == */cli ]] || chown -R 10001 "$d"; done
  echo "a fresh mesh CA and certificates in $WORK/tls"
}

# run_service KEY: start the container (host network, ports picked here) and record its port.
declare -A PORT_OF
run_service() {
  local key=$1 name=voicemesh-proof-$1-$$ env=()
  PORT_OF[$key]=$(free_port) || return 1
  env=(-e "VOICEMESH_REDIS_URL=redis://127.0.0.1:$VALKEY_PORT/0" -e "VOICEMESH_NATS_URL=nats://127.0.0.1:$NATS_PORT"
    -e VOICEMESH_BIND_HOST=127.0.0.1 -e "VOICEMESH_GRPC_PORT=${PORT_OF[$key]}"
    -e "VOICEMESH_METRICS_PORT=$(free_port)" -e "VOICEMESH_INSTANCE_ID=$key-proof" -e VOICEMESH_LOG_FORMAT=json
    -v "$WORK/tls/$key:/etc/voicemesh/mesh-tls:ro" -e VOICEMESH_MESH_TLS_DIR=/etc/voicemesh/mesh-tls)
  if [[ $key == media-edge ]]; then
    WS_PORT=$(free_port) || return 1
    env+=(-e "VOICEMESH_WS_HOST=127.0.0.1" -e "VOICEMESH_WS_PORT=$WS_PORT" -e "VOICEMESH_EDGE_TOKEN=$TOKEN"
      -e "VOICEMESH_ROUTER_ADDRESS=127.0.0.1:${PORT_OF[session-router]:-1}")
  fi
  CONTAINERS+=("$name")
  "${PODMAN[@]}" run -d --name "$name" "${RUN_FLAGS[@]}" "${env[@]}" "voicemesh/$key:$TAG"
}

probe_in() {
  "${PODMAN[@]}" exec "voicemesh-proof-$1-$$" python -m voicemesh.mesh.probe health "127.0.0.1:${PORT_OF[$1]}"
}

until_serving() {
  local key=$1 name=voicemesh-proof-$1-$$
  if ! poll 180 probe_in "$key"; then
    "${PODMAN[@]}" logs "$name" 2>&1 | tail -n 20
    return 1
  fi
  echo "python -m voicemesh.mesh.probe health 127.0.0.1:${PORT_OF[$key]} in the container: SERVING"
  "${PODMAN[@]}" healthcheck run "$name" && echo "the image's HEALTHCHECK: healthy" || return 1
  VOICEMESH_MESH_TLS_DIR="$WORK/tls/cli" "$PY" -m voicemesh.mesh.probe health --peer "$key" \
    "127.0.0.1:${PORT_OF[$key]}" && echo "probe from the host, as the operator over mTLS: SERVING"
}

# What the container may do: it runs as 10001 and cannot write outside /tmp.
confined() {
  local name=voicemesh-proof-$1-$$
  [[ $("${PODMAN[@]}" exec "$name" id -u) == 10001 ]] || return 1
  if "${PODMAN[@]}" exec "$name" touch /app/written; then return 1; fi
  if "${PODMAN[@]}" exec "$name" touch /opt/voicemesh/venv/written; then return 1; fi
  local written
  written=$("${PODMAN[@]}" exec "$name" find /tmp -type f) || return 1
  echo "uid 10001; root filesystem read-only; files written under /tmp: ${written:-none}"
}

drain_service() {
  local name=voicemesh-proof-$1-$$ code
  # What Kubernetes does: the preStop hook (drain, then it returns with the service still
  # up and no session left), then SIGTERM; the service must then stop by itself, with 0.
  "${PODMAN[@]}" exec "$name" python -m voicemesh.mesh.probe drain --timeout 30 || return 1
  "${PODMAN[@]}" exec "$name" python -m voicemesh.mesh.probe health --service voicemesh.drained \
    "127.0.0.1:$("${PODMAN[@]}" exec "$name" printenv VOICEMESH_GRPC_PORT)" || return 1
  "${PODMAN[@]}" kill --signal TERM "$name" >/dev/null || return 1
  code=$("${PODMAN[@]}" wait "$name") || return 1
  "${PODMAN[@]}" logs "$name" 2>&1 | tail -n 3
  echo "exit status after drain: $code"
  [[ $code == 0 ]]
}

place_call() {
  "${PODMAN[@]}" run --rm "${RUN_FLAGS[@]}" "voicemesh/cli:$TAG" call \
    --url "ws://127.0.0.1:$WS_PORT/v1/call" --token "$TOKEN" --turn-timeout 60 \
    /app/fixtures/caller_party.wav /app/fixtures/caller_when.wav /app/fixtures/caller_name.wav \
    /app/fixtures/caller_yes.wav
}

size_mb() {
  local bytes
  bytes=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$1")
  echo $((bytes / 1000000))
}

main() {
  local keys=("$@") key
  [[ ${#keys[@]} -gt 0 ]] || keys=(stt)
  [[ ${keys[*]} != all ]] || keys=("${ALL_KEYS[@]}")
  for key in "${keys[@]}"; do
    [[ " ${ALL_KEYS[*]} " == *" $key "* ]] || die "unknown image '$key' (one of: ${ALL_KEYS[*]}, or all)"
  done
  preflight
  mkdir -p "$WORK/logs"
  say "work folder $WORK (logs in $WORK/logs); base $BASE; images voicemesh/KEY:$TAG"

  ensure_base
  for key in "${keys[@]}"; do
    step "build $key" build "$key"
    step "inspect $key" inspect_image "$key"
    if [[ $key == cli ]]; then
      step "run cli (read-only)" cli_runs
    elif [[ $key =~ ^(stt|tts|media-edge)$ ]]; then
      step "models offline $key" models_offline "$key"
    fi
  done

  local services=()
  for key in "${keys[@]}"; do [[ $key == cli ]] || services+=("$key"); done
  if [[ ${#services[@]} -gt 0 ]]; then
    step "start valkey + nats" start_servers
    step "mesh certificates" issue_certs
    for key in "${services[@]}"; do
      step "start $key" run_service "$key"
      step "$key until SERVING" until_serving "$key"
      step "$key confined" confined "$key"
    done
    if [[ ${#keys[@]} == "${#ALL_KEYS[@]}" ]]; then
      step "call through the images" place_call
    fi
    for key in "${services[@]}"; do
      step "drain $key" drain_service "$key"
    done
  fi

  say "done. Steps:"
  printf '  %s\n' "${STEPS[@]}" >&2
  say "images (uncompressed, as podman reports them):"
  for key in "${keys[@]}"; do
    printf '  %-28s %s MB\n' "voicemesh/$key:$TAG" "$(size_mb "voicemesh/$key:$TAG")" >&2
  done
  printf '  %-28s %s MB (the local base)\n' "$BASE" "$(size_mb "$BASE")" >&2
}

main "$@"
