"""JSON Schema as Gemini's Schema object takes it (``responseSchema`` and function
``parameters``): an OpenAPI 3.0 subset without ``$ref``, so references are inlined,
``["string", "null"]`` becomes ``nullable``, and unknown keywords such as
``additionalProperties`` are dropped.

Inlining can grow a schema exponentially, so the translation runs on a budget shared by
the schemas of one request and refuses, as the caller's error, what would outgrow it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ratd import errors

# The keywords of Gemini's Schema object (an OpenAPI 3.0 subset).
_SCHEMA_KEYS = frozenset(
    {
        "type", "format", "title", "description", "nullable", "enum", "maxItems",
        "minItems", "properties", "required", "minProperties", "maxProperties",
        "minLength", "maxLength", "pattern", "example", "anyOf", "propertyOrdering",
        "default", "items", "minimum", "maximum",
    }
)  # fmt: skip
_FORMATS = {
    "string": {"enum", "date-time"},
    "integer": {"int32", "int64"},
    "number": {"float", "double"},
}
_MAX_REF_DEPTH = 16
# What the schemas of one request may become once translated. Inlining ``$ref`` (and
# splitting type lists) can grow a schema exponentially: 101 bytes of self-referring
# definitions became a 2.8 MB upstream body after 0.28 s of CPU on the event loop
# (issue #13). Real tool and response schemas have tens to hundreds of nodes. Text and
# lists copied into the result (descriptions, enums, examples) count by their size,
# beyond the size of the schemas as the caller sent them.
MAX_SCHEMA_NODES = 10_000
MAX_SCHEMA_GROWTH_BYTES = 1 << 20


class SchemaBudget:
    """What a request's schemas may still produce, shared by all of them so that many
    small bombs cannot add up to one big one."""

    __slots__ = ("bytes", "nodes")

    def __init__(self, nodes: int = MAX_SCHEMA_NODES, size: int = MAX_SCHEMA_GROWTH_BYTES):
        self.nodes = nodes
        self.bytes = size


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def gemini_schema(
    schema: Mapping[str, Any], field: str = "schema", budget: SchemaBudget | None = None
) -> dict[str, Any]:
    """A JSON Schema as Gemini's Schema object takes it. A schema that grows past the
    budget once translated is the caller's to fix: ``InvalidInput`` naming ``field``."""
    definitions = {**_mapping(schema.get("definitions")), **_mapping(schema.get("$defs"))}
    converter = _SchemaConverter(definitions, field, budget or SchemaBudget())
    return converter.convert(schema, 0)


@dataclass(slots=True)
class _SchemaConverter:
    definitions: Mapping[str, Any]
    where: str  # the request field the schema came in
    budget: SchemaBudget
    # The encoded size of each list or object copied, by id: the same one comes back
    # with every $ref to its definition, and is measured once.
    sizes: dict[int, int] = field(default_factory=dict)

    def _spend(self, nodes: int, size: int = 0) -> None:
        self.budget.nodes -= nodes
        self.budget.bytes -= size
        if self.budget.nodes < 0 or self.budget.bytes < 0:
            raise errors.InvalidInput(
                f"{self.where}: the schema grows past {MAX_SCHEMA_NODES} nodes or "
                f"{MAX_SCHEMA_GROWTH_BYTES >> 20} MiB once its $refs are inlined (Gemini takes "
                "no $ref); make it smaller or less recursive",
                field=self.where,
            )

    def _size(self, value: Any) -> int:
        if isinstance(value, str):
            return len(value)
        if not isinstance(value, list | dict):
            return 8
        if id(value) not in self.sizes:
            self.sizes[id(value)] = len(orjson.dumps(value))
        return self.sizes[id(value)]

    def convert(self, node: Any, depth: int) -> dict[str, Any]:
        if not isinstance(node, Mapping):
            return {}
        self._spend(1)
        if "$ref" in node:
            name = str(node["$ref"]).rsplit("/", 1)[-1]
            target = self.definitions.get(name)
            if not isinstance(target, Mapping) or depth >= _MAX_REF_DEPTH:
                return {"type": "object"}  # recursive or unknown: the best Gemini can say
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return self.convert(merged, depth + 1)
        source = _normalised(node)
        out: dict[str, Any] = {}
        kind = source.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"]
            if len(kinds) < len(kind):
                out["nullable"] = True
            if len(kinds) == 1:
                kind = kinds[0]
            else:
                out["anyOf"] = [self.convert({**source, "type": k}, depth) for k in kinds]
                kind = None
        if isinstance(kind, str):
            out["type"] = kind
        for key, value in source.items():
            if key in _SCHEMA_KEYS and not (key in ("type", "anyOf") and key in out):
                self._keyword(out, key, value, kind, depth)
        return out

    def _keyword(self, out: dict[str, Any], key: str, value: Any, kind: Any, depth: int) -> None:
        """Copy one keyword of a schema node into ``out``, translated."""
        if key == "properties" and isinstance(value, Mapping):
            out[key] = {name: self.convert(v, depth) for name, v in value.items()}
        elif key == "items":
            out[key] = self.convert(value, depth)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [self.convert(v, depth) for v in value]
        elif key == "enum":
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                self._spend(0, self._size(value))
                out[key] = value
        elif key == "format":
            if isinstance(value, str) and value in _FORMATS.get(str(kind), ()):
                out[key] = value
        elif key != "type":
            self._spend(0, self._size(value))
            out[key] = value


def _normalised(node: Mapping[str, Any]) -> dict[str, Any]:
    """A schema node with the JSON Schema spellings Gemini lacks rewritten to its own."""
    source = dict(node)
    all_of = source.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], Mapping):
        source = {**all_of[0], **source}
        source.pop("allOf")
    if "oneOf" in source and "anyOf" not in source:
        source["anyOf"] = source.pop("oneOf")
    if "const" in source and "enum" not in source:
        source["enum"] = [source["const"]]
    return source
