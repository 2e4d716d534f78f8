"""The standard ``google.longrunning.Operations`` service over ratd's jobs.

Every RPC passes the call guard (admission, time limit, metrics, error statuses) and
answers only about the caller's own jobs (``JobManager`` decides). WaitOperation waits
at most its ``timeout``, and never past the call's own deadline: it then answers the
operation as it is (``done`` false), not DEADLINE_EXCEEDED.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc
from google.longrunning import operations_pb2_grpc
from google.longrunning import operations_proto_pb2 as operations_pb2
from google.protobuf import empty_pb2

from ratd.core.access import CALLER
from ratd.jobs.manager import JobManager
from ratd.service.decoding import DecodingServer
from ratd.service.guard import CallGuard

Context: TypeAlias = grpc.aio.ServicerContext
SERVICE_NAME = "google.longrunning.Operations"
# Left of the call's own deadline for the answer to get back (seconds).
_WAIT_MARGIN = 0.5


class OperationsService(operations_pb2_grpc.OperationsServicer):
    def __init__(self, guard: CallGuard, jobs: JobManager) -> None:
        self.guard = guard
        self.jobs = jobs

    async def GetOperation(
        self, request: operations_pb2.GetOperationRequest, context: Context
    ) -> operations_pb2.Operation:
        async def get() -> operations_pb2.Operation:
            return await self.jobs.get(request.name, CALLER.get())

        return await self.guard.unary(context, "GetOperation", lambda _: get())

    async def ListOperations(
        self, request: operations_pb2.ListOperationsRequest, context: Context
    ) -> operations_pb2.ListOperationsResponse:
        async def listed() -> operations_pb2.ListOperationsResponse:
            return await self.jobs.list(
                CALLER.get(), request.filter, request.page_size, request.page_token
            )

        return await self.guard.unary(context, "ListOperations", lambda _: listed())

    async def CancelOperation(
        self, request: operations_pb2.CancelOperationRequest, context: Context
    ) -> empty_pb2.Empty:
        async def cancel() -> empty_pb2.Empty:
            await self.jobs.cancel(request.name, CALLER.get())
            return empty_pb2.Empty()

        return await self.guard.unary(context, "CancelOperation", lambda _: cancel())

    async def DeleteOperation(
        self, request: operations_pb2.DeleteOperationRequest, context: Context
    ) -> empty_pb2.Empty:
        async def delete() -> empty_pb2.Empty:
            await self.jobs.delete(request.name, CALLER.get())
            return empty_pb2.Empty()

        return await self.guard.unary(context, "DeleteOperation", lambda _: delete())

    async def WaitOperation(
        self, request: operations_pb2.WaitOperationRequest, context: Context
    ) -> operations_pb2.Operation:
        limit = max(0.0, self.guard.request_timeout - _WAIT_MARGIN)
        remaining = context.time_remaining()
        if remaining is not None:
            limit = min(limit, max(0.0, remaining - _WAIT_MARGIN))
        if request.HasField("timeout"):
            limit = min(limit, request.timeout.ToTimedelta().total_seconds())

        async def wait() -> operations_pb2.Operation:
            return await self.jobs.wait(request.name, CALLER.get(), max(0.0, limit))

        return await self.guard.unary(context, "WaitOperation", lambda _: wait())


def add_to_server(service: OperationsService, server: DecodingServer) -> None:
    """Register the service's handlers by method (googleapis-common-protos' generated
    ``add_OperationsServicer_to_server`` predates by-method registration and only adds a
    generic handler, which ``DecodingServer`` would not wrap)."""
    ops = operations_pb2
    shapes: dict[str, tuple[Any, Any]] = {
        "GetOperation": (ops.GetOperationRequest, ops.Operation),
        "ListOperations": (ops.ListOperationsRequest, ops.ListOperationsResponse),
        "CancelOperation": (ops.CancelOperationRequest, empty_pb2.Empty),
        "DeleteOperation": (ops.DeleteOperationRequest, empty_pb2.Empty),
        "WaitOperation": (ops.WaitOperationRequest, ops.Operation),
    }
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(service, name),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
        for name, (request, response) in shapes.items()
    }
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
