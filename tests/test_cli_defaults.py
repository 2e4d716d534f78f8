"""The CLI as upstream documents it, on a spawned ratd running the embedded default
config: ``rat nli`` and ``rat tokens`` without ``-m`` (presets as defaults, as ``rat
embed`` has), and ``rat reload``."""

from __future__ import annotations

import json
from pathlib import Path

from ratd.config import embedded_default_text
from tests.fakes.hub_models import write_model
from tests.support.daemon import spawn_ratd
from tests.test_e2e import rat


def _default_config() -> str:
    return (
        embedded_default_text()
        .replace('address = "127.0.0.1:9741"', 'address = "127.0.0.1:0"')
        .replace('metrics_address = "127.0.0.1:9742"', 'metrics_address = "127.0.0.1:0"')
    )


async def test_rat_nli_without_a_model_uses_the_free_nli_preset(tmp_path: Path) -> None:
    """The preset ``ratatoskr:free/nli`` names the local nli-deberta-v3-small; its files
    are placed in models_dir by hand (the air-gapped path: HOME is tmp_path), here a tiny
    graph with the cross-encoder's labels."""
    write_model(tmp_path / ".cache/ratatoskr/models/nli-deberta-v3-small", "nli", seed=3)
    with spawn_ratd(_default_config(), tmp_path) as ratd:
        code, out, err = await rat(ratd, "nli", "A man is eating.", "Someone eats.")
        assert code == 0, err
        labels = [line.split()[0] for line in out.splitlines()]
        assert sorted(labels) == ["contradiction", "entailment", "neutral"]
        assert sum(1 for line in out.splitlines() if line.endswith("<-")) == 1
        code, out, err = await rat(ratd, "--json", "nli", "A man is eating.", "Someone eats.")
        assert code == 0, err
        reply = json.loads(out)
        total = reply["entailment"] + reply["neutral"] + reply["contradiction"]
        assert abs(total - 1) < 1e-4


async def test_rat_tokens_without_a_model_and_rat_reload(tmp_path: Path) -> None:
    with spawn_ratd(_default_config(), tmp_path) as ratd:
        code, out, err = await rat(ratd, "tokens", "count me")
        assert code == 0, err
        assert int(out) == 2  # o200k_base: "count", " me"
        code, out, err = await rat(ratd, "presets")
        assert code == 0, err
        free = next(line for line in out.splitlines() if line.startswith("free:"))
        assert {"nli", "tokens", "embedding"} <= set(free.removeprefix("free: ").split(", "))
        code, out, err = await rat(ratd, "reload")
        assert code == 0, err
        assert "reloaded" in out
        code, out, err = await rat(ratd, "--json", "reload")
        assert code == 0, err
        assert json.loads(out)["reloaded"] is True
