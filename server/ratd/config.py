"""ratd's configuration: TOML in, frozen dataclasses out, with errors that name the file,
the key and what was expected.

The dataclasses below are the schema. Unknown keys and wrong types are errors, never
ignored, because a silently ignored typo in a daemon's config is a production incident.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import tomllib
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ratd.providers.specs import REMOTE_KINDS, SPECS, spec_for
from ratd.secrets import Secret, default_secrets_path, load_secrets

CAPABILITIES = ("chat", "generate", "embed", "nli", "classify", "stance", "tokens", "realtime")


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


@dataclass(frozen=True)
class ServerConfig:
    address: str = "127.0.0.1:9741"
    metrics_address: str = "127.0.0.1:9742"
    max_concurrent_requests: int = 256
    request_timeout_secs: float = 120.0
    # How long SIGTERM waits for in-flight calls before cancelling them.
    shutdown_grace_secs: float = 10.0
    # Largest text a request may carry in any one field (and in total).
    max_request_bytes: int = 8 * 1024 * 1024
    log_level: str = "info"
    log_format: str = "text"
    # One structured line per request (method, model, providers tried, status, times,
    # tokens) at level info.
    log_requests: bool = True
    # TLS on the gRPC port: certificate chain and private key (PEM; the key file must be
    # mode 0600). With tls_client_ca_file, mutual TLS: every client must present a
    # certificate signed by that CA.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    # A unix socket address ("unix:/path") gets this mode (octal string) and group.
    socket_mode: str = "0660"
    socket_group: str = ""
    # Serve gRPC outside loopback without TLS or without caller authentication, and
    # metrics outside loopback at all (the endpoint is unauthenticated): refused unless
    # this is true, and then only with a warning.
    allow_insecure_remote: bool = False
    # Close each client connection (GOAWAY, in-flight calls finish) after this many
    # seconds, so that clients balancing over DNS (round_robin over a headless Service)
    # resolve again and find new replicas. 0: connections live as long as the client.
    max_connection_age_secs: float = 0.0

    @property
    def max_message_bytes(self) -> int:
        """Largest request message (gRPC) or body (HTTP): room for images and encoding
        overhead beyond the text limit, whose clear error the validator gives."""
        return max(4 * self.max_request_bytes, 16 * 1024 * 1024)


@dataclass(frozen=True)
class ProviderConfig:
    """A remote provider. The table name is the provider's name; ``kind`` says which API
    it speaks (defaults to the name, so ``[providers.openai]`` needs no kind)."""

    kind: str = ""
    base_url: str = ""
    connect_timeout_secs: float = 10.0
    # Longest wait for the response to begin (for an unstreamed answer: all of it).
    first_byte_timeout_secs: float = 300.0
    # Longest silence between two chunks of a response once it has begun.
    read_timeout_secs: float = 120.0
    max_connections: int = 256
    # Extra HTTP headers sent with every request (e.g. OpenRouter HTTP-Referer, X-Title).
    headers: dict[str, str] = field(default_factory=dict)
    # Environment variable holding the key, for providers with names of their own.
    api_key_env: str = ""
    # HuggingFace Inference API: ask the API to hold the request while a cold model loads
    # (``X-Wait-For-Model``) instead of answering 503 "loading" at once. Other kinds ignore it.
    wait_for_model: bool = False
    # HuggingFace Inference API: false sends ``X-Use-Cache: false`` so that the API computes
    # every answer afresh instead of serving its cache (the API's default is to cache).
    use_cache: bool = True
    # HuggingFace: base_url is a dedicated Inference Endpoint serving one model at its own
    # URL (requests go to base_url itself, whatever the model name), not the serverless
    # API's /models/{model} layout. Implied for hosts under .endpoints.huggingface.cloud.
    dedicated_endpoint: bool = False
    # Output token cap sent when the caller sets none, for APIs that require one
    # (Anthropic's max_tokens). 4096 fits every current model's output limit.
    default_max_tokens: int = 4096
    # Largest whole (unstreamed) response body accepted from the upstream.
    max_response_mb: float = 64.0
    # Which of the kind's upstream APIs serves which models: shell-style pattern -> API
    # name (e.g. {"gpt-5*" = "responses"}), first match in the order written; overrides
    # the registry's marks. Kinds that speak one API take none.
    apis: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LocalModelConfig:
    """One local model, ``[providers.local.models.NAME]``: a new one, or overrides of a
    built-in one (``all-MiniLM-L6-v2``, ``nli-deberta-v3-small``, ...). Files come from
    ``path``, else ``models_dir/NAME``, else ``package``, else the Hub (``hub_repo``)."""

    # "embedding" (sentence-transformers) or "nli" (cross-encoder; also serves zero-shot
    # classification and stance).
    kind: str = ""
    # A directory holding model.onnx (or onnx/model.onnx), tokenizer.json and the configs.
    path: str = ""
    # An installed Python package that carries the files (import name), and the folder
    # inside it that holds them.
    package: str = ""
    package_subdir: str = ""
    # HuggingFace Hub repository and the revision (commit, tag or branch) to pin.
    hub_repo: str = ""
    revision: str = ""
    # The ONNX file inside the directory or repository (default model.onnx or onnx/model.onnx).
    onnx_file: str = ""
    # Expected sha256 of files, by path relative to the model directory.
    sha256: dict[str, str] = field(default_factory=dict)
    # Other names the model answers to (the Hub id is always one).
    aliases: list[str] = field(default_factory=list)
    # Override what the model's own config files say (sentence-transformers models).
    pooling: str = ""
    normalize: bool | None = None
    max_seq_length: int = 0
    # NLI models: hypothesis template of zero-shot classification.
    hypothesis_template: str = ""
    # Embedding models trained with Matryoshka representation learning: a request's
    # ``dimensions`` truncates their vectors (then L2-normalises them again). Other
    # models refuse ``dimensions``.
    matryoshka: bool = False


@dataclass(frozen=True)
class LocalConfig:
    device: str = "cpu"
    models_dir: str = "~/.cache/ratatoskr/models"
    ram_budget_mb: int = 1024
    idle_timeout_secs: float = 300.0
    # Models loaded at start and never unloaded for idleness or evicted.
    pinned: list[str] = field(default_factory=list)
    # Local models by name, beside the built-in ones.
    models: dict[str, LocalModelConfig] = field(default_factory=dict)
    # HuggingFace Hub: where downloads are cached (default MODELS_DIR/hub), the endpoint
    # (default $HF_ENDPOINT or https://huggingface.co), and whether ratd may download on
    # first use (false: air-gapped, only files already present are used).
    hub_cache_dir: str = ""
    hub_endpoint: str = ""
    hub_downloads: bool = True
    # Directory of tokenizer files, NAME.tokenizer.json or NAME/tokenizer.json, searched
    # before the built-in sources.
    tokenizers_dir: str = ""
    # Extra model-name prefixes for token counting: prefix -> tokenizer name (a built-in
    # one such as "o200k_base", a file in tokenizers_dir, or a local model's name).
    tokenizer_aliases: dict[str, str] = field(default_factory=dict)
    # Load, at start-up (before ratd serves), every tokenizer whose file is on this machine
    # already (tokenizers_dir, the converted ones in MODELS_DIR/tokenizers): a load holds
    # the GIL (~1 s for o200k_base) and would stall every call of the first caller's time.
    preload_tokenizers: bool = True
    # ONNX Runtime threads per session (0: the number of physical cores).
    intra_op_threads: int = 0
    # Dynamic batching: padded tokens per batch, texts per batch, how long the first
    # request of a batch waits for company, and how many texts may wait per model.
    max_batch_tokens: int = 2048
    max_batch_size: int = 64
    max_wait_ms: float = 2.0
    max_queue: int = 4096
    # Most tokens one Tokenize reply lists (CountTokens, which returns a number, has none).
    max_tokenize_tokens: int = 100_000
    # Zero-shot and stance: most tokens one request may run through the model, summed
    # over its (text, hypothesis) pairs after the text is cut to the model's window.
    max_classify_tokens: int = 65_536
    # Hub revisions (tags, branches) a caller may name in DownloadModel besides a 40-hex
    # commit; an authenticated admin may name any (still from a safe character set).
    allowed_revisions: list[str] = field(default_factory=list)
    # Largest model download, in MB: checked against the sizes the Hub reports before
    # downloading, and against the bytes received while downloading (0: no limit).
    max_download_mb: int = 2048
    # Speech to text: most seconds of audio one Transcribe may hold for a local model
    # (each 30 s window is one encoder run and up to 448 decoder steps). The bytes are
    # bounded by [media] max_audio_bytes before this.
    max_audio_secs: float = 1800.0


@dataclass(frozen=True)
class RoutingRule:
    """``match`` is a shell-style pattern on the model name; first match wins."""

    match: str
    provider: str


@dataclass(frozen=True)
class RoutingConfig:
    chat: list[str] = field(default_factory=list)
    generate: list[str] = field(default_factory=list)
    embed: list[str] = field(default_factory=list)
    nli: list[str] = field(default_factory=list)
    classify: list[str] = field(default_factory=list)
    stance: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    # Media (GenerateImage, Transcribe/TranscribeStream, Synthesize).
    image: list[str] = field(default_factory=list)
    transcribe: list[str] = field(default_factory=list)
    speech: list[str] = field(default_factory=list)
    # Realtime sessions (Realtime): providers tried, before the session opens only.
    realtime: list[str] = field(default_factory=list)
    # Checked before the built-in table.
    rules: list[RoutingRule] = field(default_factory=list)
    # "ordered": try providers in chain order; "cheapest": among the providers that can
    # serve the model (and take the request's parameters), cheapest first, by the
    # registry's prices; "latency": fastest first, by the measured latency of each
    # (provider, model) (ratd.core.latency).
    strategy: str = "ordered"
    # strategy = "latency": weight of the newest sample in the moving average, share of
    # calls that try another provider first, age after which a sample is re-measured,
    # what a failure counts as, and most (provider, model) pairs remembered.
    latency_alpha: float = 0.3
    latency_explore: float = 0.05
    latency_max_age_secs: float = 300.0
    latency_failure_penalty_secs: float = 10.0
    latency_max_entries: int = 1024
    # "provider:model" of a chat model that answers NLI, zero-shot classification and
    # stance when no NLI model can ("": off). Opt-in: an LLM's judgement is slower,
    # dearer and less calibrated than an NLI model's.
    nli_llm_fallback: str = ""

    def chain(self, capability: str) -> list[str]:
        return list(getattr(self, capability))


@dataclass(frozen=True)
class RetryConfig:
    """Retries of one provider before the fallback chain moves on. Only transient
    failures are retried (429 but not quota, 5xx, 529, connection errors, timeouts)."""

    # Attempts per provider, the first included (1: no retries).
    max_attempts: int = 3
    initial_delay_ms: float = 250.0
    max_delay_ms: float = 8000.0
    # Each backoff delay is reduced by up to this fraction, at random.
    jitter: float = 0.5
    # A provider's retry hint (Retry-After, RetryInfo, estimated_time) longer than this
    # is not waited for: the fallback chain moves on instead.
    max_retry_after_secs: float = 30.0
    # Retries allowed as a fraction of recent requests (over budget_window_secs), plus
    # budget_min_retries, so that a provider that is down does not get a retry storm.
    budget_ratio: float = 0.2
    budget_window_secs: float = 10.0
    budget_min_retries: int = 10


@dataclass(frozen=True)
class CacheConfig:
    """Response cache of deterministic calls (embeddings, NLI, classification, stance)."""

    enabled: bool = True
    max_entries: int = 10_000
    max_mb: float = 64.0
    ttl_secs: float = 600.0
    # Also cache Chat answers, when the request sets temperature = 0 (unary calls only).
    chat: bool = False


@dataclass(frozen=True)
class TracingConfig:
    # OTLP/gRPC collector, e.g. "http://127.0.0.1:4317" ("": no tracing). Needs the
    # `otel` extra (pip install 'ratatoskr[otel]').
    otlp_endpoint: str = ""
    service_name: str = "ratd"


@dataclass(frozen=True)
class RegistryConfig:
    # Fetch the providers' model lists at all (false: seed data and the cache only).
    live: bool = True
    # How often the live model lists are fetched again (0: only at start).
    refresh_secs: float = 3600.0
    # The last good live data, for restarts without network ("": no cache).
    cache_path: str = "~/.cache/ratatoskr/registry.json"
    fetch_timeout_secs: float = 20.0
    # How long a parameter an upstream refused stays marked unsupported for that model.
    rejection_ttl_secs: float = 3600.0
    # The day (YYYY-MM-DD) retirement dates are judged against; "": today, UTC. Fixing it
    # shows what a later day would refuse, and keeps test runs independent of the date.
    today: str = ""


@dataclass(frozen=True)
class PresetConfig:
    """``[presets.<tier>.<capability>]``: the model and the parameters it fills in."""

    model: str
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)

    def as_seed_entry(self) -> dict[str, Any]:
        parameters = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "model" and getattr(self, f.name) not in (None, [])
        }
        return {"model": self.model, "parameters": parameters}


@dataclass(frozen=True)
class ValidationConfig:
    # What to do with a parameter the target model does not support: warn (drop it and
    # log once), error (INVALID_ARGUMENT, so a fallback can try elsewhere) or ignore
    # (send it anyway).
    parameter_policy: str = "warn"


@dataclass(frozen=True)
class AuthConfig:
    """``[auth]``: how callers prove who they are. "none" (every caller is anonymous and
    may do everything; loopback and unix sockets only), "api_key" (``authorization:
    Bearer <key>`` metadata, checked against the tenants' api_key_sha256) or "mtls" (the
    client certificate's subject or URI SAN, matched against the tenants' mtls_subjects).
    A change of mode needs a restart; the tenants reload with the config."""

    mode: str = "none"


@dataclass(frozen=True)
class TenantConfig:
    """``[tenants.NAME]``: one caller of ratd, its credentials, roles and limits."""

    # Hex SHA-256 of each valid key (several: rotate without downtime); `ratd keys new`.
    api_key_sha256: list[str] = field(default_factory=list)
    # Client certificate subjects ("CN=acme-batch", "CN=x,O=Acme") or URI SANs
    # ("spiffe://example.org/acme") that name this tenant under mode "mtls".
    mtls_subjects: list[str] = field(default_factory=list)
    # "inference" (the Ratatoskr service), "admin" (AdminService).
    roles: list[str] = field(default_factory=lambda: ["inference"])
    # Glob allow-list of models ("gpt-4o-mini", "openai:*", "local:*"); absent = all.
    models: list[str] | None = None
    # Limits and budgets (0 = unlimited), enforced by the gateway core (core.governance)
    # on the shared [state] backend: fleet-wide when it is Redis.
    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    user_requests_per_minute: int = 0
    budget_usd_daily: float = 0.0
    budget_usd_monthly: float = 0.0
    # Under a budget, a model without known prices is refused unless this is true (its
    # calls then count requests and tokens, and cost nothing against the budget).
    allow_unpriced_models: bool = False


@dataclass(frozen=True)
class StateConfig:
    """``[state]``: where limits, budgets and usage live. "memory" (one process) or "redis"
    (every replica sharing ``redis_url`` enforces one set of limits; the password comes
    from the secrets file, ``[redis] password``). ``on_unavailable``: what a governed call
    gets while Redis cannot be reached within ``timeout_ms`` ("deny": UNAVAILABLE
    STATE_UNAVAILABLE; "allow": served, uncounted)."""

    backend: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    on_unavailable: str = "deny"
    timeout_ms: int = 250
    # How long usage buckets (per hour) are kept: the longest window GetUsage answers.
    usage_retention_days: int = 35
    # Distinct x-ratatoskr-user values tracked per tenant in usage and metrics (the rest
    # are counted as "other"); the per-user rate limit applies to every value.
    max_users_per_tenant: int = 1000


@dataclass(frozen=True)
class MediaConfig:
    """``[media]``: size limits of media in requests (INVALID_ARGUMENT past them)."""

    # Audio of one Transcribe call, or of all the chunks of one TranscribeStream.
    max_audio_bytes: int = 25 * 1024 * 1024
    # Each input image of GenerateImage (edits).
    max_image_bytes: int = 20 * 1024 * 1024
    # Images asked of one GenerateImage call, and input images it may carry.
    max_images: int = 10
    # Each document part of a chat message, and the pages of a PDF among them.
    max_document_bytes: int = 32 * 1024 * 1024
    max_pdf_pages: int = 100
    # Each audio or video part of a chat message.
    max_audio_part_bytes: int = 20 * 1024 * 1024
    max_video_bytes: int = 20 * 1024 * 1024
    # Text of one Synthesize call.
    max_speech_chars: int = 4096


@dataclass(frozen=True)
class HttpConfig:
    """``[http]``: the OpenAI-compatible HTTP front door (``/v1/chat/completions``,
    ``/v1/completions``, ``/v1/embeddings``, ``/v1/models``), served from the same
    gateway, tenants and limits as gRPC. Off unless ``address`` is set."""

    # host:port, e.g. "127.0.0.1:9743" ("": no HTTP door). Outside loopback it needs TLS
    # (the [server] tls_* files, served as HTTPS here too) and caller authentication,
    # unless server.allow_insecure_remote = true.
    address: str = ""


@dataclass(frozen=True)
class AuditConfig:
    """``[audit]``: one JSON line per call and per admin action (who, what, which model
    and provider, status, tokens, cost; never prompt or completion text). Off unless
    ``path`` is set. SIGHUP and SIGUSR1 reopen the file (log rotation)."""

    # The JSON-lines file, e.g. "/var/log/ratatoskr/audit.jsonl" ("": no audit log). Its
    # directory must exist and must not be writable by everyone.
    path: str = ""
    # Mode of the file (octal string): "0640" or "0600".
    file_mode: str = "0640"
    # Lines waiting for the disk at most; beyond it lines are dropped (counted in
    # ratatoskr_audit_dropped_lines and logged), never stalling a call.
    queue_lines: int = 10000
    # Also send each record as an OTLP log record to [tracing] otlp_endpoint (needs the
    # otel extra and tracing on).
    otlp_logs: bool = False


@dataclass(frozen=True)
class InterceptorsConfig:
    """``[interceptors]``: Python objects that see every inference call before it is
    routed (may rewrite or refuse it) and its response or stream events after it."""

    # "module:attr" (an interceptor, or a class/factory called with its settings) or the
    # name of an entry point of the group "ratatoskr.interceptors"; run in this order.
    chain: list[str] = field(default_factory=list)
    # Also run every installed entry point of the group (after the chain, by name).
    load_entry_points: bool = False
    # Keyword arguments for the factories, by chain entry: [interceptors.settings."m:a"].
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class JobsConfig:
    """``[jobs]``: long-running jobs (SubmitBatch), followed through the standard
    google.longrunning.Operations service."""

    # Where jobs are kept, one file each, so that a restart loses none ("": in memory
    # only, lost at exit).
    dir: str = "~/.cache/ratatoskr/jobs"
    # Jobs kept at most (finished ones are dropped oldest first to make room; when all
    # are running, a new one is refused with RESOURCE_EXHAUSTED).
    max_jobs: int = 1000
    # The largest result a job may keep (MB); a larger one fails the job.
    max_result_mb: float = 32.0
    # Finished jobs are deleted this long after they end.
    keep_finished_secs: float = 7 * 86400.0
    # Items of a batch at most, and how many run at once (the local batch runner).
    max_batch_items: int = 10000
    batch_concurrency: int = 4
    # Where jobs are kept: "auto" (Redis when [state] backend = "redis", else ``dir``),
    # "local" (``dir``, this replica's own), "redis" (shared by every replica on
    # [state] redis_url: any replica answers for any job).
    store: str = "auto"
    # With a shared store: how long a replica's hold on a running job lasts unrenewed
    # (seconds); a replica that dies has its jobs taken over this long after.
    lease_secs: float = 15.0


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    local: LocalConfig | None = None
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    presets: dict[str, dict[str, PresetConfig]] = field(default_factory=dict)
    auth: AuthConfig = field(default_factory=AuthConfig)
    tenants: dict[str, TenantConfig] = field(default_factory=dict)
    http: HttpConfig = field(default_factory=HttpConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    interceptors: InterceptorsConfig = field(default_factory=InterceptorsConfig)
    state: StateConfig = field(default_factory=StateConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    keys: dict[str, Secret] = field(default_factory=dict)
    source: str = "<embedded default>"

    def api_key(self, provider: str) -> Secret | None:
        return self.keys.get(provider)


_CHOICES = {
    ("server", "log_level"): ("debug", "info", "warning", "error"),
    ("server", "log_format"): ("text", "json"),
    ("validation", "parameter_policy"): ("warn", "error", "ignore"),
    ("routing", "strategy"): ("ordered", "cheapest", "latency"),
    ("auth", "mode"): ("none", "api_key", "mtls"),
    ("audit", "file_mode"): ("0640", "0600"),
}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        item = typing.get_args(tp)[0]
        plural = {str: "strings", int: "integers", float: "numbers", bool: "booleans"}
        return f"a list of {plural.get(item, 'tables')}"
    if origin is dict:
        return "a table"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}.get(
        tp, str(tp)
    )


def _convert(value: Any, tp: Any, where: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; build dataclasses for tables."""
    if tp is Any:  # free-form values (interceptor settings): any TOML value
        return value
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(value, inner[0], where, source)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {where} must be a table")
        return _build(tp, value, where, source)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {where} must be {_type_name(tp)}, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {where} must be a table, got {value!r}")
        _, item = typing.get_args(tp)
        return {k: _convert(v, item, f"{where}.{k}", source) for k, v in value.items()}
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{source}: {where} must be {_type_name(tp)}, got {value!r}")


