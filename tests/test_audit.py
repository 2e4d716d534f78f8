"""The audit log ([audit] path): one JSON line per call and per admin action, with who
did what and never the text; safe file handling; reopened on SIGHUP/SIGUSR1; a slow
disk drops (and counts) lines instead of stalling calls."""

from __future__ import annotations

import json
import os
import signal
import stat
import threading
from pathlib import Path

import grpc
import pytest

from ratatoskr.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    chat_pb2,
    models_pb2,
    ratatoskr_pb2_grpc,
)
from ratd.config import AuditConfig, ConfigError
from ratd.server import Daemon
from ratd.service.audit import AuditLog
from tests.fakes.openai_upstream import TEXT, FakeOpenAIUpstream
from tests.support.compat import OPENAI_KEY, OPENAI_MODEL
from tests.support.daemon import make_config, running_daemon, spawn_ratd

pytestmark = pytest.mark.timeout(60)

PROMPT = "my secret plan: tell nobody about the ash tree"
USER = ("x-ratatoskr-user", "alice@example.org")


def audit_config(fake: FakeOpenAIUpstream, path: Path, extra: str = "") -> str:
    return f"""
[providers.openai]
base_url = "{fake.base_url_openai}"
[audit]
path = "{path}"
{extra}
"""


def chat() -> chat_pb2.ChatRequest:
    message = chat_pb2.Message(role=chat_pb2.ROLE_USER, content=PROMPT)
    return chat_pb2.ChatRequest(messages=[message], options={"model": OPENAI_MODEL})


def chat_stream() -> chat_pb2.ChatStreamRequest:
    message = chat_pb2.Message(role=chat_pb2.ROLE_USER, content=PROMPT)
    return chat_pb2.ChatStreamRequest(messages=[message], options={"model": OPENAI_MODEL})


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_calls_and_admin_actions_are_audited_without_text(
    upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    config = make_config(audit_config(upstream, path), env={"OPENAI_API_KEY": OPENAI_KEY})
    async with running_daemon(config) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
            admin = admin_pb2_grpc.AdminServiceStub(channel)
            answer = await stub.Chat(chat(), metadata=(USER,))
            assert answer.content == TEXT
            events = [e async for e in stub.ChatStream(chat_stream(), metadata=(USER,))]
            assert events
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Chat(chat_pb2.ChatRequest(options=chat_pb2.ChatOptions()))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.aio.AioRpcError):  # no local provider here
                await admin.UnloadModel(admin_pb2.UnloadModelRequest(model="all-MiniLM-L6-v2"))
            reloaded = await admin.ReloadConfig(admin_pb2.ReloadConfigRequest())
            assert not reloaded.reloaded  # started from a Config object, nothing to reread
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    text = path.read_text()
    assert PROMPT not in text and TEXT not in text
    records = lines(path)
    by_rpc = {r["rpc"]: r for r in records if r["status"] != "INVALID_ARGUMENT"}
    unary, streamed = by_rpc["Chat"], by_rpc["ChatStream"]
    for record in (unary, streamed):
        assert record["event"] == "call"
        assert record["user"] == "alice@example.org"
        assert record["model"] == OPENAI_MODEL
        assert record["provider"] == "openai"
        assert record["status"] == "OK"
        assert isinstance(record["tokens_in"], int) and record["tokens_in"] > 0
        assert isinstance(record["tokens_out"], int) and record["tokens_out"] > 0
        assert str(record["time"]).endswith("Z") and record["request_id"]
    bad = [r for r in records if r["status"] == "INVALID_ARGUMENT"]
    assert len(bad) == 1 and bad[0]["rpc"] == "Chat" and bad[0]["user"] == ""
    unload = by_rpc["UnloadModel"]
    assert unload["event"] == "admin" and unload["status"] == "UNIMPLEMENTED"
    assert unload["args"] == {"model": "all-MiniLM-L6-v2"}
    reload = by_rpc["ReloadConfig"]
    assert reload["event"] == "admin" and reload["args"] == {"trigger": "rpc", "changed": []}
    assert len(records) == 5


def test_world_writable_directory_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    config = make_config(f'[audit]\npath = "{shared / "audit.jsonl"}"\n')
    with pytest.raises(ConfigError, match="writable by everyone"):
        Daemon(config)
    assert not (shared / "audit.jsonl").exists()


