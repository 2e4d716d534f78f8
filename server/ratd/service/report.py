"""What ratd says about each finished call: Prometheus metrics and one structured log
line (request id, method, model, providers tried, status, durations, tokens)."""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import TYPE_CHECKING

from ratd.core.access import Tenant
from ratd.core.calls import CallInfo
from ratd.metrics import DURATION, OVERHEAD, REQUESTS, TIME_TO_FIRST_TOKEN, child

if TYPE_CHECKING:
    from ratd.service.audit import AuditLog

log = logging.getLogger("ratd.requests")

_ids = itertools.count(1)
_PREFIX = f"{os.getpid():x}"


def new_request_id() -> str:
    return f"{_PREFIX}-{next(_ids)}"


def report_refused(
    method: str,
    status: str,
    tenant: Tenant | None,
    *,
    log_requests: bool,
    audit: AuditLog | None = None,
    user: str = "",
) -> None:
    """Report a call refused before it was admitted (authentication, an unreadable body),
    as the calls that were."""
    info = CallInfo(method, new_request_id(), deadline=0.0)
    info.tenant = tenant
    info.user = user
    report(info, status, log_requests=log_requests, audit=audit)


def report(
    info: CallInfo, status: str, *, log_requests: bool, audit: AuditLog | None = None
) -> None:
    elapsed = time.perf_counter() - info.started
    if audit is not None:
        audit.call(info, status, elapsed)
    provider = info.provider or "none"
    child(REQUESTS, provider, info.method, status).inc()
    child(DURATION, info.method).observe(elapsed)
    if info.first_event is not None:
        child(TIME_TO_FIRST_TOKEN, provider, info.method).observe(info.first_event)
    if info.tried and info.upstream > 0:
        until = info.first_event if info.first_event is not None else elapsed
        child(OVERHEAD, info.method).observe(max(0.0, until - info.upstream))
    if log_requests and log.isEnabledFor(logging.INFO):
        fields: dict[str, object] = {
            "request_id": info.request_id,
            "method": info.method,
            "tenant": info.tenant.name if info.tenant is not None else "",
            "user": info.user,
            "model": info.model,
            "provider": info.provider,
            "tried": ",".join(info.tried),
            "status": status,
            "ms": round(elapsed * 1000, 3),
            "upstream_ms": round(info.upstream * 1000, 3),
        }
        if info.first_event is not None:
            fields["ttft_ms"] = round(info.first_event * 1000, 3)
        if info.retries:
            fields["retries"] = info.retries
        if info.cache:
            fields["cache"] = info.cache
        if info.served_by:
            fields["served_by"] = info.served_by
        if info.usage is not None:
            fields["tokens_in"] = info.usage.prompt_tokens
            fields["tokens_out"] = info.usage.completion_tokens
        text = " ".join(f"{k}={v}" for k, v in fields.items() if v not in ("", None))
        log.info("request %s", text, extra={"fields": fields})
