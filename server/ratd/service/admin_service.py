"""The ``ratatoskr.v1.AdminService``: local model management and config reload."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeAlias

import grpc

from ratatoskr.v1 import admin_pb2, admin_pb2_grpc
from ratd.service.guard import CallGuard

Context: TypeAlias = grpc.aio.ServicerContext


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, guard: CallGuard, reload: Callable[[], Awaitable[tuple[bool, str]]]) -> None:
        self.guard = guard
        self.reload = reload

    async def ListLoadedModels(
        self, request: admin_pb2.ListLoadedModelsRequest, context: Context
    ) -> admin_pb2.ListLoadedModelsResponse:
        models = await self.guard.unary(context, "ListLoadedModels", lambda gw: gw.list_loaded())
        return admin_pb2.ListLoadedModelsResponse(models=models)

    async def LoadModel(
        self, request: admin_pb2.LoadModelRequest, context: Context
    ) -> admin_pb2.LoadModelResponse:
        model = await self.guard.unary(
            context,
            "LoadModel",
            lambda gw: gw.load_model(request.model, request.pin),
            action={"model": request.model, "pin": request.pin},
        )
        return admin_pb2.LoadModelResponse(model=model)

    async def UnloadModel(
        self, request: admin_pb2.UnloadModelRequest, context: Context
    ) -> admin_pb2.UnloadModelResponse:
        unloaded = await self.guard.unary(
            context,
            "UnloadModel",
            lambda gw: gw.unload_model(request.model),
            action={"model": request.model},
        )
        return admin_pb2.UnloadModelResponse(unloaded=unloaded)

    async def DownloadModel(
        self, request: admin_pb2.DownloadModelRequest, context: Context
    ) -> AsyncIterator[admin_pb2.DownloadModelResponse]:
        async for progress in self.guard.stream(
            context,
            "DownloadModel",
            lambda gw: gw.download_model(request.model, request.revision),
            action={"model": request.model, "revision": request.revision},
        ):
            yield progress

    async def ReloadConfig(
        self, request: admin_pb2.ReloadConfigRequest, context: Context
    ) -> admin_pb2.ReloadConfigResponse:
        reloaded, message = await self.guard.unary(
            context, "ReloadConfig", lambda _: self.reload(), action={"trigger": "rpc"}
        )
        return admin_pb2.ReloadConfigResponse(reloaded=reloaded, message=message)