def test_file_mode_0600_and_existing_file_tightened(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text("")
    path.chmod(0o666)
    audit = AuditLog(AuditConfig(path=str(path), file_mode="0600"))
    audit.record({"event": "call", "rpc": "Chat"})
    audit.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert lines(path) == [{"event": "call", "rpc": "Chat"}]


def test_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    """The audit file is a pipe nobody reads yet: the writer thread blocks on it, the
    queue fills, and further records are dropped (counted) while ``record`` returns at
    once. Every record is either written or counted as dropped."""
    fifo = tmp_path / "audit.fifo"
    os.mkfifo(fifo, 0o600)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    audit = AuditLog(AuditConfig(path=str(fifo), queue_lines=2))
    padding = "x" * 10_000
    total = 100
    for i in range(total):  # 1 MB against a 64 kB pipe and 2 queued records
        audit.record({"n": i, "pad": padding})
    assert audit.dropped > 0
    os.set_blocking(reader, True)
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(reader, 65536):
            received.extend(chunk)

    thread = threading.Thread(target=drain)
    thread.start()
    audit.close()
    thread.join()
    os.close(reader)
    written = received.decode().splitlines()
    assert len(written) + audit.dropped == total
    numbers = [json.loads(line)["n"] for line in written]
    assert numbers == sorted(numbers)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGUSR1])
async def test_rotation_reopens_the_file(tmp_path: Path, sig: signal.Signals) -> None:
    """logrotate's way: move the file, signal ratd, and the next lines go to a new file
    at the configured path (SIGHUP also reloads the config; SIGUSR1 only reopens)."""
    path = tmp_path / "audit.jsonl"
    config = f'[audit]\npath = "{path}"\n[providers.local]\n'
    with spawn_ratd(config, tmp_path) as ratd:
        async with grpc.aio.insecure_channel(ratd.address) as channel:
            stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
            await stub.ListPresets(models_pb2.ListPresetsRequest())
            await _until(lambda: path.exists() and "ListPresets" in path.read_text())
            rotated = tmp_path / "audit.jsonl.1"
            path.rename(rotated)
            if sig == signal.SIGHUP:  # a reload that changes something, audited by name
                conf = tmp_path / "config.toml"
                conf.write_text(conf.read_text() + '[validation]\nparameter_policy = "error"\n')
            ratd.process.send_signal(sig)
            await _until(path.exists)
            await stub.ListPresets(models_pb2.ListPresetsRequest())
            await _until(lambda: "ListPresets" in path.read_text())
    old, new = lines(rotated), lines(path)
    assert [r["rpc"] for r in old] == ["ListPresets"]
    assert [r["rpc"] for r in new if r["event"] == "call"] == ["ListPresets"]
    if sig == signal.SIGHUP:
        admin = [r for r in new + old if r["event"] == "admin"]
        assert admin and admin[0]["args"]["trigger"] == "SIGHUP"  # type: ignore[index]
        assert admin[0]["status"] == "OK"
        assert admin[0]["args"]["changed"] == ["validation"]  # type: ignore[index]


async def _until(check: object, tries: int = 500) -> None:
    """Wait (by polling, not by the clock) until ``check()`` holds."""
    import asyncio

    for _ in range(tries):
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never held")


async def test_records_exported_as_otlp_logs(upstream: FakeOpenAIUpstream, tmp_path: Path) -> None:
    """[audit] otlp_logs: the same records reach the tracing collector as OTLP log
    records (attributes ratatoskr.audit.*), still without the text."""
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc

    received: list[logs_service_pb2.ExportLogsServiceRequest] = []

    class Collector(logs_service_pb2_grpc.LogsServiceServicer):
        async def Export(self, request, context):  # type: ignore[no-untyped-def]
            received.append(request)
            return logs_service_pb2.ExportLogsServiceResponse()

    server = grpc.aio.server()
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    path = tmp_path / "audit.jsonl"
    extra = f'otlp_logs = true\n[tracing]\notlp_endpoint = "http://127.0.0.1:{port}"\n'
    config = make_config(audit_config(upstream, path, extra), env={"OPENAI_API_KEY": OPENAI_KEY})
    try:
        async with running_daemon(config) as daemon:
            async with grpc.aio.insecure_channel(daemon.address) as channel:
                stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
                await stub.Chat(chat(), metadata=(USER,))
        # ratd flushed the export when it stopped.
        await _until(lambda: bool(received))
    finally:
        await server.stop(None)
    records = [
        r
        for e in received
        for rl in e.resource_logs
        for sl in rl.scope_logs
        for r in sl.log_records
    ]
    assert len(records) == 1
    attributes = {a.key: a.value for a in records[0].attributes}
    assert attributes["ratatoskr.audit.rpc"].string_value == "Chat"
    assert attributes["ratatoskr.audit.user"].string_value == "alice@example.org"
    assert attributes["ratatoskr.audit.provider"].string_value == "openai"
    assert attributes["ratatoskr.audit.tokens_out"].int_value > 0
    assert records[0].body.string_value == "ratatoskr audit call Chat"
    exported = b"".join(e.SerializeToString() for e in received)
    assert PROMPT.encode() not in exported and TEXT.encode() not in exported
    assert [r["rpc"] for r in lines(path)] == ["Chat"]


