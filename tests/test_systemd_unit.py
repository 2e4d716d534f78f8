"""``contrib/systemd/``: the unit's command lines are ones ratd accepts, its hardening keeps
the exposure score that its header states (measured with the real
``systemd-analyze security --offline=true``), and the sysusers and tmpfiles snippets create
the user it runs as and a secrets file ratd accepts (with the real ``systemd-sysusers`` and
``systemd-tmpfiles`` in a scratch root). The systemd tools are skipped where missing."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ratd.secrets import load_secrets

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "contrib" / "systemd" / "ratd.service"
SYSUSERS = REPO / "contrib" / "systemd" / "ratd.sysusers"
TMPFILES = REPO / "contrib" / "systemd" / "ratd.tmpfiles"
EXAMPLE = REPO / "contrib" / "config.example.toml"
BINARY = "/opt/ratatoskr/bin/ratd"
MAX_EXPOSURE = 2.0


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith(("#", "[")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_essentials() -> None:
    unit = directives()
    assert unit["Type"] == ["notify"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Restart"] == ["on-failure"]
    assert "WatchdogSec" in unit
    assert "DynamicUser" not in unit
    assert unit["User"] == unit["Group"] == ["ratatoskr"]
    assert unit["CacheDirectory"] == ["ratatoskr"]
    assert "ReadWritePaths" not in unit  # the cache is the only writable place
    (pre,) = unit["ExecStartPre"]
    (start,) = unit["ExecStart"]
    assert shlex.split(pre)[:2] == [BINARY, "--check-config"]
    assert shlex.split(pre)[2:] == shlex.split(start)[1:]  # checks what it then runs


def _bytes(size: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)


def test_memory_ceiling_sits_above_the_model_budget() -> None:
    """MemoryHigh throttles before MemoryMax kills, and both leave room for the example
    config's local-model budget plus ratd's own footprint."""
    unit = directives()
    (high,), (ceiling,) = unit["MemoryHigh"], unit["MemoryMax"]
    budget_mb = next(
        int(line.split("=")[1].split("#")[0])
        for line in EXAMPLE.read_text().splitlines()
        if line.startswith("ram_budget_mb")
    )
    assert _bytes(high) >= (budget_mb << 20) + (1 << 30)
    assert _bytes(ceiling) > _bytes(high)


@pytest.mark.parametrize("directive", ["ExecStartPre", "ExecStart"])
def test_command_lines_are_accepted_by_ratd(directive: str, tmp_path: Path) -> None:
    """The unit's arguments, with the config file replaced by the example and the secrets
    file by a temporary one (mode 0600, as ratd.tmpfiles makes it), pass
    ``ratd --check-config``."""
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[openai]\napi_key = "sk-unit-test-0000000000"\n')
    secrets.chmod(0o600)
    (line,) = directives()[directive]
    args = [
        arg.replace("/etc/ratatoskr/config.toml", str(EXAMPLE)).replace(
            "/etc/ratatoskr/secrets.toml", str(secrets)
        )
        for arg in shlex.split(line)[1:]
    ]
    if "--check-config" not in args:
        args.append("--check-config")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "ratd", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "provider openai (openai): https://api.openai.com/v1 [key set]" in result.stdout


def exposure(output: str) -> float:
    match = re.search(r"Overall exposure level for ratd\.service: (\d+\.\d+)", output)
    assert match, output
    return float(match.group(1))


def test_hardening_score() -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    result = subprocess.run(
        [tool, "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "Unknown command verb" in result.stderr or "unrecognized option" in result.stderr:
        pytest.skip(f"this systemd-analyze has no offline security check: {result.stderr}")
    score = exposure(result.stdout + result.stderr)
    assert score <= MAX_EXPOSURE, result.stdout
    stated = re.search(r"Overall exposure level for ratd\.service: (\d+\.\d+)", UNIT.read_text())
    assert stated, "the unit's header states its measured score"
    assert score == float(stated.group(1)), "the score in the unit's header is out of date"


def run_tool(name: str, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which(name)
    if tool is None:
        pytest.skip(f"{name} is not installed (Debian: apt-get install systemd)")
    return subprocess.run(
        [tool, *args, "-"], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="creating files owned by another user needs root")
def test_sysusers_and_tmpfiles_make_a_secrets_file_ratd_accepts(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").touch()
    (root / "etc" / "group").touch()
    result = run_tool("systemd-sysusers", f"--root={root}", stdin=SYSUSERS.read_text())
    assert result.returncode == 0, result.stderr
    (user,) = directives()["User"]
    entry = next(
        line.split(":")
        for line in (root / "etc" / "passwd").read_text().splitlines()
        if line.startswith(f"{user}:")
    )
    uid, gid, shell = int(entry[2]), int(entry[3]), entry[6]
    assert 0 < uid < 1000 and shell.endswith("nologin")  # a system user without a login

    result = run_tool("systemd-tmpfiles", f"--root={root}", "--create", stdin=TMPFILES.read_text())
    assert result.returncode == 0, result.stderr
    secrets = root / "etc" / "ratatoskr" / "secrets.toml"
    info = secrets.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (uid, gid, 0o600)
    assert (root / "etc" / "ratatoskr").stat().st_mode & 0o777 == 0o755

    # ratd accepts exactly this file (empty: keys may come later).
    assert load_secrets(secrets, env={}) == {}
