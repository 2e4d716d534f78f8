"""Per-tenant limits, budgets and usage, enforced where the model, its prices and the
token counts are known: the gateway core, for the caller the service layer put in
``CallInfo`` (its tenant, its ``x-ratatoskr-user``).

Before a call: one atomic reservation on the state backend of everything the call may
use: a request against requests_per_minute (tenant, and user), the worst-case tokens
against tokens_per_minute, the worst-case cost against the daily and monthly budgets.
The worst case is a bound, never a guess: the prompt counts at most one token per byte
of the serialized request (byte-level tokenizers never do worse), the output at most
``max_tokens`` or the model's output limit, priced at the dearest candidate of the
fallback chain. After the call: one settlement moves each counter to the real usage and
cost (``cost_usd`` as the gateway computed it) and adds them to the usage buckets,
exactly once per request id. So a budget is never overshot when prices are known,
whatever the concurrency and however many replicas share the backend.

Callers without a tenant (auth mode "none") are not governed: the default costs nothing.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import itertools
import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ratatoskr.v1 import chat_pb2, usage_pb2
from ratd import errors
from ratd.config import Config, TenantConfig
from ratd.core.calls import CallInfo
from ratd.metrics import (
    GOVERNANCE_DENIALS,
    TENANT_REQUESTS,
    TENANT_SPEND,
    TENANT_TOKENS,
    child,
)
from ratd.registry import Registry
from ratd.state.base import Counter, Settlement, StateBackend

# The requests governed: chat and generation, unary and streamed.
Governed = (
    chat_pb2.ChatRequest
    | chat_pb2.ChatStreamRequest
    | chat_pb2.GenerateRequest
    | chat_pb2.GenerateStreamRequest
)
NANO = 1_000_000_000
# A minute window's key outlives the minute a little (clock skew between replicas).
_MINUTE_TTL_MS = 120_000
# Settled markers are remembered this long (a settlement replayed later is dropped).
_MARKER_TTL_MS = 3_600_000
# Output tokens assumed for the token limit when neither max_tokens nor the model's
# output limit is known (budgets refuse such calls instead: see MODEL_UNPRICED).
DEFAULT_OUTPUT_BOUND = 4096
# Prompt tokens an image may cost at most, whatever its size in bytes (the dearest
# tilings of OpenAI, Anthropic and Gemini stay well below).
IMAGE_BOUND = 8192
# Longest x-ratatoskr-user value used as is in keys (longer ones are hashed).
_MAX_USER_CHARS = 128
# The separator of the fields of a usage cell: metric, model, provider, user.
SEP = "\x1f"
OTHER_USER = "other"
# Settlement ids: unique across replicas (request ids carry only a pid, which containers
# share), so that one call's settled marker is never another's.
_PROCESS = secrets.token_hex(6)
_SEQUENCE = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Limits:
    """One tenant's limits, in the units the backend counts (nano-dollars)."""

    requests: int
    tokens: int
    user_requests: int
    daily: int
    monthly: int
    allow_unpriced: bool

    @classmethod
    def of(cls, conf: TenantConfig) -> Limits:
        return cls(
            conf.requests_per_minute,
            conf.tokens_per_minute,
            conf.user_requests_per_minute,
            math.floor(conf.budget_usd_daily * NANO),
            math.floor(conf.budget_usd_monthly * NANO),
            conf.allow_unpriced_models,
        )


@dataclass(slots=True)
class Reservation:
    """What one admitted call holds until it settles."""

    tenant: str
    user: str
    # Unique per call across replicas: the settlement's idempotency key.
    call_id: str
    tokens: int = 0
    nanos: int = 0
    token_keys: list[str] = field(default_factory=list)
    cost_keys: list[str] = field(default_factory=list)
    settled: bool = False


def user_key(user: str) -> str:
    """The user as it appears in keys and usage: short printable values as they are,
    long ones (or any with control characters, which separate usage fields) hashed."""
    if len(user) <= _MAX_USER_CHARS and user.isprintable():
        return user
    return "sha256:" + hashlib.sha256(user.encode()).hexdigest()[:32]


def _images(request: Governed) -> int:
    """Image parts of a chat request (a generate request has none)."""
    messages = getattr(request, "messages", ())
    return sum(1 for message in messages for part in message.parts if part.HasField("image"))