# Config fields that are filled by the loader, not read from the document's top level.
_DERIVED = {"keys", "source", "providers", "local"}


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _build(cls: type, data: dict[str, Any], where: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    if cls is Config:
        names -= _DERIVED
    for key in data:
        if key not in names:
            expected = ", ".join(sorted(names))
            raise ConfigError(
                f"{source}: unknown key {_join(where, key)} (expected one of: {expected})"
            )
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _convert(value, hints[key], _join(where, key), source)
        allowed = _CHOICES.get((where, key))
        if allowed and kwargs[key] not in allowed:
            raise ConfigError(
                f"{source}: {where}.{key} must be one of {', '.join(allowed)}, got {value!r}"
            )
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.init
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and f.name not in kwargs
    ]
    if missing:
        raise ConfigError(f"{source}: {where} is missing required key {missing[0]!r}")
    return cls(**kwargs)


def _providers(
    table: dict[str, Any], source: str
) -> tuple[dict[str, ProviderConfig], LocalConfig | None]:
    remote: dict[str, ProviderConfig] = {}
    local = None
    for name, body in table.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: providers.{name} must be a table")
        if name == "local":
            local = _build(LocalConfig, body, "providers.local", source)
            _check_local(local, source)
            continue
        conf = _build(ProviderConfig, body, f"providers.{name}", source)
        kind = conf.kind or name
        spec = spec_for(kind)
        if spec is None or not spec.remote:
            raise ConfigError(
                f"{source}: providers.{name}: unknown provider kind {kind!r} "
                f'(expected one of: {", ".join(REMOTE_KINDS)}; set kind = "..." for a custom name)'
            )
        base_url = (conf.base_url or spec.base_url).rstrip("/")
        if not base_url:
            raise ConfigError(
                f"{source}: providers.{name}: kind {kind!r} has no default address; "
                'set base_url = "http://host:port/v1"'
            )
        _check_base_url(base_url, f"{source}: providers.{name}.base_url")
        _check_apis(conf.apis, spec.apis, f"{source}: providers.{name}.apis")
        _protect_headers(conf.headers)
        remote[name] = dataclasses.replace(conf, kind=kind, base_url=base_url)
    return remote, local


