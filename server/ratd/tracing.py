"""OpenTelemetry tracing, when ``[tracing] otlp_endpoint`` is set and the ``otel`` extra
is installed: a span per RPC (continuing the caller's trace from the incoming gRPC
metadata), and a span per provider call with the GenAI semantic-convention attributes.
Without it every function here costs next to nothing."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from ratd.config import TracingConfig

if TYPE_CHECKING:
    from ratd.core.calls import CallInfo

log = logging.getLogger(__name__)


class _State:
    tracer: Any = None
    provider: Any = None


# Read where a call's path asks whether tracing is on without a function call:
# ``tracing.state.tracer is not None``.
state = _State()

# GenAI semantic conventions: gen_ai.operation.name by routing capability.
_OPERATIONS = {
    "chat": "chat",
    "generate": "text_completion",
    "embed": "embeddings",
    "nli": "nli",
    "classify": "classify",
    "stance": "stance",
    "tokens": "count_tokens",
}


def setup(config: TracingConfig) -> None:
    """Export spans to the configured OTLP/gRPC collector (once per process)."""
    if not config.otlp_endpoint or state.tracer is not None:
        return
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "[tracing] otlp_endpoint is set but OpenTelemetry is not installed "
            "(pip install 'ratatoskr[otel]'); tracing is off"
        )
        return
    endpoint = config.otlp_endpoint
    insecure = not endpoint.startswith("https://")
    provider = TracerProvider(resource=Resource.create({"service.name": config.service_name}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=insecure))
    )
    state.provider, state.tracer = provider, provider.get_tracer("ratd")
    log.info("tracing to %s", endpoint)


def shutdown() -> None:
    """Flush and stop the exporter."""
    if state.provider is not None:
        state.provider.shutdown()
    state.provider = state.tracer = None


class _NoSpan(AbstractContextManager[None]):
    """What the span functions give when tracing is off: nothing, at no cost."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


# What ``provider_span`` gives when tracing is off (callers may skip closing it).
NO_SPAN = _NoSpan()


def rpc_span(
    method: str,
    metadata: Callable[[], Iterable[tuple[str, object]] | None],
    info: CallInfo,
    system: str = "grpc",
) -> AbstractContextManager[None]:
    """A server span around one call; ``metadata`` (gRPC metadata or HTTP headers, read
    only when tracing is on) may carry the caller's trace context."""
    if state.tracer is None:
        return NO_SPAN
    return _rpc_span(method, metadata, info, system)


def provider_span(
    capability: str, provider: str, kind: str, model: str, options: Any = None
) -> AbstractContextManager[Any]:
    """A client span around one provider call; the caller adds the usage with
    ``record_usage`` when it knows it."""
    if state.tracer is None:
        return NO_SPAN
    return _provider_span(capability, provider, kind, model, options)


@contextmanager
def _rpc_span(
    method: str,
    metadata: Callable[[], Iterable[tuple[str, object]] | None],
    info: CallInfo,
    system: str,
) -> Iterator[None]:
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind

    carrier = {k.lower(): v for k, v in metadata() or () if isinstance(v, str)}
    attributes = {
        "rpc.system": system,
        "rpc.service": "ratatoskr.v1.Ratatoskr",
        "rpc.method": method,
    }
    with state.tracer.start_as_current_span(
        f"ratatoskr.v1.Ratatoskr/{method}",
        context=extract(carrier),
        kind=SpanKind.SERVER,
        attributes=attributes,
    ) as span:
        try:
            yield
        finally:
            span.set_attribute("ratatoskr.request_id", info.request_id)
            if info.model:
                span.set_attribute("gen_ai.request.model", info.model)
            if info.tried:
                span.set_attribute("ratatoskr.providers_tried", ",".join(info.tried))


@contextmanager
def _provider_span(
    capability: str, provider: str, kind: str, model: str, options: Any
) -> Iterator[Any]:
    from opentelemetry.trace import SpanKind

    operation = _OPERATIONS.get(capability, capability)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": kind,
        "gen_ai.system": kind,
        "gen_ai.request.model": model,
        "ratatoskr.provider": provider,
    }
    for name in ("temperature", "top_p", "top_k", "max_tokens"):
        if (
            options is not None
            and name in options.DESCRIPTOR.fields_by_name
            and options.HasField(name)
        ):
            attributes[f"gen_ai.request.{name}"] = getattr(options, name)
    with state.tracer.start_as_current_span(
        f"{operation} {model}", kind=SpanKind.CLIENT, attributes=attributes
    ) as span:
        yield span


def record_usage(span: Any, usage: Any, response_model: str = "") -> None:
    if span is None:
        return
    attributes: Mapping[str, Any] = {
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
    }
    span.set_attributes(attributes)
    if response_model:
        span.set_attribute("gen_ai.response.model", response_model)


def failed(span: Any, err: BaseException) -> None:
    """Mark a provider span failed by an error that was handled (the chain moved on)."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.record_exception(err)
    span.set_status(Status(StatusCode.ERROR, str(err)))


class AuditExport:
    """Audit records as OTLP log records ([audit] otlp_logs), to the tracing collector.
    Called from the audit writer thread, never from the event loop; the SDK batches
    and exports on a thread of its own. (OpenTelemetry's Python logs SDK is still
    marked experimental; tested with opentelemetry-sdk 1.45.)"""

    def __init__(self, endpoint: str, service_name: str) -> None:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.resources import Resource

        insecure = not endpoint.startswith("https://")
        self.provider = LoggerProvider(resource=Resource.create({"service.name": service_name}))
        self.provider.add_log_record_processor(
            BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=insecure))
        )
        self.logger = self.provider.get_logger("ratd.audit")

    def emit(self, record: Mapping[str, Any]) -> None:
        from opentelemetry._logs import LogRecord, SeverityNumber

        attributes = {
            f"ratatoskr.audit.{key}": value
            if isinstance(value, str | int | float | bool)
            else json.dumps(value, separators=(",", ":"))
            for key, value in record.items()
        }
        body = f"ratatoskr audit {record.get('event', '')} {record.get('rpc', '')}".strip()
        self.logger.emit(
            LogRecord(
                timestamp=time.time_ns(),
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                body=body,
                attributes=attributes,
            )
        )

    def close(self) -> None:
        """Flush and stop (blocks: from the writer thread or a worker thread)."""
        self.provider.shutdown()
