"""``ratd probe``: asks a ratd for its ``grpc.health.v1`` status, for container health
checks (Docker ``HEALTHCHECK``) and anything else that wants an exit status. Exit 0 when
SERVING, 1 when it answers anything else (starting, draining), 2 when it cannot be
reached. Kubernetes needs no binary: its native ``grpc:`` probes ask the same service."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ratd probe", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--address", default="127.0.0.1:9741", help="host:port or unix:/path of the ratd"
    )
    parser.add_argument("--service", default="", help='the health service name ("": overall)')
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for it")
    parser.add_argument(
        "--tls-ca", type=Path, help="TLS: the CA that signed ratd's certificate (PEM)"
    )
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.tls_ca is not None:
        credentials = grpc.ssl_channel_credentials(args.tls_ca.read_bytes())
        channel = grpc.secure_channel(args.address, credentials)
    else:
        channel = grpc.insecure_channel(args.address)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as err:
            print(
                f"ratd probe: {args.address}: {err.code().name}: {err.details()}", file=sys.stderr
            )
            return 2
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{args.address}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1