def _check_apis(apis: dict[str, str], known: tuple[str, ...], where: str) -> None:
    """Patterns that name an API the provider's kind speaks (and only kinds that speak
    several take any)."""
    if apis and len(known) < 2:
        raise ConfigError(f"{where}: this kind speaks one API only; remove apis")
    for pattern, api in apis.items():
        if not pattern:
            raise ConfigError(f"{where}: a pattern may not be empty")
        if api not in known:
            raise ConfigError(
                f"{where}.{pattern!r}: unknown API {api!r} (expected one of: {', '.join(known)})"
            )


_SENSITIVE_HEADER_WORDS = ("auth", "key", "token", "secret", "cookie", "session", "password")


def _check_base_url(url: str, where: str) -> None:
    """An http(s) URL without credentials in it: a key in ``user:password@`` would be
    printed wherever the address is (errors, --check-config) and belongs in secrets."""
    try:
        parts = urllib.parse.urlsplit(url)
        has_credentials = parts.username is not None or parts.password is not None
        port_ok = parts.port is None or parts.port > 0
    except ValueError as err:
        raise ConfigError(f"{where} is not a valid URL: {err}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ConfigError(f"{where} must be an http:// or https:// URL with a host")
    if has_credentials:
        raise ConfigError(
            f"{where} must not carry credentials (user:password@host); put the key in the "
            "secrets file or the environment"
        )


def _protect_headers(headers: dict[str, str]) -> None:
    """Values of configured headers that look like credentials are kept out of every log
    line and error, as keys are."""
    for name, value in headers.items():
        if any(word in name.lower() for word in _SENSITIVE_HEADER_WORDS):
            Secret(value)


LOCAL_KINDS = ("embedding", "nli", "speech_to_text")
# A Hub tag or branch that cannot rewrite a URL path (ratd.local.revisions checks callers').
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len", "lasttoken")


def _check_local(local: LocalConfig, source: str) -> None:
    """Values the loader's types cannot check: choices and ranges of [providers.local]."""
    where = "providers.local"
    device = local.device
    if device != "cpu" and not (
        device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())
    ):
        raise ConfigError(
            f'{source}: {where}.device must be "cpu", "cuda" or "cuda:N", got {device!r}'
        )
    for key in (
        "ram_budget_mb",
        "max_batch_tokens",
        "max_batch_size",
        "max_queue",
        "max_tokenize_tokens",
        "max_classify_tokens",
    ):
        if getattr(local, key) < 1:
            raise ConfigError(
                f"{source}: {where}.{key} must be at least 1, got {getattr(local, key)}"
            )
    for key in ("idle_timeout_secs", "max_wait_ms", "intra_op_threads", "max_download_mb"):
        if getattr(local, key) < 0:
            raise ConfigError(
                f"{source}: {where}.{key} must not be negative, got {getattr(local, key)}"
            )
    for revision in local.allowed_revisions:
        if not _REVISION.fullmatch(revision) or ".." in revision:
            raise ConfigError(
                f"{source}: {where}.allowed_revisions: {revision!r} is not a tag or branch "
                "name (letters, digits, . _ - only, no ..)"
            )
    for name, model in local.models.items():
        _check_local_model(model, f"{source}: {where}.models.{name}")


