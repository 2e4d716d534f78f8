"""How one failed item of a batch is written, whichever runner ran it."""

from __future__ import annotations

from ratatoskr.v1 import jobs_pb2
from ratd import errors
from ratd.secrets import redact
from ratd.service.status import public_message, status_code


def failed_result(found: errors.GatewayError | str) -> jobs_pb2.BatchItemResult:
    """An item's error as a call's status would say it (a bug: INTERNAL with the id of
    the logged traceback)."""
    if isinstance(found, errors.GatewayError):
        error = jobs_pb2.BatchItemError(
            code=status_code(found).name, message=redact(public_message(found))
        )
    else:
        error = jobs_pb2.BatchItemError(
            code="INTERNAL", message=f"internal error in ratd (request {found})"
        )
    return jobs_pb2.BatchItemResult(error=error)
