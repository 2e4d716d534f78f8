"""The contract: committed stubs match the committed .proto files, and the tree stays a
wire-compatible superset of the upstream ratatoskr.v1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUBS = REPO / "client" / "ratatoskr" / "v1"


def test_committed_stubs_match_the_protos(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(REPO / "proto")) for p in (REPO / "proto").rglob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *protos,
        ],
        cwd=REPO / "proto" / "..",
        check=True,
    )
    generated = {
        p.relative_to(tmp_path / "ratatoskr" / "v1"): p
        for p in (tmp_path / "ratatoskr" / "v1").glob("*.py*")
    }
    committed = {p.relative_to(STUBS): p for p in STUBS.glob("*_pb2*.py*")}
    assert sorted(map(str, generated)) == sorted(map(str, committed)), "run `make proto`"
    stale = [
        str(name)
        for name, path in generated.items()
        if path.read_bytes() != committed[name].read_bytes()
    ]
    assert not stale, f"stubs differ from the .proto files, run `make proto`: {stale}"


def test_wire_compatible_with_upstream(shared_dir: Path) -> None:
    tool = shared_dir / "tools" / "check_wire_compat.py"
    result = subprocess.run(
        [sys.executable, str(tool), str(REPO / "proto")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 incompatibilities" in result.stdout.splitlines()[-1]


@pytest.mark.parametrize(
    "module",
    [
        "chat_pb2",
        "inference_pb2",
        "models_pb2",
        "ratatoskr_pb2",
        "admin_pb2",
        "errors_pb2",
        "usage_pb2",
    ],
)
def test_stubs_import(module: str) -> None:
    __import__(f"ratatoskr.v1.{module}")
