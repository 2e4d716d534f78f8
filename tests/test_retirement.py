"""Model retirement: dates from the seed and from OpenAI's /models entries reach the
registry, ListModels, GetModelMetadata and `rat models` / `rat metadata`; a call to a model
past its shutdown date fails fast (NOT_FOUND / MODEL_RETIRED, naming the replacement)
without reaching the provider; a deprecated model warns once per model."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pytest

from rat import output
from ratatoskr import ModelNotFound, ModelRetired
from ratd import errors
from ratd.config import ConfigError
from ratd.core.retirement import Retirement, retired_presets
from ratd.registry import Presets, Registry
from ratd.registry.seed import load_seed
from tests.fakes.openai_upstream import OPENAI_MODELS, FakeOpenAIUpstream
from tests.support.compat import OPENAI_KEY
from tests.support.daemon import daemon_client, make_config, spawn_ratd
from tests.test_e2e import rat

RETIRED = "gpt-retired-2019"
DEPRECATED = "gpt-deprecated-2020"
REPLACEMENT = "ratatoskr:budget/text-generation"


def _models_with_retirements() -> bytes:
    """OpenAI's model list with two entries that announce retirement: one past its
    shutdown (ISO dates), one deprecated and shutting down far ahead (Unix timestamps)."""
    data = [
        *OPENAI_MODELS["data"],
        {
            "id": RETIRED,
            "object": "model",
            "created": 1546300800,
            "owned_by": "system",
            "deprecation_date": "2019-06-01",
            "shutdown_date": "2020-01-01",
            "replacement": REPLACEMENT,
        },
        {
            "id": DEPRECATED,
            "object": "model",
            "created": 1577836800,
            "owned_by": "system",
            "deprecation_date": 1577836800,  # 2020-01-01
            "shutdown_date": 32503680000,  # 3000-01-01
        },
    ]
    return json.dumps({"object": "list", "data": data}).encode()


# -- the check itself, on a real registry with a fixed today -----------------------------------


def registry_with(**fields: str) -> Registry:
    registry = Registry({"openai": "openai"})
    found = registry.get("openai", "gpt-6.1-sol")
    assert found is not None
    for name, value in fields.items():
        setattr(found.info, name, value)
    return registry


def test_past_the_shutdown_date_is_retired() -> None:
    registry = registry_with(shutdown_date="2026-10-23", replacement="gpt-4.1-mini")
    on_the_day = Retirement(registry, today=lambda: dt.date(2026, 10, 23))
    with pytest.raises(errors.ModelRetired) as caught:
        on_the_day.check("openai", "gpt-6.1-sol")
    err = caught.value
    assert err.reason == "MODEL_RETIRED" and err.fallback
    assert err.metadata == {"shutdown_date": "2026-10-23", "replacement": "gpt-4.1-mini"}
    assert "retired on 2026-10-23" in err.message and "gpt-4.1-mini" in err.message
    the_day_before = Retirement(registry, today=lambda: dt.date(2026, 10, 22))
    the_day_before.check("openai", "gpt-6.1-sol")  # deprecated, still served
    Retirement(registry).check("openai", "an-unknown-model")


def test_a_deprecated_model_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    registry = registry_with(deprecation_date="2026-01-01")
    check = Retirement(registry, today=lambda: dt.date(2026, 2, 1))
    with caplog.at_level(logging.WARNING, logger="ratd.core.retirement"):
        for _ in range(3):
            check.check("openai", "gpt-6.1-sol")
        check.check("openai", "gpt-6.1-terra")  # not deprecated
    assert [r.getMessage() for r in caplog.records] == ["openai: model gpt-6.1-sol is deprecated"]
    before = Retirement(registry, today=lambda: dt.date(2025, 12, 31))
    caplog.clear()
    before.check("openai", "gpt-6.1-sol")
    assert not caplog.records


def test_one_candidate_still_serving_is_enough() -> None:
    registry = Registry({"openai": "openai", "openrouter": "openrouter"})
    retired = registry.get("openai", "gpt-6.1-sol")
    assert retired is not None
    retired.info.shutdown_date = "2020-01-01"
    check = Retirement(registry)
    with pytest.raises(errors.ModelRetired) as caught:
        check.check("openai", "gpt-6.1-sol")
    assert caught.value.fallback  # the gateway tries the next candidate
    check.check("openrouter", "openai/gpt-6.1-sol")  # dated only at OpenAI


# -- the seed's presets and the CLI's marking, against a fixed today -----------------------------

SEED_CHECKED = dt.date(2026, 12, 4)  # the day the seed's dates were last checked


def seed_registry() -> Registry:
    return Registry({kind: kind for kind in load_seed().models})


def test_no_preset_names_a_model_past_its_shutdown_date() -> None:
    registry = seed_registry()
    presets = Presets(load_seed().presets)
    assert retired_presets(presets, registry, SEED_CHECKED) == []
    # The paid tiers name models the seed lists (so the check above saw their dates).
    for tier in ("budget", "mid", "premium"):
        for capability in ("agentic", "coding", "summariser", "text-generation", "embedding"):
            preset = presets.get(tier, capability)
            assert preset is not None and registry.find(preset.model), (tier, capability)


def test_a_preset_on_a_retired_model_is_found() -> None:
    """The check above can fail: a preset naming a model past its shutdown date (bare or
    provider-qualified) is reported, one still served somewhere is not."""
    registry = seed_registry()
    presets = Presets(
        {
            "old": {
                "chat": {"model": "gpt-4.1-nano"},  # shut down 2026-10-23
                "routed": {"model": "openrouter:google/gemini-2.5-pro"},  # 2026-12-01
                "later": {"model": "gpt-4o"},  # shuts down 2027-01-14
                "local": {"model": "all-MiniLM-L6-v2"},  # not a registry model
            }
        }
    )
    assert retired_presets(presets, registry, SEED_CHECKED) == [
        "ratatoskr:old/chat -> gpt-4.1-nano",
        "ratatoskr:old/routed -> openrouter:google/gemini-2.5-pro",
    ]
    assert "ratatoskr:old/later -> gpt-4o" in retired_presets(
        presets, registry, dt.date(2027, 1, 14)
    )


def test_rat_marks_retired_models_by_the_date() -> None:
    registry = seed_registry()
    gpt4o = registry.get("openai", "gpt-4o")
    assert gpt4o is not None
    assert (
        output.retirement(gpt4o.info, dt.date(2027, 1, 13)) == "shutdown 2027-01-14 -> gpt-6-luna"
    )
    assert output.retirement(gpt4o.info, dt.date(2027, 1, 14)) == "retired 2027-01-14 -> gpt-6-luna"
    current = registry.get("openai", "gpt-6.1-sol")
    assert current is not None and output.retirement(current.info, SEED_CHECKED) == "-"


# -- through ratd ---------------------------------------------------------------------------------


async def test_retirement_from_openais_model_list(
    upstream: FakeOpenAIUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.openai.models_reply = (200, _models_with_retirements())
    config = make_config(
        f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[registry]
live = true
refresh_secs = 0
cache_path = ""
""",
        env={"OPENAI_API_KEY": OPENAI_KEY},
    )
    async with daemon_client(config) as client:
        found = await client.fetch_model_metadata(RETIRED)  # awaits the live refresh
        assert found is not None
        assert (found.info.deprecation_date, found.info.shutdown_date) == (
            "2019-06-01",
            "2020-01-01",
        )
        assert found.info.replacement == REPLACEMENT
        listed = {m.id: m for m in await client.list_models("openai")}
        assert listed[DEPRECATED].deprecation_date == "2020-01-01"
        assert listed[DEPRECATED].shutdown_date == "3000-01-01"
        assert not listed["text-embedding-3-small"].HasField("shutdown_date")  # undated

        with pytest.raises(ModelRetired) as caught:
            await client.chat("hi", model=RETIRED)
        assert isinstance(caught.value, ModelNotFound)  # NOT_FOUND on the wire
        assert caught.value.reason == "MODEL_RETIRED"
        assert caught.value.replacement == REPLACEMENT
        assert caught.value.metadata["shutdown_date"] == "2020-01-01"
        with pytest.raises(ModelRetired):
            async for _ in client.chat_stream("hi", model=f"openai:{RETIRED}"):
                pass
        assert not upstream.requests_to("openai"), "a retired model never reaches the provider"

        with caplog.at_level(logging.WARNING, logger="ratd.core.retirement"):
            for _ in range(2):
                reply = await client.chat("hi", model=DEPRECATED)
                assert reply.content
        warnings = [r.getMessage() for r in caplog.records if DEPRECATED in r.getMessage()]
        assert warnings == [
            f"openai: model {DEPRECATED} is deprecated and shuts down on 3000-01-01"
        ]