def test_otlp_logs_need_tracing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="otlp_logs needs"):
        make_config(f'[audit]\npath = "{tmp_path / "a.jsonl"}"\notlp_logs = true\n')


async def test_http_door_calls_are_audited(upstream: FakeOpenAIUpstream, tmp_path: Path) -> None:
    import aiohttp

    from tests.support.openai_door import base_url, door_daemon

    path = tmp_path / "audit.jsonl"
    async with (
        door_daemon(upstream, f'[audit]\npath = "{path}"\n') as daemon,
        aiohttp.ClientSession() as session,
    ):
        body = {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": PROMPT}]}
        async with session.post(
            base_url(daemon) + "/chat/completions",
            json=body,
            headers={"X-Ratatoskr-User": "bob"},
        ) as reply:
            assert reply.status == 200
    (record,) = lines(path)
    assert record["user"] == "bob" and record["status"] == "OK"
    assert record["provider"] == "openai" and record["tokens_in"]
    assert PROMPT not in path.read_text()


def test_a_symbolic_link_at_the_path_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.jsonl"
    target.write_text("")
    link = tmp_path / "audit.jsonl"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="cannot open"):
        AuditLog(AuditConfig(path=str(link)))


async def test_a_reload_moves_the_audit_log(tmp_path: Path) -> None:
    """A reload that changes [audit] path: the lines before stay in the old file, the
    reload's own record and the calls after go to the new one."""
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    with spawn_ratd(f'[audit]\npath = "{old}"\n[providers.local]\n', tmp_path) as ratd:
        async with grpc.aio.insecure_channel(ratd.address) as channel:
            stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
            admin = admin_pb2_grpc.AdminServiceStub(channel)
            await stub.ListPresets(models_pb2.ListPresetsRequest())
            conf = tmp_path / "config.toml"
            conf.write_text(conf.read_text().replace(str(old), str(new)))
            reloaded = await admin.ReloadConfig(admin_pb2.ReloadConfigRequest())
            assert reloaded.reloaded, reloaded.message
            await stub.ListPresets(models_pb2.ListPresetsRequest())
    assert [r["rpc"] for r in lines(old)] == ["ListPresets"]
    records = lines(new)
    assert [r["rpc"] for r in records] == ["ReloadConfig", "ListPresets"]
    assert records[0]["args"] == {"trigger": "rpc", "changed": ["audit"]}


async def test_tenants_and_refused_callers_are_audited(
    upstream: FakeOpenAIUpstream, tmp_path: Path
) -> None:
    """With API keys: a call names its tenant; a wrong key and a missing role are
    audited too (who knocked, with which user, what they got), never with the key."""
    import hashlib

    key = "rat_test-audit-acme-5e6f7a8b9c"
    wrong = "rat_test-audit-wrong-0a1b2c3d"
    path = tmp_path / "audit.jsonl"
    extra = f"""[auth]
mode = "api_key"
[tenants.acme]
api_key_sha256 = ["{hashlib.sha256(key.encode()).hexdigest()}"]
roles = ["inference"]
"""
    config = make_config(audit_config(upstream, path, extra), env={"OPENAI_API_KEY": OPENAI_KEY})
    async with running_daemon(config) as daemon:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            stub = ratatoskr_pb2_grpc.RatatoskrStub(channel)
            admin = admin_pb2_grpc.AdminServiceStub(channel)
            good = (("authorization", f"Bearer {key}"), USER)
            await stub.Chat(chat(), metadata=good)
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await stub.Chat(chat(), metadata=(("authorization", f"Bearer {wrong}"), USER))
            assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await admin.ReloadConfig(admin_pb2.ReloadConfigRequest(), metadata=good)
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    text = path.read_text()
    assert key not in text and wrong not in text
    ok, refused, no_role = lines(path)
    assert (ok["tenant"], ok["user"], ok["status"]) == ("acme", "alice@example.org", "OK")
    assert (refused["tenant"], refused["user"]) == ("", "alice@example.org")
    assert (refused["rpc"], refused["status"]) == ("Chat", "UNAUTHENTICATED")
    assert (no_role["rpc"], no_role["status"]) == ("ReloadConfig", "PERMISSION_DENIED")
    assert no_role["event"] == "admin"
