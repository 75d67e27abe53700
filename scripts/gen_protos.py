"""Generate the Python stubs for proto/voicemesh/v1 into libs/proto/src (`make proto`).

`--check` regenerates into a temporary folder and exits 1 naming every file that differs
from the committed stubs, so a drift between the .proto files and the stubs fails CI.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
OUT_ROOT = ROOT / "libs" / "proto" / "src"
PACKAGE = Path("voicemesh") / "v1"


def generate(out_root: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc  # dev dependency; imported here so --help works without it

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE).glob("*.proto"))
    (out_root / PACKAGE).mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("error: protoc failed (see above)")
    (out_root / PACKAGE / "py.typed").write_text("")


def stub_files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in (root / PACKAGE).glob("*") if p.is_file()}


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        want, have = stub_files(fresh), stub_files(OUT_ROOT)
        drift = sorted(str(p) for p in want ^ have)
        drift += sorted(
            str(p) for p in want & have if not filecmp.cmp(fresh / p, OUT_ROOT / p, shallow=False)
        )
    if drift:
        print("error: generated stubs drift from proto/ (run `make proto`):", ", ".join(drift))
        return 1
    print(f"stubs match proto/ ({len(want)} files)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the stubs drift")
    ns = parser.parse_args()
    if ns.check:
        return check()
    generate(OUT_ROOT)
    print(f"generated stubs in {OUT_ROOT / PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
