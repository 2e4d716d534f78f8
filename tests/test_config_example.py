"""``contrib/config.example.toml`` documents every config key and passes ``--check-config``.

The keys come from the schema itself: the test walks the ``Config`` dataclass's field types
recursively (tables, tables of tables, arrays of tables), so a key added to any config
dataclass fails here until the example mentions it. A commented-out mention counts
(``# key = ...`` under a ``[table]`` or ``# [table]`` header), but it must sit in the
right table: ``kind`` under ``[providers.NAME]`` does not document ``kind`` of a local model.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import pytest

from ratd import config as config_module
from ratd.config import Config

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "contrib" / "config.example.toml"

Path_ = tuple[str, ...]
ANY = "*"  # a name of the user's choosing: a provider, a local model, a preset tier

# Config fields that never appear in a config file: filled from the secrets and the loader.
NOT_IN_FILE = {"keys", "source"}
# Config fields that live somewhere else in the file than their field name says.
LOCATION: dict[str, Path_] = {"local": ("providers", "local")}


def _unwrap(tp: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return tp


def _expand(tp: Any, path: Path_) -> list[Path_]:
    """Every key path below a value of type ``tp`` found at ``path``."""
    tp = _unwrap(tp)
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _fields(tp, path)
    if origin is dict:
        _, value = typing.get_args(tp)
        below = _expand(value, (*path, ANY))
        # A table of tables ([providers.NAME], [presets.TIER.CAP]) names its entries as
        # keys of their own; a table of values (headers, sha256) documents its entries by
        # example only.
        return [(*path, ANY), *below] if below else []
    if origin is list:
        (item,) = typing.get_args(tp)
        return _expand(item, path)  # an array of tables shares the table's path
    return []


def _fields(cls: type, path: Path_) -> list[Path_]:
    hints = typing.get_type_hints(cls)
    paths: list[Path_] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if cls is Config and f.name in NOT_IN_FILE:
            continue
        where = LOCATION.get(f.name, (f.name,)) if cls is Config else (*path, f.name)
        paths.append(where)
        paths.extend(_expand(hints[f.name], where))
    return paths


def schema_paths() -> list[Path_]:
    return _fields(Config, ())


def schema_dataclasses() -> set[type]:
    """Every dataclass the walk reaches (to show that the walk finds them all)."""
    found: set[type] = set()

    def visit(tp: Any) -> None:
        tp = _unwrap(tp)
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            if tp in found:
                return
            found.add(tp)
            for hint in typing.get_type_hints(tp).values():
                visit(hint)
        for arg in typing.get_args(tp):
            visit(arg)

    visit(Config)
    return found


HEADER = re.compile(r"^\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
ASSIGNMENT = re.compile(r'^([A-Za-z0-9_\-]+|"[^"]+")\s*=')


def _split_dotted(name: str) -> Path_:
    return tuple(part.strip().strip('"') for part in re.findall(r'"[^"]*"|[^.]+', name))


def example_mentions(text: str) -> set[Path_]:
    """Key paths the example sets or mentions in a comment (``# key = ...``, ``# [table]``)."""
    mentions: set[Path_] = set()
    table: Path_ = ()
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            line = line.lstrip("#").strip()
        if match := HEADER.match(line):
            table = _split_dotted(match.group(1))
            for i in range(1, len(table) + 1):
                mentions.add(table[:i])
        elif match := ASSIGNMENT.match(line):
            key = _split_dotted(match.group(1))
            mentions.add((*table, *key))
    return mentions


def _matches(schema: Path_, mention: Path_) -> bool:
    return len(schema) == len(mention) and all(
        s in (ANY, m) for s, m in zip(schema, mention, strict=True)
    )


def test_the_walk_reaches_every_config_dataclass() -> None:
    """The walk is driven by Config's field types; every config dataclass of the module
    that Config uses is reached (a new table added to Config is found the same way)."""
    reached = schema_dataclasses()
    names = {cls.__name__ for cls in reached}
    assert {
        "Config",
        "ServerConfig",
        "ProviderConfig",
        "LocalConfig",
        "LocalModelConfig",
        "RoutingConfig",
        "RoutingRule",
        "ValidationConfig",
        "RegistryConfig",
        "PresetConfig",
    } <= names
    in_module = {
        obj
        for obj in vars(config_module).values()
        if isinstance(obj, type)
        and dataclasses.is_dataclass(obj)
        and obj.__module__ == config_module.__name__
    }
    unreached = {cls.__name__ for cls in in_module - reached}
    assert not unreached, f"config dataclasses that Config does not reach: {unreached}"
    assert NOT_IN_FILE <= config_module._DERIVED
    assert set(LOCATION) <= config_module._DERIVED


def test_the_mention_parser() -> None:
    text = """
[server]
address = "x"    # host:port
# log_level = "info"
# [providers.vllm]
# kind = "openai"
[[routing.rules]]
match = "a-*"
# prose that says nothing = about keys? not an assignment at line start
[presets.fast.chat]
model = "m"
"""
    mentions = example_mentions(text)
    assert ("server", "address") in mentions
    assert ("server", "log_level") in mentions
    assert ("providers", "vllm", "kind") in mentions
    assert ("routing", "rules") in mentions and ("routing", "rules", "match") in mentions
    assert ("presets", "fast", "chat", "model") in mentions
    assert _matches(("presets", ANY, ANY, "model"), ("presets", "fast", "chat", "model"))
    assert not _matches(("providers", ANY, "kind"), ("providers", "local", "models", "m", "kind"))


def test_example_documents_every_key() -> None:
    mentions = example_mentions(EXAMPLE.read_text())
    missing = [
        ".".join(path)
        for path in schema_paths()
        if not any(_matches(path, mention) for mention in mentions)
    ]
    assert not missing, (
        f"{EXAMPLE.relative_to(REPO)} does not mention these config keys "
        f"(document each, commented out if need be): {', '.join(missing)}"
    )


def test_example_mentions_no_unknown_key() -> None:
    """The other way round: nothing in the example (even commented out) is a key that the
    schema does not have, so the documentation cannot drift into fiction."""
    schema = schema_paths()
    unknown = [
        ".".join(mention)
        for mention in example_mentions(EXAMPLE.read_text())
        if not any(_matches(path, mention) for path in schema)
        # dict values with names of the user's choosing: headers, sha256, aliases, ...
        and not any(_matches(path, mention[:-1]) for path in schema)
    ]
    assert not unknown, f"keys in the example that the config schema does not know: {unknown}"


def test_check_config_accepts_the_example(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),  # no secrets file: keys are optional here
    }
    result = subprocess.run(
        [sys.executable, "-m", "ratd", "--check-config", "--config", str(EXAMPLE)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"config OK: {EXAMPLE}")


def _plain_tables() -> list[str]:
    """Top-level tables that hold settings rather than the user's choices of providers,
    routes and presets."""
    hints = typing.get_type_hints(Config)
    return [
        f.name
        for f in dataclasses.fields(Config)
        if f.name not in LOCATION
        and f.name not in NOT_IN_FILE
        and f.name != "routing"
        and dataclasses.is_dataclass(_unwrap(hints[f.name]))
    ]


@pytest.mark.parametrize("section", _plain_tables())
def test_example_values_of_plain_tables_are_the_defaults(section: str) -> None:
    """The example says "every key, with its default": in the tables that are settings
    (not the user's choices of providers, routes and presets), the values are the defaults."""
    data = tomllib.loads(EXAMPLE.read_text()).get(section, {})
    default = _unwrap(typing.get_type_hints(Config)[section])()
    for key, value in data.items():
        assert getattr(default, key) == value, f"[{section}] {key} = {value!r} is not the default"
