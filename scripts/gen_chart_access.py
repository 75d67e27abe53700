"""Generate the Helm chart's copy of the mesh's users and rights from access.py.

The chart (deploy/helm/voicemesh) cannot import Python, so it reads
`files/access/access.json`: each user's Valkey ACL line and nats-server user entry exactly as
`access.valkey_acl` and `access.nats_authorization` write them, with the password left as a
placeholder the chart fills per release (SHA256 for Valkey's digest, PASSWORD for NATS).

`--check` exits 1 when the checked-in file differs from what access.py gives now, so a
change of rights that was not regenerated (`python scripts/gen_chart_access.py`) fails CI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "deploy" / "helm" / "voicemesh" / "files" / "access" / "access.json"
# What the chart replaces with a user's password (NATS) or its SHA-256 (Valkey).
PASSWORD = "@PASSWORD@"
SHA256 = "@SHA256@"


def table() -> dict[str, object]:
    from voicemesh.mesh import access

    valkey: dict[str, str] = {}
    nats: dict[str, object] = {}
    for user in access.ALL_USERS:
        digest = hashlib.sha256(PASSWORD.encode()).hexdigest()
        _default, *lines = access.valkey_acl({user: PASSWORD})
        if lines:
            (line,) = lines
            if line.count(f"#{digest}") != 1:
                raise SystemExit(f"error: {user}'s ACL line has no single #<sha256>: {line!r}")
            valkey[user] = line.replace(f"#{digest}", f"#{SHA256}")
        (entry,) = access.nats_authorization({user: PASSWORD})["users"]  # type: ignore[misc]
        nats[user] = entry
    return {
        "_generated": "by scripts/gen_chart_access.py from libs/mesh/src/voicemesh/mesh/access.py; do not edit",
        "serviceUsers": list(access.SERVICE_USERS),
        "cliUser": access.CLI_USER,
        "meshUser": access.MESH_USER,
        "placeholders": {"password": PASSWORD, "sha256": SHA256},
        "valkeyDefault": access.valkey_acl({})[0],
        "valkey": valkey,
        "nats": nats,
    }


def render() -> str:
    return json.dumps(table(), indent=2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the chart's copy drifts")
    ns = parser.parse_args()
    text = render()
    if ns.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"error: {OUT.relative_to(ROOT)} drifts from access.py (run scripts/gen_chart_access.py)")
            return 1
        print(f"{OUT.relative_to(ROOT)} matches access.py")
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
