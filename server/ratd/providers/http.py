"""Upstream HTTP for every remote provider: one pooled aiohttp session per provider, and
the translation of transport failures and HTTP error statuses into ratd's errors.

Provider modules add what is particular to their API (how the error body names a
missing model, say); everything that HTTP itself means lives here once.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import math
import re
import time
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from ratd import errors
from ratd.config import ProviderConfig
from ratd.deadline import Deadline
from ratd.providers.streams import Oversized, chunks, iter_lines, iter_sse_data

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
# Longer than any real hint, and short enough for a google.protobuf.Duration.
_MAX_RETRY_AFTER_SECS = 1e9


class HttpClient:
    """A provider's connection pool to its ``base_url``."""

    def __init__(self, provider: str, config: ProviderConfig, headers: Mapping[str, str]) -> None:
        """``headers`` go with every request: the provider's defaults, the configured
        extras and its authentication, already merged in that order."""
        self.provider = provider
        self.base_url = config.base_url
        self.max_bytes = int(config.max_response_mb * 1024 * 1024)
        # Added to "cannot connect" errors (Ollama: is the server running?).
        self.unreachable_hint = ""
        self._config = config
        self._headers = {"Content-Type": "application/json", **headers}
        self._session: aiohttp.ClientSession | None = None
        self._ws_session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the session's
        # A whole JSON answer (``request(whole=True)``) arrives at once when it comes: one
        # limit for all of it, the first byte's, counted on ratd's coarse alarms
        # (``ratd.deadline``) rather than by aiohttp, whose total timeout is a loop timer
        # and a timer context per request and whose read timer is re-armed on every chunk
        # (docs/benchmarks.md, "Stop 15").
        self._whole = aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout_secs)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._config.max_connections,
                limit_per_host=0,
                ttl_dns_cache=300,
            )
            # Until the response begins, a read may wait first_byte_timeout_secs (an
            # unstreamed answer arrives whole); after that, read_timeout_secs between
            # chunks (see request()).
            timeout = aiohttp.ClientTimeout(
                total=None,
                sock_connect=self._config.connect_timeout_secs,
                sock_read=self._config.first_byte_timeout_secs,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=timeout,
                headers=self._headers,
                raise_for_status=False,
                read_bufsize=2**18,
                # Provider APIs set no cookies worth keeping; the jar only costs time.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._loop = asyncio.get_running_loop()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._ws_session is not None:
            await self._ws_session.close()
            self._ws_session = None

    def _get_ws_session(self) -> aiohttp.ClientSession:
        """A session of its own for WebSockets: ``ws_connect`` follows redirects, so this
        one refuses them in a trace hook before the next request is sent (the key must
        reach no origin but the configured one)."""
        if self._ws_session is None or self._ws_session.closed:
            refuse = aiohttp.TraceConfig()
            refuse.on_request_redirect.append(_refuse_redirect)
            self._ws_session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self._config.connect_timeout_secs
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
                trace_configs=[refuse],
            )
        return self._ws_session

    async def websocket(
        self,
        path: str,
        *,
        model: str,
        max_message_bytes: int,
        params: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientWebSocketResponse:
        """A WebSocket to ``base_url`` + ``path`` (https becomes wss, http ws), the
        provider's headers (its key) sent with the handshake. A refused handshake is the
        error its HTTP status means; a redirect is refused."""
        url = ws_url(self.base_url) + path
        timeout = aiohttp.ClientWSTimeout(
            ws_receive=None, ws_close=min(2.0, self._config.connect_timeout_secs)
        )
        try:
            return await asyncio.wait_for(
                self._get_ws_session().ws_connect(
                    url,
                    params=params,
                    timeout=timeout,
                    max_msg_size=max_message_bytes,
                    autoping=True,
                ),
                self._config.connect_timeout_secs + self._config.first_byte_timeout_secs,
            )
        except aiohttp.WSServerHandshakeError as err:
            raise error_for_status(
                err.status,
                err.message,
                provider=self.provider,
                model=model,
                headers=err.headers or {},
            ) from None
        except _Redirected:
            raise errors.ProviderUnavailable(
                f"{self.provider}: the realtime endpoint redirected; ratd follows no "
                "redirect (set the provider's base_url to the final address)",
                provider=self.provider,
                model=model,
            ) from None
        except Exception as err:
            error = self.failure(err, model, begun=False)
            if error is None:
                raise
            raise error from None

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def request(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        model: str = "",
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        whole: bool = False,
    ) -> _Exchange:
        """``async with client.request(...) as response``: the request sent, the response
        with its body unread. ``whole``: an unstreamed JSON answer, bounded in all by
        ``first_byte_timeout_secs`` (otherwise: until it begins, then
        ``read_timeout_secs`` between chunks).

        Transport failures (refused, reset, timeouts, cut bodies, oversized bodies),
        whether they happen while connecting or while the caller reads the body, come out
        as ratd errors. Redirects are never followed: the request carries the provider's
        key, which must reach no origin but the configured one.

        ``body``: raw bytes sent instead of ``payload`` as JSON (multipart forms), with
        their Content-Type in ``headers``.
        """
        data = body if body is not None else orjson.dumps(payload) if payload is not None else None
        return _Exchange(
            self, method, self.url(path), data, headers=headers, model=model, whole=whole
        )

    def send(
        self,
        method: str,
        path: str,
        body: bytes,
        *,
        model: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> _Exchange:
        """As ``request``, with a body already encoded (a multipart upload); ``headers``
        name its Content-Type."""
        return self.request(method, path, model=model, headers=headers, body=body)

    def failure(
        self, err: BaseException, model: str, *, begun: bool, whole: bool = False
    ) -> errors.GatewayError | None:
        """The ratd error a transport failure means; None for anything else. ``begun``:
        the response had begun; ``whole``: an answer bounded in all (``request``)."""
        common: dict[str, Any] = {"provider": self.provider, "model": model}
        if isinstance(err, aiohttp.ClientConnectorError):
            hint = f" ({self.unreachable_hint})" if self.unreachable_hint else ""
            return errors.ProviderUnavailable(
                f"{self.provider}: cannot connect to {self.base_url}: "
                f"{err.os_error.strerror or err}{hint}",
                **common,
            )
        if isinstance(err, Oversized):
            return errors.UpstreamProtocolError(f"{self.provider}: {err}", **common)
        if isinstance(err, TimeoutError | aiohttp.ServerTimeoutError):
            if whole:
                what = f"did not answer within {self._config.first_byte_timeout_secs:g}s"
            elif begun:
                what = f"went silent for {self._config.read_timeout_secs:g}s mid-response"
            else:
                what = f"did not begin to answer within {self._config.first_byte_timeout_secs:g}s"
            return errors.ProviderUnavailable(f"{self.provider}: {self.base_url} {what}", **common)
        if isinstance(err, aiohttp.ClientPayloadError):
            return errors.UpstreamProtocolError(
                f"{self.provider}: the response was cut off: {err}", **common
            )
        if isinstance(err, aiohttp.ClientError):
            return errors.ProviderUnavailable(
                f"{self.provider}: request to {self.base_url} failed: {err}", **common
            )
        return None

    def _begun(self, response: aiohttp.ClientResponse, model: str, *, switch: bool) -> None:
        """Refuse a redirect, and (``switch``) from now on allow read_timeout_secs between
        chunks."""
        if 300 <= response.status < 400:
            raise errors.ProviderUnavailable(
                f"{self.provider}: {self.base_url} answered with a redirect "
                f"(HTTP {response.status}), which ratd does not follow; "
                "set base_url to the API's own address",
                provider=self.provider,
                model=model,
                metadata={"upstream_status": str(response.status)},
            )
        if not switch:
            return
        connection = response.connection
        between = self._config.read_timeout_secs
        if (
            between != self._config.first_byte_timeout_secs
            and connection is not None
            and connection.protocol is not None
        ):
            connection.protocol.read_timeout = between

    async def read(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, refused (``Oversized``) past ``max_response_mb``."""
        length = response.content_length
        if length is not None:
            if length > self.max_bytes:
                raise Oversized(f"a response of {length} bytes (limit {self.max_bytes})")
            return await response.read()
        return b"".join([chunk async for chunk in chunks(response, self.max_bytes)])

    def payloads(
        self, response: aiohttp.ClientResponse, stream_format: str
    ) -> AsyncIterator[str] | AsyncIterator[bytes]:
        """A streamed body's payloads: each SSE event's data, or each NDJSON line."""
        if stream_format == "ndjson":
            return iter_lines(response)
        return iter_sse_data(response)

    async def json(
        self, method: str, path: str, payload: Any = None, *, model: str = ""
    ) -> tuple[int, Mapping[str, str], Any]:
        """Send a request and read the whole body; JSON bodies come back parsed."""
        async with self.request(method, path, payload, model=model) as response:
            body = await self.read(response)
            return response.status, response.headers, parse_body(body)


class _Exchange(Deadline):
    """One request and its response, as an async context manager. (A class rather than a
    generator-based context manager: every upstream call takes this path.) For a whole
    answer it is also that answer's ``Deadline``: one object per exchange, not two."""

    __slots__ = (
        "_begun",
        "_context",
        "client",
        "data",
        "headers",
        "method",
        "model",
        "url",
        "whole",
    )

    def __init__(
        self,
        client: HttpClient,
        method: str,
        url: str,
        data: bytes | None,
        *,
        headers: Mapping[str, str] | None,
        model: str,
        whole: bool = False,
    ) -> None:
        """``whole``: one limit for the whole exchange, ``first_byte_timeout_secs``."""
        self.client, self.method, self.url, self.data = client, method, url, data
        self.headers, self.model, self.whole = headers, model, whole
        self._begun = False
        self._slot = -1  # no alarm until entered

    async def __aenter__(self) -> aiohttp.ClientResponse:  # type: ignore[override]
        client = self.client
        session = client._get_session()
        if self.whole:
            loop = client._loop
            assert loop is not None  # set with the session
            self.arm(loop.time() + client._config.first_byte_timeout_secs, loop)
            timeout = client._whole
        else:
            timeout = session.timeout
        self._context = session.request(
            self.method,
            self.url,
            data=self.data,
            headers=self.headers,
            allow_redirects=False,
            timeout=timeout,
        )
        try:
            response = await self._context.__aenter__()
        except BaseException as exc:
            error = self._ended(exc, begun=False)
            if error is None:
                raise
            raise error from None
        self._begun = True
        try:
            client._begun(response, self.model, switch=not self.whole)
        except BaseException as exc:
            try:
                await self._context.__aexit__(None, None, None)
            finally:
                self._ended(exc, begun=True)
            raise
        return response

    async def __aexit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._context.__aexit__(kind, err, tb)
        except BaseException as exc:  # closing failed, or was cut short (by the limit, say)
            error = self._ended(exc, begun=True)
            if error is None:
                raise
            raise error from None
        error = self._ended(err, begun=self._begun)
        if error is not None:
            raise error from None

    def _ended(self, err: BaseException | None, *, begun: bool) -> errors.GatewayError | None:
        """Stop a whole answer's clock (every way out of the exchange calls this once),
        and say which ratd error ``err``, what ended the exchange, means: None for no
        error or one not of the transport's making. The cancellation the clock itself
        asked for means the answer took too long."""
        if self.whole:
            try:
                self.disarm(type(err) if err is not None else None, err)
            except TimeoutError as timeout:
                err = timeout
        if err is None or not isinstance(err, Exception):
            return None
        return self.client.failure(err, self.model, begun=begun, whole=self.whole)


class _Redirected(Exception):
    """A WebSocket handshake answered with a redirect (refused, never followed)."""


async def _refuse_redirect(*_: Any) -> None:
    raise _Redirected()


def ws_url(base_url: str) -> str:
    """``base_url`` as a WebSocket URL: https becomes wss, http ws."""
    scheme, sep, rest = base_url.partition("://")
    return {"https": "wss", "http": "ws"}.get(scheme.lower(), scheme) + sep + rest


def parse_body(body: bytes) -> Any:
    """JSON when the body is JSON, else its text (some error pages are plain text)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", errors="replace").strip()


def loads_or_protocol_error(data: str | bytes, provider: str, model: str) -> Any:
    """Parse one streamed JSON document; anything else is the upstream's protocol fault."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        snippet = data[:200] if isinstance(data, str) else data[:200].decode(errors="replace")
        raise errors.UpstreamProtocolError(
            f"{provider}: malformed JSON in the response: {snippet!r}",
            provider=provider,
            model=model,
        ) from None


def _parse_duration(text: str) -> float | None:
    """OpenAI's reset durations: "20s", "1m30s", "6ms", "0.5s"."""
    total, matched = 0.0, False
    for value, unit in _DURATION_RE.findall(text):
        matched = True
        total += float(value) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total if matched else None


def retry_after_from_headers(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait, from whichever retry hint the provider sent.

    ``Retry-After-Ms``, ``Retry-After`` (seconds or an HTTP date), ``X-Ratelimit-Reset``
    (OpenRouter: epoch milliseconds; others: epoch seconds or a delta), OpenAI's
    ``X-Ratelimit-Reset-Requests``/``-Tokens`` for the limit that is exhausted. A hint
    that cannot be read (not a number or date, infinite, absurdly far) counts as none.
    """
    delay = _retry_after(headers, time.time() if now is None else now)
    if delay is None or not math.isfinite(delay) or delay > _MAX_RETRY_AFTER_SECS:
        return None
    return delay


def _retry_after(headers: Mapping[str, str], now: float) -> float | None:
    for read in (_retry_after_ms, _retry_after_header, _ratelimit_reset, _exhausted_limit):
        delay = read(headers, now)
        if delay is not None:
            return delay
    return None


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _retry_after_ms(headers: Mapping[str, str], now: float) -> float | None:
    number = _number(headers.get("retry-after-ms") or "")
    return None if number is None else max(0.0, number / 1000)


def _retry_after_header(headers: Mapping[str, str], now: float) -> float | None:
    """``Retry-After``: seconds, or an HTTP date."""
    value = headers.get("retry-after")
    if not value:
        return None
    number = _number(value)
    if number is not None:
        return max(0.0, number)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):  # neither seconds nor an HTTP date
        return None
    if parsed.tzinfo is None:  # "-0000": UTC, not the local zone
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return max(0.0, parsed.timestamp() - now)


def _ratelimit_reset(headers: Mapping[str, str], now: float) -> float | None:
    """``X-Ratelimit-Reset``: epoch milliseconds (OpenRouter), epoch seconds, a number
    of seconds, or a duration ("1m30s")."""
    value = headers.get("x-ratelimit-reset")
    if not value:
        return None
    number = _number(value)
    if number is None:
        return _parse_duration(value)
    if number > 1e12:
        return max(0.0, number / 1000 - now)
    if number > 1e9:
        return max(0.0, number - now)
    return max(0.0, number)


def _exhausted_limit(headers: Mapping[str, str], now: float) -> float | None:
    """OpenAI's reset of whichever limit (requests or tokens) is exhausted."""
    for kind in ("requests", "tokens"):
        if headers.get(f"x-ratelimit-remaining-{kind}") == "0":
            reset = headers.get(f"x-ratelimit-reset-{kind}")
            if reset:
                return _parse_duration(reset)
    return None


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    model: str,
    headers: Mapping[str, str] | None = None,
    upstream_code: str = "",
) -> errors.GatewayError:
    """The ratd error an HTTP error status means, before any API-specific refinement."""
    meta = {"upstream_status": str(status)}
    if upstream_code:
        meta["upstream_code"] = upstream_code
    text = f"{provider}: {message}" if message else f"{provider}: HTTP {status}"
    common: dict[str, Any] = {"provider": provider, "model": model, "metadata": meta}
    if status in (401, 403):
        return errors.AuthenticationFailed(text, **common)
    if status == 402:
        return errors.QuotaExceeded(text, **common)
    if status == 404:
        return errors.ModelNotFound(text, **common)
    if status == 429:
        return errors.RateLimited(
            text, retry_after=retry_after_from_headers(headers or {}), **common
        )
    if status in (503, 529):
        return errors.ProviderOverloaded(
            text, retry_after=retry_after_from_headers(headers or {}), **common
        )
    if status >= 500 or status in (408, 409):
        return errors.ProviderUnavailable(text, **common)
    return errors.UpstreamInvalidRequest(text, **common)