def _check_local_model(model: LocalModelConfig, where: str) -> None:
    if model.kind and model.kind not in LOCAL_KINDS:
        raise ConfigError(
            f"{where}.kind must be one of {', '.join(LOCAL_KINDS)}, got {model.kind!r}"
        )
    if model.pooling and model.pooling not in POOLING_MODES:
        raise ConfigError(
            f"{where}.pooling must be one of {', '.join(POOLING_MODES)}, got {model.pooling!r}"
        )
    if model.hypothesis_template and "{}" not in model.hypothesis_template:
        raise ConfigError(f"{where}.hypothesis_template must contain {{}}")


def _kind_home(conf: ProviderConfig) -> bool:
    spec = spec_for(conf.kind)
    return spec is not None and conf.base_url == spec.base_url.rstrip("/")


def _auto_providers(keys: dict[str, Secret]) -> dict[str, ProviderConfig]:
    """With no provider tables at all: every remote provider whose key is known, and
    those that need none (Ollama on localhost)."""
    return {
        spec.kind: ProviderConfig(kind=spec.kind, base_url=spec.base_url)
        for spec in SPECS
        if spec.auto_enable and (spec.kind in keys or not spec.needs_key)
    }


def _check_today(today: str, source: str) -> None:
    if not today:
        return
    try:
        dt.date.fromisoformat(today)
    except ValueError:
        raise ConfigError(
            f"{source}: registry.today must be a date YYYY-MM-DD, got {today!r}"
        ) from None


