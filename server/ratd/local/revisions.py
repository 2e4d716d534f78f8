"""Which Hub revision a DownloadModel caller may name, and how large a download may be.

A revision travels into Hub URLs (``/api/models/REPO/revision/REV``, ``/REPO/resolve/REV/
FILE``), so it must never carry a path: only letters, digits, ``.``, ``_`` and ``-``, no
``..``, no leading ``-`` or ``.`` (``..%2F..`` and ``main/../x`` are refused before any
request). Beyond the character set, a caller may name a 40-hex commit (immutable, what a
pin is), a tag or branch listed in ``providers.local.allowed_revisions``, or anything if
it is an authenticated admin (with auth on, AdminService already requires the admin role).
"""

from __future__ import annotations

import re
from collections.abc import Collection

from ratd import errors

COMMIT = re.compile(r"[0-9a-f]{40}")
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_revision(revision: str, allowed: Collection[str], *, admin: bool) -> None:
    """Raise unless the caller may download ``revision`` (empty: the configured pin)."""
    if not revision:
        return
    if not _SAFE.fullmatch(revision) or ".." in revision:
        raise errors.InvalidInput(
            f"revision: {revision[:100]!r} is not a Hub revision (a 40-hex commit, or a tag "
            "or branch of letters, digits, . _ - with no .. or /)",
            field="revision",
        )
    if COMMIT.fullmatch(revision) or revision in allowed or admin:
        return
    raise errors.RoleRequired(
        f"revision: {revision} is neither a 40-hex commit nor in "
        "providers.local.allowed_revisions; only an authenticated admin may name other "
        "revisions",
        role="admin",
    )


class DownloadTooLarge(errors.InvalidInput):
    """The model's files are larger than ``providers.local.max_download_mb``."""


def too_large(where: str, size: int, limit_mb: int, *, received: bool) -> DownloadTooLarge:
    seen = "received" if received else "listed by the Hub"
    return DownloadTooLarge(
        f"{where}: {size} bytes {seen}, more than a download may be "
        f"(providers.local.max_download_mb = {limit_mb})",
        field="model",
    )
