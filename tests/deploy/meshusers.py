"""What the chart gives the built-in Valkey and NATS, read out of a render the way the pods
use it: each user's password (from its Secret), Valkey's ACL file as the init container
writes it (the chart's own script, run here), and NATS's `authorization` block with each
$MESH_PASSWORD_<USER> resolved as nats-server resolves it from its environment."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from .conftest import CHART, FULLNAME, Render

MAKE_ACL = CHART / "files" / "valkey" / "make-acl.sh"
KEEP_STREAM = CHART / "files" / "nats" / "keep-stream.py"
USER_LABEL = "voicemesh.io/mesh-user"


def secret_password(secret: dict[str, Any], key: str = "password") -> str:
    return base64.b64decode(secret["data"][key]).decode()


def chart_passwords(render: Render) -> dict[str, str]:
    """{user: password} of the Secrets the chart made."""
    return {
        d["metadata"]["labels"][USER_LABEL]: secret_password(d)
        for d in render.of_kind("Secret")
        if USER_LABEL in d["metadata"].get("labels", {})
    }


def secret_ref_password(render: Render, ref: dict[str, str], others: dict[str, dict[str, Any]]) -> str:
    """The password a secretKeyRef reads: a Secret of the render, else one of `others` (the
    operator's, by name)."""
    found = [d for d in render.of_kind("Secret") if d["metadata"]["name"] == ref["name"]]
    secret = found[0] if found else others[ref["name"]]
    return secret_password(secret, ref["key"])


def valkey_pod(render: Render) -> dict[str, Any]:
    return render.get("StatefulSet", f"{FULLNAME}-valkey")["spec"]["template"]["spec"]


def nats_pod(render: Render) -> dict[str, Any]:
    return render.get("StatefulSet", f"{FULLNAME}-nats")["spec"]["template"]["spec"]


def valkey_acl_file(render: Render, work: Path, others: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """The ACL file Valkey's init container writes: its rules from the ConfigMap, each user's
    password from the Secret its projected volume names, run through the chart's script."""
    rules, passwords = work / "rules", work / "passwords"
    rules.mkdir(parents=True)
    passwords.mkdir()
    for key, text in render.get("ConfigMap", f"{FULLNAME}-valkey-acl")["data"].items():
        (rules / key).write_text(text)
    volume = {v["name"]: v for v in valkey_pod(render)["volumes"]}["passwords"]
    for source in volume["projected"]["sources"]:
        (item,) = source["secret"]["items"]
        ref = {"name": source["secret"]["name"], "key": item["key"]}
        (passwords / item["path"]).write_text(secret_ref_password(render, ref, others or {}))
    out = work / "users.acl"
    env = os.environ | {
        "ACL_RULES_DIR": str(rules),
        "ACL_PASSWORDS_DIR": str(passwords),
        "ACL_FILE": str(out),
    }
    subprocess.run(["sh", str(rules / "make-acl.sh")], env=env, check=True, capture_output=True, timeout=30)
    return out.read_text().splitlines()


def nats_password_env(render: Render, others: dict[str, dict[str, Any]] | None = None) -> dict[str, str]:
    """The MESH_PASSWORD_<USER> variables of the NATS container, resolved."""
    nats = nats_pod(render)["containers"][0]
    return {
        e["name"]: secret_ref_password(render, e["valueFrom"]["secretKeyRef"], others or {})
        for e in nats["env"]
        if e["name"].startswith("MESH_PASSWORD_")
    }


def nats_config(render: Render) -> str:
    return render.get("ConfigMap", f"{FULLNAME}-nats")["data"]["nats.conf"]


def nats_authorization(render: Render, others: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The `authorization` block of nats.conf with its variables resolved."""
    (line,) = [x for x in nats_config(render).splitlines() if x.startswith("authorization: ")]
    text = line.removeprefix("authorization: ")
    env = nats_password_env(render, others)
    resolved = re.sub(r"\$(MESH_PASSWORD_[A-Z_]+)", lambda m: json.dumps(env[m.group(1)]), text)
    return json.loads(resolved)
