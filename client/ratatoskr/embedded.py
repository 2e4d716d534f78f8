"""Embedded mode: ratd's gateway inside this process, without the server extra imported
until it is asked for (``pip install 'ratatoskr[server]'``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import grpc

from ratatoskr.v1 import ratatoskr_pb2, ratatoskr_pb2_grpc

if TYPE_CHECKING:
    from ratd.embedded import EmbeddedDaemon

SERVER_EXTRA_MISSING = (
    "embedded mode runs ratd's gateway in this process and needs the server extra: "
    "pip install 'ratatoskr[server]' (and one of 'ratatoskr[cpu]' or 'ratatoskr[gpu]' "
    "for local models)"
)

# A ratd that does not answer within this is taken to be absent.
DEFAULT_PROBE_SECS = 0.5

# The codes of "nobody answered": anything else came from a running ratd.
_ABSENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


async def start_embedded(
    config_path: str | os.PathLike[str] | None,
    secrets_path: str | os.PathLike[str] | None,
    default_config: bool,
) -> EmbeddedDaemon:
    """Import ratd (ImportError with the install line when it is not installed) and serve
    it in this process."""
    try:
        from ratd.embedded import start_embedded as start
    except ImportError as err:
        raise ImportError(SERVER_EXTRA_MISSING) from err
    return await start(
        os.fspath(config_path) if config_path is not None else None,
        os.fspath(secrets_path) if secrets_path is not None else None,
        default_config=default_config,
    )


async def ratd_answers(
    channel: grpc.aio.Channel, probe_secs: float, metadata: tuple[tuple[str, str], ...] | None
) -> bool:
    """Whether a ratd answers ``Health`` on ``channel`` within ``probe_secs``. Any answer,
    even a refusal (a key missing), means one is running."""
    stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
    try:
        await stub.Health(ratatoskr_pb2.HealthRequest(), timeout=probe_secs, metadata=metadata)
    except grpc.aio.AioRpcError as err:
        return err.code() not in _ABSENT
    return True