def _check_routing(config: Config) -> None:
    known = set(config.providers) | ({"local"} if config.local else set())
    for capability in CAPABILITIES:
        for name in config.routing.chain(capability):
            if name not in known:
                raise ConfigError(
                    f"{config.source}: routing.{capability} names provider {name!r}, "
                    f"which is not configured (configured: {', '.join(sorted(known)) or 'none'})"
                )
    for i, rule in enumerate(config.routing.rules):
        if rule.provider not in known:
            raise ConfigError(
                f"{config.source}: routing.rules[{i}] names provider {rule.provider!r}, "
                "which is not configured"
            )
    _check_latency(config.routing, config.source)
    _check_llm_fallback(config)


def _check_latency(routing: RoutingConfig, source: str) -> None:
    where = f"{source}: routing"
    if not 0 < routing.latency_alpha <= 1:
        raise ConfigError(f"{where}.latency_alpha must be in (0, 1], got {routing.latency_alpha}")
    if not 0 <= routing.latency_explore <= 1:
        raise ConfigError(
            f"{where}.latency_explore must be in [0, 1], got {routing.latency_explore}"
        )
    for key in ("latency_max_age_secs", "latency_failure_penalty_secs"):
        if getattr(routing, key) < 0:
            raise ConfigError(f"{where}.{key} must not be negative, got {getattr(routing, key)}")
    if routing.latency_max_entries < 1:
        raise ConfigError(
            f"{where}.latency_max_entries must be at least 1, got {routing.latency_max_entries}"
        )


