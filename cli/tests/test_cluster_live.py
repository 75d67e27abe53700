"""`voicemesh cluster status` against a real cluster: runs only when KUBECONFIG is set.

Set VOICEMESH_TEST_NAMESPACE and VOICEMESH_TEST_RELEASE to point it at an installed release
(defaults: the kubeconfig context's namespace, release "voicemesh"); VOICEMESH_REDIS_URL, when
set, is used as the registry.
"""

from __future__ import annotations

import json
import os

import pytest

from voicemesh.cli import main as cli_main

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not os.environ.get("KUBECONFIG"), reason="needs a real cluster: KUBECONFIG is not set"
    ),
]


def test_status_against_the_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["cluster", "status", "--json", "--release", os.environ.get("VOICEMESH_TEST_RELEASE", "voicemesh")]
    if os.environ.get("VOICEMESH_TEST_NAMESPACE"):
        argv += ["--namespace", os.environ["VOICEMESH_TEST_NAMESPACE"]]
    args = cli_main.build_parser().parse_args(argv)
    code = args.func(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert data["release"] == argv[4]
    for service in data["services"]:
        for row in service["pods"]:
            assert row["pod"] is not None or row["registry"] is not None
