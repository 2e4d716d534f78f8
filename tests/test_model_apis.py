"""Which upstream API serves a model: the registry seed's marks, a provider's ``apis``
patterns over them, and the factory that gives every provider its table."""

from __future__ import annotations

import json

from ratd.config import parse_config
from ratd.providers.apis import ModelApis
from ratd.providers.factory import build_providers
from ratd.registry.seed import load_seed, shipped_model_apis


def test_patterns_first_in_the_order_written_then_the_seed_then_snapshots() -> None:
    apis = ModelApis.build(
        {"gpt-5-nano": "chat_completions", "gpt-5*": "responses"},
        {"o3": "responses", "gpt-5-nano": "responses"},
    )
    assert apis.api_for("gpt-5-nano") == "chat_completions"  # first pattern wins
    assert apis.api_for("gpt-5.1") == "responses"
    assert apis.api_for("o3") == "responses"
    assert apis.api_for("o3-2025-04-16") == "responses"  # a dated snapshot of o3
    assert apis.api_for("o3-pro") is None  # another model: the default API
    assert apis.api_for("gpt-4o") is None


def test_the_seed_reads_the_api_marks_by_kind() -> None:
    text = json.dumps(
        {
            "version": 9,
            "models": [
                {"id": "m1", "provider": "openai", "api": "responses"},
                {"id": "m2", "provider": "openai"},
                {"id": "m1", "provider": "openrouter"},
            ],
        }
    )
    assert load_seed(text).apis == {"openai": {"m1": "responses"}}


def test_the_factory_gives_each_provider_its_kinds_marks_under_its_own_patterns() -> None:
    config = parse_config(
        """
[providers.openai]
[providers.work]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
apis = { "o3*" = "chat_completions" }
[providers.openrouter]
""",
        "test.toml",
        env={},
    )
    marks = {"openai": {"o3": "responses"}, "openrouter": {}}
    providers = build_providers(config, model_apis=marks)
    assert providers["openai"].model_apis.api_for("o3") == "responses"
    assert providers["work"].model_apis.api_for("o3") == "chat_completions"
    assert providers["openrouter"].model_apis.api_for("openai/o3") is None


def test_the_shipped_seed_parses_its_marks() -> None:
    marks = shipped_model_apis()
    assert all(isinstance(api, str) for models in marks.values() for api in models.values())