def _check_llm_fallback(config: Config) -> None:
    """``nli_llm_fallback`` names a configured provider that serves chat, and a model."""
    value = config.routing.nli_llm_fallback
    if not value:
        return
    where = f"{config.source}: routing.nli_llm_fallback"
    provider, sep, model = value.partition(":")
    if not sep or not provider or not model:
        raise ConfigError(
            f'{where} must be "provider:model" (e.g. "openai:gpt-4o-mini"), got {value!r}'
        )
    conf = config.providers.get(provider)
    if conf is None:
        raise ConfigError(
            f"{where} names provider {provider!r}, which is not configured "
            f"(configured: {', '.join(sorted(config.providers)) or 'none'})"
        )
    spec = spec_for(conf.kind)
    if spec is None or "chat" not in spec.capabilities:
        raise ConfigError(
            f"{where}: provider {provider!r} (kind {conf.kind!r}) does not serve chat"
        )


def _check_jobs(jobs: JobsConfig, source: str) -> None:
    for key in ("max_jobs", "max_result_mb", "max_batch_items", "batch_concurrency"):
        if getattr(jobs, key) <= 0:
            raise ConfigError(f"{source}: jobs.{key} must be positive")
    if jobs.keep_finished_secs < 0:
        raise ConfigError(f"{source}: jobs.keep_finished_secs must not be negative")
    if jobs.store not in ("auto", "local", "redis"):
        raise ConfigError(f'{source}: jobs.store must be "auto", "local" or "redis"')
    if jobs.lease_secs < 0.3:
        raise ConfigError(f"{source}: jobs.lease_secs must be at least 0.3")