def _end_of_day(now: float) -> float:
    return (now // 86400 + 1) * 86400


def _end_of_month(now: float) -> float:
    year, month = time.gmtime(now)[:2]
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0)))


@functools.lru_cache(maxsize=4)
def _day_periods(day: int) -> tuple[str, float, str, float]:
    """The UTC day and month names of day number ``day`` and when each ends."""
    start = day * 86400.0
    return (
        time.strftime("%Y%m%d", time.gmtime(start)),
        _end_of_day(start),
        time.strftime("%Y%m", time.gmtime(start)),
        _end_of_month(start),
    )


def _periods(now: float) -> tuple[str, float, str, float]:
    return _day_periods(int(now // 86400))


def usage_key(tenant: str, hour: int) -> str:
    return f"rat:{{{tenant}}}:u:{hour}"


class Governor:
    """The limits of one config's tenants over one state backend."""

    def __init__(self, config: Config, state: StateBackend, registry: Registry) -> None:
        self.state = state
        self.registry = registry
        self.deny = config.state.on_unavailable == "deny"
        self.usage_ttl_ms = config.state.usage_retention_days * 86_400_000
        self.max_users = config.state.max_users_per_tenant
        self.limits = {name: Limits.of(conf) for name, conf in config.tenants.items()}
        self._users: dict[str, set[str]] = {}

    def governs(self, info: CallInfo | None) -> bool:
        return info is not None and info.tenant is not None

    # -- before the call --------------------------------------------------------------------

    def _bounds(
        self,
        request: Governed,
        candidates: Sequence[tuple[str, str]],
    ) -> tuple[int, int | None, float | None]:
        """The prompt bound, the output bound (None: unknown for some candidate) and the
        worst-case cost in dollars (None: some candidate has no known price)."""
        prompt = request.ByteSize() + IMAGE_BOUND * _images(request)
        options = request.options
        asked = options.max_tokens if options.HasField("max_tokens") else None
        output: int | None = 0
        worst: float | None = 0.0
        for provider, model in candidates:
            bound = asked
            if bound is None:
                found = self.registry.get(provider, model)
                if found is not None and found.HasField("max_output_tokens"):
                    bound = found.max_output_tokens
                elif found is not None and found.info.HasField("context_window"):
                    bound = found.info.context_window
            if bound is None:
                output = worst = None
                break
            output = max(output or 0, bound)
            if worst is not None:
                cost = self._cost(provider, model, prompt, bound)
                worst = None if cost is None else max(worst, cost)
        return prompt, output, worst

    def _cost(self, provider: str, model: str, prompt: int, output: int) -> float | None:
        """Dollars for ``prompt`` + ``output`` tokens at the model's prices (as
        Registry.cost computes them), None when they are unknown."""
        found = self.registry.get(provider, model)
        if found is None or not found.HasField("pricing"):
            return None
        pricing = found.pricing
        if not (
            pricing.HasField("prompt_cost_per_mtok") or pricing.HasField("completion_cost_per_mtok")
        ):
            return None
        return (
            prompt * pricing.prompt_cost_per_mtok + output * pricing.completion_cost_per_mtok
        ) / 1_000_000

    async def admit(
        self,
        info: CallInfo,
        request: Governed | None,
        candidates: Sequence[tuple[str, str]] = (),
    ) -> Reservation | None:
        """Reserve the worst case of the call, or raise TenantRateLimited, BudgetExceeded,
        ModelUnpriced or (backend down, on_unavailable "deny") StateUnavailable. None:
        the call goes uncounted (backend down, "allow"). ``request`` None: a call that
        counts as a request only (embeddings, NLI, classification, tokens)."""
        tenant = info.tenant
        assert tenant is not None
        name = tenant.name
        limits = self.limits.get(name)
        user = user_key(info.user) if info.user else ""
        held = Reservation(name, user, f"{_PROCESS}-{next(_SEQUENCE)}")
        counters: list[Counter] = []
        kinds: list[str] = []
        now = time.time()
        minute = int(now // 60)
        if limits is not None:
            if limits.requests:
                counters.append(
                    Counter(f"rat:{{{name}}}:rpm:{minute}", 1, limits.requests, _MINUTE_TTL_MS)
                )
                kinds.append("requests_per_minute")
            if limits.user_requests and user:
                key = f"rat:{{{name}}}:upm:{minute}:{user}"
                counters.append(Counter(key, 1, limits.user_requests, _MINUTE_TTL_MS))
                kinds.append("user_requests_per_minute")
            if request is not None and (limits.tokens or limits.daily or limits.monthly):
                self._bounded(held, limits, request, candidates, now, minute, counters, kinds)
        if not counters:
            return held
        try:
            denial = await self.state.reserve(counters)
        except errors.StateUnavailable:
            if self.deny:
                self._denied(name, "STATE_UNAVAILABLE")
                raise
            return None
        if denial is not None:
            raise self._refusal(name, kinds[denial.index], counters[denial.index], now)
        return held

    def _bounded(  # noqa: PLR0917 (one step of admit, kept apart for length)
        self,
        held: Reservation,
        limits: Limits,
        request: Governed,
        candidates: Sequence[tuple[str, str]],
        now: float,
        minute: int,
        counters: list[Counter],
        kinds: list[str],
    ) -> None:
        """The token and budget counters of a reservation."""
        name = held.tenant
        prompt, output, worst = self._bounds(request, candidates)
        if limits.tokens:
            held.tokens = prompt + (DEFAULT_OUTPUT_BOUND if output is None else output)
            key = f"rat:{{{name}}}:tpm:{minute}"
            counters.append(Counter(key, held.tokens, limits.tokens, _MINUTE_TTL_MS))
            held.token_keys.append(key)
            kinds.append("tokens_per_minute")
        if not (limits.daily or limits.monthly):
            return
        if worst is None and not limits.allow_unpriced:
            self._denied(name, "MODEL_UNPRICED")
            model = request.options.model
            raise errors.ModelUnpriced(
                f"tenant {name} has a budget and the cost of model {model!r} cannot be "
                "bounded (unknown prices or output limit; set max_tokens, or "
                "allow_unpriced_models = true in its [tenants] table)",
                model=model,
            )
        held.nanos = 0 if worst is None else math.ceil(worst * NANO)
        day, day_ends, month, month_ends = _periods(now)
        for limit, label, period, ends in (
            (limits.daily, "budget_usd_daily", day, day_ends),
            (limits.monthly, "budget_usd_monthly", month, month_ends),
        ):
            if limit:
                key = f"rat:{{{name}}}:{label[11:]}:{period}"
                ttl = int((ends - now + 3600) * 1000)
                counters.append(Counter(key, held.nanos, limit, ttl))
                held.cost_keys.append(key)
                kinds.append(label)

    def _denied(self, tenant: str, reason: str) -> None:
        child(GOVERNANCE_DENIALS, tenant, reason).inc()

    def _refusal(self, tenant: str, kind: str, counter: Counter, now: float) -> errors.GatewayError:
        if kind.startswith("budget"):
            self._denied(tenant, "BUDGET_EXCEEDED")
            ends = _end_of_day(now) if kind == "budget_usd_daily" else _end_of_month(now)
            return errors.BudgetExceeded(
                f"tenant {tenant} is over its {kind} of {counter.limit / NANO:g} USD: this "
                f"call may cost up to {counter.amount / NANO:.6g} USD, more than is left",
                retry_after=max(1.0, ends - now),
                limit=kind,
            )
        self._denied(tenant, "TENANT_RATE_LIMITED")
        if counter.amount > counter.limit:
            message = (
                f"tenant {tenant}: this call alone ({counter.amount} tokens at most) is over "
                f"its {kind} of {counter.limit}; lower max_tokens or the prompt"
            )
        else:
            message = f"tenant {tenant} is over its {kind} of {counter.limit}"
        # The window is the UTC minute (its key lives longer, for clock skew between
        # replicas): come back when it ends.
        return errors.TenantRateLimited(message, retry_after=max(0.001, 60 - now % 60), limit=kind)

    # -- after the call ---------------------------------------------------------------------

    def _user(self, tenant: str, user: str) -> str:
        """``user`` in usage and metrics, or "other" past max_users_per_tenant."""
        seen = self._users.setdefault(tenant, set())
        if user in seen:
            return user
        if len(seen) >= self.max_users:
            return OTHER_USER
        seen.add(user)
        return user

    def settle(
        self,
        held: Reservation | None,
        info: CallInfo,
        usage: chat_pb2.Usage | None,
        *,
        keep: bool = False,
    ) -> None:
        """Move the reservation to the real usage (``usage``: None when the call failed)
        and record it. ``keep``: the call may have cost something unknown (a stream cut
        or a call cancelled after the upstream began): charge the reserved worst case."""
        if held is None or held.settled:
            return
        held.settled = True
        if usage is not None:
            tokens_in, tokens_out = usage.prompt_tokens, usage.completion_tokens
            nanos = round(usage.cost_usd * NANO) if usage.HasField("cost_usd") else 0
            tokens = tokens_in + tokens_out
        elif keep:
            tokens_in = tokens_out = 0
            tokens, nanos = held.tokens, held.nanos
        else:
            tokens_in = tokens_out = tokens = nanos = 0
        deltas = [(k, tokens - held.tokens) for k in held.token_keys]
        deltas += [(k, nanos - held.nanos) for k in held.cost_keys]
        tenant = held.tenant
        user = self._user(tenant, held.user)
        tail = f"{SEP}{info.model}{SEP}{info.provider}{SEP}{user}"
        cells = [("r" + tail, 1)]
        cells += [
            (m + tail, v) for m, v in (("i", tokens_in), ("o", tokens_out), ("c", nanos)) if v
        ]
        hour = int(time.time() // 3600)
        self.state.settle(
            Settlement(
                f"rat:{{{tenant}}}:settled:{held.call_id}",
                _MARKER_TTL_MS,
                deltas,
                usage_key(tenant, hour),
                self.usage_ttl_ms,
                cells,
            )
        )
        child(TENANT_REQUESTS, tenant).inc()
        if tokens_in:
            child(TENANT_TOKENS, tenant, "prompt").inc(tokens_in)
        if tokens_out:
            child(TENANT_TOKENS, tenant, "completion").inc(tokens_out)
        if nanos:
            child(TENANT_SPEND, tenant).inc(nanos / NANO)

    # -- usage -------------------------------------------------------------------------------

    def window(self, start: int, end: int, now: float) -> tuple[int, int]:
        """The hours ``[first, last]`` that a GetUsage window covers (InvalidInput when
        it is empty or reversed); never longer than the buckets are kept."""
        end = end or int(now)
        start = start or end - 86_400
        if start < 0 or end < 0 or start >= end:
            raise errors.InvalidInput(
                f"the usage window must have 0 <= start_unix < end_unix, got {start}..{end}",
                field="start_unix",
            )
        first, last = start // 3600, (end - 1) // 3600
        kept = self.usage_ttl_ms // 3_600_000
        return max(first, last - kept + 1), last

    async def usage(
        self, tenants: Sequence[str], start: int, end: int, group_by: int
    ) -> usage_pb2.GetUsageResponse:
        """Each tenant's usage in the window, split by model, provider or user."""
        first, last = self.window(start, end, time.time())
        await self.state.flush()  # this replica's own settlements under way
        hours = range(first, last + 1)
        keys = [usage_key(t, h) for t in tenants for h in hours]
        buckets = await self.state.read_usage(keys)
        part = _GROUP_PART.get(group_by, 0)
        rows: dict[tuple[str, str], usage_pb2.UsageRow] = {}
        for index, bucket in enumerate(buckets):
            tenant = tenants[index // len(hours)]
            for cell, amount in bucket.items():
                fields = cell.split(SEP)
                if len(fields) != 4:
                    continue
                group = fields[part] if part else ""
                row = rows.get((tenant, group))
                if row is None:
                    row = rows[tenant, group] = usage_pb2.UsageRow(tenant=tenant, key=group)
                _add(row, fields[0], amount)
        return usage_pb2.GetUsageResponse(
            rows=[rows[k] for k in sorted(rows)],
            start_unix=first * 3600,
            end_unix=(last + 1) * 3600,
        )


# The field of a usage cell that each UsageGroupBy value splits by (0: none).
_GROUP_PART: dict[int, int] = {
    usage_pb2.USAGE_GROUP_BY_MODEL: 1,
    usage_pb2.USAGE_GROUP_BY_PROVIDER: 2,
    usage_pb2.USAGE_GROUP_BY_USER: 3,
}


def _add(row: usage_pb2.UsageRow, metric: str, amount: int) -> None:
    if metric == "r":
        row.requests += amount
    elif metric == "i":
        row.prompt_tokens += amount
    elif metric == "o":
        row.completion_tokens += amount
    elif metric == "c":
        row.cost_usd += amount / NANO
