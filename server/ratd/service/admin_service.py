"""The ``ratatoskr.v1.AdminService``: local model management and config reload."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from ratd import errors
from ratd.service.guard import CallGuard
from ratatoskr.v1 import admin_pb2, admin_pb2_grpc

Context = grpc.aio.ServicerContext


async def _unavailable(what: str) -> None:
    raise errors.NotImplementedYet(f"{what} is not available in this version of ratd")


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, guard: CallGuard) -> None:
        self.guard = guard

    async def ListLoadedModels(
        self, request: admin_pb2.ListLoadedModelsRequest, context: Context
    ) -> admin_pb2.ListLoadedModelsResponse:
        await self.guard.unary(context, "ListLoadedModels", lambda: _unavailable("local models"))
        return admin_pb2.ListLoadedModelsResponse()

    async def LoadModel(
        self, request: admin_pb2.LoadModelRequest, context: Context
    ) -> admin_pb2.LoadModelResponse:
        await self.guard.unary(context, "LoadModel", lambda: _unavailable("local models"))
        return admin_pb2.LoadModelResponse()

    async def UnloadModel(
        self, request: admin_pb2.UnloadModelRequest, context: Context
    ) -> admin_pb2.UnloadModelResponse:
        await self.guard.unary(context, "UnloadModel", lambda: _unavailable("local models"))
        return admin_pb2.UnloadModelResponse()

    async def DownloadModel(
        self, request: admin_pb2.DownloadModelRequest, context: Context
    ) -> AsyncIterator[admin_pb2.DownloadModelResponse]:
        await self.guard.unary(context, "DownloadModel", lambda: _unavailable("model downloads"))
        yield admin_pb2.DownloadModelResponse()

    async def ReloadConfig(
        self, request: admin_pb2.ReloadConfigRequest, context: Context
    ) -> admin_pb2.ReloadConfigResponse:
        await self.guard.unary(context, "ReloadConfig", lambda: _unavailable("config reload"))
        return admin_pb2.ReloadConfigResponse()
