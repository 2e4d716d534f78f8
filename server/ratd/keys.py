"""``ratd keys new TENANT``: a fresh caller key, printed once, and the config line that
makes ratd accept it. ratd itself only ever sees the key's SHA-256."""

from __future__ import annotations

import argparse
import hashlib
import re
import secrets
import sys

# Recognisable in a leaked paste or a secret scanner's rules.
PREFIX = "rat_"
_TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ratd keys", description="caller API keys")
    sub = parser.add_subparsers(dest="action", required=True)
    new = sub.add_parser("new", help="make a new key for a tenant; prints it once")
    new.add_argument("tenant", help="the [tenants.NAME] it belongs to")
    args = parser.parse_args(argv)
    if not _TENANT.match(args.tenant):
        print("ratd keys: a tenant name is letters, digits, '_', '.', '-'", file=sys.stderr)
        return 2
    key = new_key()
    print(f"# API key of tenant {args.tenant}. Shown only now: hand it to the caller")
    print("# (rat --api-key / RATD_API_KEY / ServiceClient.connect(api_key=...)).")
    print(key)
    print("# ratd's config (to rotate, add the hash beside the old one, remove that later):")
    print(f"[tenants.{args.tenant}]")
    print(f'api_key_sha256 = ["{key_sha256(key)}"]')
    return 0