async def test_rat_models_and_metadata_show_the_seeds_dates(
    upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    config = f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[registry]
live = false
cache_path = ""
"""
    with spawn_ratd(config, tmp_path, env={"OPENAI_API_KEY": OPENAI_KEY}) as ratd:
        code, out, err = await rat(ratd, "models", "--provider", "openai")
        assert code == 0, err
        assert "RETIREMENT" in out.splitlines()[0]
        nano = next(line for line in out.splitlines() if " gpt-4.1-nano " in line)
        assert nano.rstrip().endswith("retired 2026-10-23 -> gpt-4.1-mini")  # date is past
        mini = next(line for line in out.splitlines() if " gpt-4.1-mini " in line)
        assert "2027-01-14 -> gpt-6-luna" in mini  # deprecated, its shutdown announced
        current = next(line for line in out.splitlines() if " gpt-6.1-sol " in line)
        assert current.rstrip().endswith("-")
        code, out, err = await rat(ratd, "metadata", "gpt-4.1-nano")
        assert code == 0, err
        assert "shutdown  2026-10-23" in out and "replace   with gpt-4.1-mini" in out
        assert "deprecated 2026-04-22" in out


@pytest.mark.parametrize(
    ("today", "retired"), [("2027-01-13", False), ("2027-01-14", True)], ids=["eve", "day"]
)
async def test_registry_today_judges_the_seeds_dates(
    upstream: FakeOpenAIUpstream, today: str, retired: bool
) -> None:
    """``[registry] today`` fixes the day retirement is judged against: the seed's GPT-4o
    mini shutdown (2027-01-14) refuses the call on the day, not the day before."""
    config = make_config(
        f"""
[providers.openai]
base_url = "{upstream.base_url_openai}"
[registry]
live = false
cache_path = ""
today = "{today}"
""",
        env={"OPENAI_API_KEY": OPENAI_KEY},
    )
    async with daemon_client(config) as client:
        if not retired:
            assert (await client.chat("hi", model="gpt-4o-mini")).content
            return
        with pytest.raises(ModelRetired) as caught:
            await client.chat("hi", model="gpt-4o-mini")
        assert caught.value.replacement == "gpt-6-luna"
        assert caught.value.metadata["shutdown_date"] == "2027-01-14"
        assert not upstream.requests_to("openai")


def test_registry_today_must_be_a_date() -> None:
    with pytest.raises(ConfigError, match=r"registry\.today must be a date YYYY-MM-DD"):
        make_config('[registry]\ntoday = "14 January"\n')