def parse_config(
    text: str,
    source: str,
    *,
    secrets_path: Path | None = None,
    env: dict[str, str] | None = None,
) -> Config:
    """Parse and validate a config document, then attach the keys."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML: {err}") from None
    env = dict(os.environ) if env is None else env
    providers_table = data.pop("providers", {})
    if not isinstance(providers_table, dict):
        raise ConfigError(f"{source}: providers must be a table")
    base = _build(Config, data, "", source)
    keys = load_secrets(secrets_path, env)
    remote, local = _providers(providers_table, source)
    for name, conf in remote.items():
        if name not in keys and conf.api_key_env and env.get(conf.api_key_env):
            keys[name] = Secret(env[conf.api_key_env])
        elif name not in keys and conf.kind in keys and _kind_home(conf):
            # A kind's key (OPENAI_API_KEY) goes only to that kind's own API, never to a
            # self-hosted server of the same kind under another name.
            keys[name] = keys[conf.kind]
    if not providers_table:
        remote, local = _auto_providers(keys), LocalConfig()
    config = dataclasses.replace(base, providers=remote, local=local, keys=keys, source=source)
    _check_routing(config)
    _check_today(config.registry.today, source)
    if config.audit.queue_lines < 1:
        raise ConfigError(f"{source}: audit.queue_lines must be at least 1")
    if config.audit.otlp_logs and not (config.audit.path and config.tracing.otlp_endpoint):
        raise ConfigError(
            f"{source}: audit.otlp_logs needs audit.path and [tracing] otlp_endpoint set"
        )
    _check_jobs(config.jobs, source)
    from ratd.trust import check_trust  # [server] TLS/socket keys, [auth], [tenants]

    check_trust(config)
    _check_state(config)
    return config


def _check_state(config: Config) -> None:
    """``[state]`` and the tenants' limits make sense."""
    state, source = config.state, config.source
    if state.backend not in {"memory", "redis"}:
        raise ConfigError(
            f'{source}: state.backend must be "memory" or "redis", got {state.backend!r}'
        )
    if state.on_unavailable not in {"deny", "allow"}:
        raise ConfigError(
            f'{source}: state.on_unavailable must be "deny" or "allow", '
            f"got {state.on_unavailable!r}"
        )
    if state.backend == "redis" and not state.redis_url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise ConfigError(f"{source}: state.redis_url must be a redis://, rediss:// or unix:// URL")
    for key in ("timeout_ms", "usage_retention_days", "max_users_per_tenant"):
        if getattr(state, key) <= 0:
            raise ConfigError(f"{source}: state.{key} must be positive")
    for name, tenant in config.tenants.items():
        for key in (
            "requests_per_minute",
            "tokens_per_minute",
            "user_requests_per_minute",
            "budget_usd_daily",
            "budget_usd_monthly",
        ):
            if getattr(tenant, key) < 0:
                raise ConfigError(f"{source}: tenants.{name}.{key} must not be negative")


def embedded_default_text() -> str:
    return resources.files("ratd").joinpath("default_config.toml").read_text()


def find_config_path() -> Path | None:
    """``$XDG_CONFIG_HOME/ratatoskr/config.toml``, then ``/etc/ratatoskr/config.toml``."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for candidate in (Path(xdg) / "ratatoskr" / "config.toml", Path("/etc/ratatoskr/config.toml")):
        if candidate.exists():
            return candidate
    return None


def load_config(
    path: Path | None = None,
    secrets_path: Path | None = None,
    *,
    use_embedded: bool = False,
) -> Config:
    """Load from ``path`` (or the usual places, or the embedded default) and the secrets."""
    if path is None and not use_embedded:
        path = find_config_path()
    if secrets_path is None:
        secrets_path = default_secrets_path()
    if path is None:
        return parse_config(
            embedded_default_text(), "<embedded default>", secrets_path=secrets_path
        )
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config: {err.strerror}") from None
    return parse_config(text, str(path), secrets_path=secrets_path)
