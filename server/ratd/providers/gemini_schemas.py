"""JSON Schema as Gemini takes it.

Gemini has two fields for each schema. ``responseSchema`` and function ``parameters``
take its Schema object, an OpenAPI 3.0 subset without ``$ref``: references are inlined,
``["string", "null"]`` becomes ``nullable``, and unknown keywords such as
``additionalProperties`` are dropped. ``responseJsonSchema`` and ``parametersJsonSchema``
take JSON Schema itself, ``$defs`` and ``$ref`` included, and unroll cyclic references
themselves "to a limited degree" (Google's API definition, googleapis
``google/ai/generativelanguage/v1beta``: ``GenerationConfig.response_json_schema``,
``FunctionDeclaration.parameters_json_schema``).

``wire_schema`` chooses: the Schema object when the translation is exact, JSON Schema as
the caller wrote it when the schema is recursive (no finite inlining of a cycle is
exact; it used to be cut at 16 levels into ``{"type": "object"}``, which Gemini then
refused as an object without properties). ``gemini_schema`` alone refuses a recursive
schema (``RecursiveSchema``, naming the field and the definition) and a ``$ref`` that
names nothing.

Inlining can grow a schema exponentially, so the translation runs on a budget shared by
the schemas of one request and refuses, as the caller's error, what would outgrow it; a
schema sent as is counts by its size against the same budget, and nests no deeper than
a request body can.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

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
# How deeply a translated schema may nest (each subschema and each $ref followed is a
# level). Real schemas nest a few levels; the bound keeps a long chain of definitions
# from exhausting the interpreter's stack.
MAX_SCHEMA_DEPTH = 64
# The levels of the request body around a schema (``tools[].functionDeclarations[].
# parameters``), which must still encode: orjson refuses nesting past 255.
_ENVELOPE_LEVELS = 8
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


@dataclass(eq=False)
class RecursiveSchema(errors.InvalidInput):
    """A schema whose ``$ref`` leads back to a definition being expanded: Gemini's Schema
    object (which has no ``$ref``) cannot say it."""

    definition: str = ""


def wire_schema(
    schema: Mapping[str, Any], field: str, budget: SchemaBudget
) -> tuple[dict[str, Any], bool]:
    """The schema to send and whether it is JSON Schema as is (for ``responseJsonSchema``
    / ``parametersJsonSchema``) rather than Gemini's Schema object: the exact form of
    each, the first when the translation is exact."""
    spent = (budget.nodes, budget.bytes)
    try:
        return gemini_schema(schema, field, budget), False
    except RecursiveSchema:
        budget.nodes, budget.bytes = spent  # the abandoned translation costs nothing
    size = len(orjson.dumps(schema))
    if size > MAX_SCHEMA_GROWTH_BYTES or size > budget.bytes:
        raise errors.InvalidInput(
            f"{field}: the schema is recursive, so it is sent to Gemini as JSON Schema as is, "
            f"and its {size} bytes pass the {MAX_SCHEMA_GROWTH_BYTES >> 20} MiB allowed "
            "for the schemas of one request",
            field=field,
        )
    budget.bytes -= size
    _check_envelope(schema, field)
    return dict(schema), True


def gemini_schema(
    schema: Mapping[str, Any], field: str = "schema", budget: SchemaBudget | None = None
) -> dict[str, Any]:
    """A JSON Schema as Gemini's Schema object takes it. What it cannot say exactly (a
    recursive ``$ref``: ``RecursiveSchema``; a ``$ref`` that names nothing) and what
    grows past the budget once translated are the caller's to fix: ``InvalidInput``
    naming ``field``."""
    converter = _SchemaConverter(schema, field, budget or SchemaBudget())
    converted = converter.convert(schema, 0)
    _check_envelope(converted, field)
    return converted


def _check_envelope(schema: Mapping[str, Any], field: str) -> None:
    """Refuse a schema too deeply nested to be encoded inside a request body."""
    wrapped: Any = schema
    for _ in range(_ENVELOPE_LEVELS):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        raise errors.InvalidInput(
            f"{field}: the schema nests too deeply to be sent to Gemini; nest it less deeply",
            field=field,
        ) from None


def _resolve(root: Mapping[str, Any], ref: str) -> Any:
    """What a local ``$ref`` (a JSON pointer within the schema: ``#/$defs/Name``, ``#``)
    names, or None."""
    if not ref.startswith("#") or (len(ref) > 1 and not ref.startswith("#/")):
        return None
    node: Any = root
    for part in ref[2:].split("/") if len(ref) > 1 else ():
        key = unquote(part).replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


@dataclass(slots=True)
class _SchemaConverter:
    root: Mapping[str, Any]
    where: str  # the request field the schema came in
    budget: SchemaBudget
    # The encoded size of each list or object copied, by id: the same one comes back
    # with every $ref to its definition, and is measured once.
    sizes: dict[int, int] = field(default_factory=dict)
    # The $refs being expanded, outermost first, with the id of what each names: a
    # target met again (however its $ref is spelled) is a cycle.
    expanding: list[tuple[int, str]] = field(default_factory=list)

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
        if depth > MAX_SCHEMA_DEPTH:
            raise errors.InvalidInput(
                f"{self.where}: the schema nests more than {MAX_SCHEMA_DEPTH} levels once its "
                "$refs are inlined; make it shallower",
                field=self.where,
            )
        if "$ref" in node:
            return self._inline(node, depth)
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

    def _inline(self, node: Mapping[str, Any], depth: int) -> dict[str, Any]:
        """A ``$ref`` node as its target (with the node's other keywords over it)."""
        ref = str(node["$ref"])
        target = _resolve(self.root, ref)
        if target is None:
            raise errors.InvalidInput(
                f"{self.where}: $ref {ref[:200]!r} names nothing in the schema (only local "
                "references such as '#/$defs/Name' are resolved)",
                field=self.where,
            )
        if not isinstance(target, Mapping):
            return {}
        self._refuse_cycle(id(target), ref)
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        self.expanding.append((id(target), ref))
        try:
            return self.convert(merged, depth + 1)
        finally:
            self.expanding.pop()

    def _refuse_cycle(self, target: int, ref: str) -> None:
        """Raise ``RecursiveSchema`` if ``target`` is being expanded already."""
        ids = [i for i, _ in self.expanding]
        if target not in ids:
            return
        refs = [r for _, r in self.expanding[ids.index(target) :]]
        cycle = " -> ".join(repr(r[:200]) for r in [*refs, ref])
        raise RecursiveSchema(
            f"{self.where}: the schema is recursive ({cycle}): Gemini's Schema object has "
            "no $ref to say it with",
            field=self.where,
            definition=ref,
        )

    def _keyword(self, out: dict[str, Any], key: str, value: Any, kind: Any, depth: int) -> None:
        """Copy one keyword of a schema node into ``out``, translated."""
        if key == "properties" and isinstance(value, Mapping):
            out[key] = {name: self.convert(v, depth + 1) for name, v in value.items()}
        elif key == "items":
            out[key] = self.convert(value, depth + 1)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [self.convert(v, depth + 1) for v in value]
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
