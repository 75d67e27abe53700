#!/usr/bin/env bash
# Build the voicemesh images (`make images`): voicemesh/<key> for every service and voicemesh/cli,
# from the repository root, with docker (when its daemon answers), else podman, else buildah.
#
#   scripts/images.sh [KEY...]        KEY: media-edge stt reasoning tts session-router cli (default: all)
#
# Environment:
#   CONTAINER_ENGINE        docker | podman | buildah (default: the first that works)
#   VOICEMESH_IMAGE_TAG     tag (default: the workspace version, 0.1.0 = the chart's appVersion)
#   VOICEMESH_IMAGE_REGISTRY  prefix for the names, e.g. localhost:5001 (default: none)
#   VOICEMESH_BASE_IMAGE    the base (build arg PYTHON_IMAGE), e.g. pinned by digest:
#                           python:3.11.15-slim-bookworm@sha256:...
#   VOICEMESH_BUILD_CA      a CA bundle mounted over the build's system store, for a TLS-intercepting
#                           proxy in front of PyPI (podman and buildah only)
#   VOICEMESH_BUILD_FLAGS   more flags for the engine's build command (word-split)
#   BUILDAH_ISOLATION, BUILDAH_LAYERS  read by podman and buildah themselves
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

ALL_KEYS=(media-edge stt reasoning tts session-router cli)

die() { echo "images.sh: $*" >&2; exit 1; }

dockerfile_of() {
  if [[ $1 == cli ]]; then echo cli/Dockerfile; else echo "services/$1/Dockerfile"; fi
}

pick_engine() {
  if [[ -n ${CONTAINER_ENGINE:-} ]]; then
    command -v "$CONTAINER_ENGINE" >/dev/null || die "CONTAINER_ENGINE=$CONTAINER_ENGINE is not installed"
    echo "$CONTAINER_ENGINE"
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo docker
  elif command -v podman >/dev/null; then
    echo podman
  elif command -v buildah >/dev/null; then
    echo buildah
  else
    die "no container engine: install docker, podman or buildah (or use a machine that has one)"
  fi
}

workspace_version() {
  sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1
}

main() {
  local keys=("$@")
  [[ ${#keys[@]} -gt 0 ]] || keys=("${ALL_KEYS[@]}")
  local key
  for key in "${keys[@]}"; do
    [[ " ${ALL_KEYS[*]} " == *" $key "* ]] || die "unknown image '$key' (one of: ${ALL_KEYS[*]})"
  done

  local engine tag prefix revision
  engine=$(pick_engine)
  tag=${VOICEMESH_IMAGE_TAG:-$(workspace_version)}
  prefix=${VOICEMESH_IMAGE_REGISTRY:+${VOICEMESH_IMAGE_REGISTRY%/}/}
  revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

  local flags=(--build-arg "VERSION=$tag" --build-arg "REVISION=$revision")
  [[ -z ${VOICEMESH_BASE_IMAGE:-} ]] || flags+=(--build-arg "PYTHON_IMAGE=$VOICEMESH_BASE_IMAGE")
  local build=("$engine" build)
  case $engine in
    docker)
      [[ -z ${VOICEMESH_BUILD_CA:-} ]] || die "VOICEMESH_BUILD_CA works with podman and buildah only"
      ;;
    podman | buildah)
      [[ $engine == buildah ]] && build=(buildah bud)
      # The docker format keeps HEALTHCHECK (the OCI image config has no field for it).
      flags+=(--format docker --layers)
      if [[ -n ${VOICEMESH_BUILD_CA:-} ]]; then
        [[ -r $VOICEMESH_BUILD_CA ]] || die "VOICEMESH_BUILD_CA=$VOICEMESH_BUILD_CA is not readable"
        flags+=(--volume "$VOICEMESH_BUILD_CA:/etc/ssl/certs/ca-certificates.crt:ro")
      fi
      ;;
  esac
  # shellcheck disable=SC2206  # word-splitting is the point
  [[ -z ${VOICEMESH_BUILD_FLAGS:-} ]] || flags+=(${VOICEMESH_BUILD_FLAGS})

  local started elapsed
  for key in "${keys[@]}"; do
    started=$SECONDS
    echo "images.sh: building ${prefix}voicemesh/$key:$tag with $engine" >&2
    "${build[@]}" "${flags[@]}" -f "$(dockerfile_of "$key")" -t "${prefix}voicemesh/$key:$tag" . \
      || die "building voicemesh/$key failed (see above)"
    elapsed=$((SECONDS - started))
    echo "images.sh: built ${prefix}voicemesh/$key:$tag in ${elapsed}s" >&2
  done
}

main "$@"
