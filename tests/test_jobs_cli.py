"""``rat batch`` and ``rat jobs`` against real ``ratd`` processes sharing one job
directory: a batch submitted, waited for and read; a job running when its ratd is
killed (SIGKILL) found, by the next ratd, ended as ABORTED; a finished one kept whole."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.fakes.openai_upstream import TEXT, FakeOpenAIUpstream
from tests.support.compat import OPENAI_KEY
from tests.support.daemon import SpawnedRatd, spawn_ratd

pytestmark = pytest.mark.timeout(120)

HANG = "openai:scenario/hang"


async def rat(ratd: SpawnedRatd, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rat",
        "--address",
        ratd.address,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", ""), "NO_COLOR": "1"},
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def item(custom_id: str, text: str, model: str = "gpt-4o-mini") -> str:
    chat = {"messages": [{"role": "ROLE_USER", "content": text}], "options": {"model": model}}
    return json.dumps({"custom_id": custom_id, "chat": chat})


async def test_rat_batch_and_jobs_across_a_killed_ratd(
    upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    jobs_dir = tmp_path / "jobs"
    config = f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[jobs]
dir = "{jobs_dir}"
"""
    env = {"OPENAI_API_KEY": OPENAI_KEY}
    items = tmp_path / "items.jsonl"
    items.write_text(item("a", "one") + "\n\n" + item("b", "two") + "\n")
    hung_items = tmp_path / "hung.jsonl"
    hung_items.write_text(item("h", "wait", model=HANG) + "\n")
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()

    with spawn_ratd(config, tmp_path / "one", env=env) as first:
        code, out, err = await rat(first, "batch", str(items), "--wait")
        assert code == 0, err
        results = [json.loads(line) for line in out.splitlines()]
        assert [r["custom_id"] for r in results] == ["a", "b"]
        assert all(r["chat"]["content"] == TEXT for r in results)

        code, out, err = await rat(first, "batch", str(hung_items), "--name", "stuck")
        assert code == 0, err
        hung = out.strip()
        assert hung.startswith("batch-")
        code, out, _ = await rat(first, "jobs", "wait", hung, "--wait", "0.05")
        assert code == 4 and "running" in out  # still running when the wait ran out
        code, out, _ = await rat(first, "jobs")
        assert code == 0 and hung in out and "succeeded" in out and "stuck" in out
        finished = next(line.split()[0] for line in out.splitlines() if "succeeded" in line)
        first.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.process.wait, 20)

    with spawn_ratd(config, tmp_path / "two", env=env) as second:
        code, out, _ = await rat(second, "--json", "jobs", "get", hung)
        lost = json.loads(out)
        assert lost["done"] and lost["error"]["code"] == 10  # ABORTED
        assert lost["metadata"]["state"] == "JOB_STATE_FAILED"
        code, out, _ = await rat(second, "jobs", "result", finished)
        assert code == 0 and [json.loads(line)["custom_id"] for line in out.splitlines()] == [
            "a",
            "b",
        ]
        code, out, _ = await rat(second, "batch", str(hung_items))
        again = out.strip()
        code, out, _ = await rat(second, "jobs", "cancel", again)
        assert code == 0 and "cancelled" in out
        code, out, _ = await rat(second, "jobs", "--running")
        assert code == 0 and again not in out
        code, out, err = await rat(second, "jobs", "delete", finished)
        assert code == 0, err
        code, _, err = await rat(second, "jobs", "get", finished)
        assert code != 0 and "no job named" in err
        code, _, err = await rat(second, "jobs", "get")
        assert code == 2 and "needs a job name" in err
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"custom_id": "x", "chat": {"nope": 1}}\n')
        code, _, err = await rat(second, "batch", str(bad))
        assert code == 2 and "bad.jsonl:1" in err
