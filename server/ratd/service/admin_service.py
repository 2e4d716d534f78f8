"""The ``ratatoskr.v1.AdminService``: local model management and config reload."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc

from ratatoskr.v1 import admin_pb2, admin_pb2_grpc
from ratd import errors
from ratd.core.gateway import Gateway
from ratd.service.guard import CallGuard

Context: TypeAlias = grpc.aio.ServicerContext


async def _reload_unavailable() -> admin_pb2.ReloadConfigResponse:
    raise errors.NotImplementedYet("config reload is not available in this version of ratd")


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, gateway: Gateway, guard: CallGuard) -> None:
        self.gateway = gateway
        self.guard = guard

    async def ListLoadedModels(
        self, request: admin_pb2.ListLoadedModelsRequest, context: Context
    ) -> admin_pb2.ListLoadedModelsResponse:
        models = await self.guard.unary(context, "ListLoadedModels", self.gateway.list_loaded)
        return admin_pb2.ListLoadedModelsResponse(models=models)

    async def LoadModel(
        self, request: admin_pb2.LoadModelRequest, context: Context
    ) -> admin_pb2.LoadModelResponse:
        model = await self.guard.unary(
            context, "LoadModel", lambda: self.gateway.load_model(request.model, request.pin)
        )
        return admin_pb2.LoadModelResponse(model=model)

    async def UnloadModel(
        self, request: admin_pb2.UnloadModelRequest, context: Context
    ) -> admin_pb2.UnloadModelResponse:
        unloaded = await self.guard.unary(
            context, "UnloadModel", lambda: self.gateway.unload_model(request.model)
        )
        return admin_pb2.UnloadModelResponse(unloaded=unloaded)

    async def DownloadModel(
        self, request: admin_pb2.DownloadModelRequest, context: Context
    ) -> AsyncIterator[admin_pb2.DownloadModelResponse]:
        async for progress in self.guard.stream(
            context,
            "DownloadModel",
            lambda: self.gateway.download_model(request.model, request.revision),
        ):
            yield progress

    async def ReloadConfig(
        self, request: admin_pb2.ReloadConfigRequest, context: Context
    ) -> admin_pb2.ReloadConfigResponse:
        return await self.guard.unary(context, "ReloadConfig", _reload_unavailable)
