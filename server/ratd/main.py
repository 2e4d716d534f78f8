"""``ratd``: the command line of the daemon."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

from ratd import __version__
from ratd.config import Config, ConfigError, load_config
from ratd.logs import setup_logging
from ratd.secrets import SecretsError
from ratd.trust import exposure


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ratd",
        description="Ratatoskr, the gRPC LLM gateway daemon.",
        epilog="`ratd keys new TENANT` makes a caller API key (see [tenants] in the config); "
        "`ratd probe` asks a running ratd for its gRPC health (exit 0: serving).",
    )
    parser.add_argument("--config", type=Path, help="config file (TOML)")
    parser.add_argument("--secrets", type=Path, help="secrets file with API keys (mode 600)")
    parser.add_argument(
        "--default-config",
        action="store_true",
        help="ignore config files on disk and use the embedded default",
    )
    parser.add_argument("--check-config", action="store_true", help="validate the config and exit")
    parser.add_argument("--address", help="listen here instead of [server] address")
    parser.add_argument("--ready-file", type=Path, help="write the bound address here once serving")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--version", action="version", version=f"ratd {__version__}")
    return parser


def _summary(config: Config) -> str:
    server = config.server
    transport = "mutual TLS" if server.tls_client_ca_file else "TLS" if server.tls_cert_file else ""
    listen = f"{server.address} ({transport})" if transport else server.address
    lines = [f"config OK: {config.source}", f"  listen: {listen}"]
    lines.append(f"  auth: {config.auth.mode}, {len(config.tenants)} tenants")
    for name, provider in sorted(config.providers.items()):
        key = "key set" if config.api_key(name) else "no key"
        lines.append(f"  provider {name} ({provider.kind}): {provider.base_url} [{key}]")
    if (local := config.local) is not None:
        lines.append(f"  provider local: device {local.device}, {local.ram_budget_mb} MB budget")
    return "\n".join(lines)


def read_config(args: argparse.Namespace) -> Config:
    """The config from the files (or the embedded default), with the command-line
    overrides on top; called again on every reload."""
    config = load_config(args.config, args.secrets, use_embedded=args.default_config)
    if args.address or args.log_level:
        server = dataclasses.replace(
            config.server,
            address=args.address or config.server.address,
            log_level=args.log_level or config.server.log_level,
        )
        config = dataclasses.replace(config, server=server)
    exposure(config)  # refuses an exposed daemon (ConfigError) unless allowed
    return config


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keys"]:
        from ratd.keys import main as keys_main

        return keys_main(argv[1:])
    if argv[:1] == ["probe"]:
        from ratd.probe import main as probe_main

        return probe_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        config = read_config(args)
    except (ConfigError, SecretsError) as err:
        print(f"ratd: {err}", file=sys.stderr)
        return 2
    if args.check_config:
        try:  # the interceptors import and build as the daemon would
            from ratd.core.interceptors import load_chain

            load_chain(config.interceptors)
        except ConfigError as err:
            print(f"ratd: {err}", file=sys.stderr)
            return 2
        print(_summary(config))
        return 0
    setup_logging(config.server.log_level, config.server.log_format)
    serve = _serve(config, args.ready_file, lambda: read_config(args))
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve)
    return uvloop.run(serve)


async def _serve(config: Config, ready_file: Path | None, reread: Callable[[], Config]) -> int:
    from ratd.server import Daemon  # the server stack loads only when serving

    try:  # what only the daemon opens (the audit file, interceptors) may still be refused
        daemon = Daemon(config, ready_file=ready_file, reread=reread, own_process=True)
    except ConfigError as err:
        print(f"ratd: {err}", file=sys.stderr)
        return 2
    return await daemon.run()


if __name__ == "__main__":
    sys.exit(main())
