#!/usr/bin/env bash
# The ONNX models the mesh runs that no Python dependency carries, in .tools/models
# (idempotent, pinned; silent when everything is already in place):
#   smart-turn-v3.2-cpu.onnx, Pipecat's Smart Turn v3.2 end-of-turn model (BSD-2-Clause,
#     ~8.7 MB), taken out of the pipecat-ai wheel from PyPI. Only the file: none of
#     Pipecat's code is installed. The wheel is kept outside the clone, in
#     ${VOICEMESH_CACHE:-~/.cache/voicemesh}/models; its licence is kept beside the model.
set -euo pipefail
cd "$(dirname "$0")/.."

PIPECAT=pipecat-ai==1.14.0
MEMBER=pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx
LICENSE_MEMBER=pipecat_ai-1.14.0.dist-info/licenses/LICENSE
SHA256=2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f
CACHE=${VOICEMESH_CACHE:-$HOME/.cache/voicemesh}/models
DEST=.tools/models
MODEL=$DEST/smart-turn-v3.2-cpu.onnx

in_place() { [[ -f $MODEL ]] && sha256sum "$MODEL" | grep -q "^$SHA256 "; }
if in_place; then
    exit 0
fi

log=$(mktemp)
tmp=
part=
trap 'rm -f "$log" ${part:+"$part"}; [[ -z $tmp ]] || rm -rf "$tmp"' EXIT
step() {  # run quietly; on failure show what it said
    if ! "$@" >"$log" 2>&1; then
        echo "models.sh: failed: $*" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
}

mkdir -p "$CACHE" "$DEST"
exec 9>"$CACHE/.lock"
flock 9  # one download at a time, also across clones sharing the cache
if in_place; then  # another run put it there while this one waited
    exit 0
fi

find_wheel() { compgen -G "$CACHE/pipecat_ai-${PIPECAT#*==}-py3-none-any.whl" | head -n 1 || true; }

wheel=$(find_wheel)
if [[ -z $wheel ]]; then
    tmp=$(mktemp -d "$CACHE/download.XXXXXX")
    # The wheel is pure Python (py3-none-any); pin the interpreter it is for, so the host's
    # own python3 does not matter. --no-deps: the file only, nothing resolved.
    step python3 -m pip download --disable-pip-version-check --no-input --no-deps \
        --only-binary=:all: --python-version 3.11 -d "$tmp" "$PIPECAT"
    downloaded=$(compgen -G "$tmp/pipecat_ai-*.whl" | head -n 1)
    mv "$downloaded" "$CACHE/"  # whole, or not at all
    wheel=$(find_wheel)
fi

# Out of the zip with python3's zipfile (no unzip needed), into a temporary name beside
# the destination; renamed into place only once its checksum is right.
part=$(mktemp "$MODEL.XXXXXX")
step python3 - "$wheel" "$MEMBER" "$part" "$LICENSE_MEMBER" "$DEST/smart-turn-v3.2-cpu.LICENSE" <<'EOF'
import shutil, sys, zipfile
wheel, member, out, license_member, license_out = sys.argv[1:]
with zipfile.ZipFile(wheel) as zf:
    with zf.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    with zf.open(license_member) as src, open(license_out, "wb") as dst:
        shutil.copyfileobj(src, dst)
EOF
actual=$(sha256sum "$part" | cut -d' ' -f1)
if [[ $actual != "$SHA256" ]]; then
    echo "models.sh: $MEMBER in $wheel has sha256 $actual, expected $SHA256" >&2
    echo "models.sh: delete $wheel and run again" >&2
    exit 1
fi
chmod 644 "$part"
mv "$part" "$MODEL"
