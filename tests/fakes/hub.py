"""A fake HuggingFace Hub on loopback: the endpoints ``huggingface_hub`` uses to download
a model repository (model info with file metadata, HEAD and GET of resolve URLs), serving
files from directories on disk. Tests point ``[providers.local] hub_endpoint`` at it; the
real Hub is never contacted.

``requests`` records (method, path) of every request; ``corrupt_sha256`` advertises a
wrong LFS checksum for a file, to test verification; ``understate_size`` lists files whose
size the model info understates (a Hub that lies, to test the cap while downloading).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from aiohttp import web

LFS_MIN_BYTES = 1024  # files this large are served as LFS files (with a sha256), like the Hub


@dataclass
class FakeRepo:
    directory: Path
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    corrupt_sha256: set[str] = field(default_factory=set)
    understate_size: set[str] = field(default_factory=set)

    def files(self) -> list[str]:
        return sorted(
            str(p.relative_to(self.directory)) for p in self.directory.rglob("*") if p.is_file()
        )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git_sha(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[tuple[str, str]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, repo_id: str, directory: Path, **options: object) -> FakeRepo:
        repo = FakeRepo(directory, **options)  # type: ignore[arg-type]
        self.repos[repo_id] = repo
        return repo

    def downloads(self) -> list[str]:
        return [path for method, path in self.requests if method == "GET" and "/resolve/" in path]

    # -- handlers --------------------------------------------------------------------------

    def _repo(self, request: web.Request) -> FakeRepo:
        repo_id = f"{request.match_info['org']}/{request.match_info['name']}"
        repo = self.repos.get(repo_id)
        if repo is None:
            raise web.HTTPNotFound(
                headers={"X-Error-Code": "RepoNotFound"}, text='{"error":"Repository not found"}'
            )
        return repo

    def _check_revision(self, repo: FakeRepo, revision: str) -> None:
        if revision not in ("main", repo.commit):
            raise web.HTTPNotFound(
                headers={"X-Error-Code": "RevisionNotFound"}, text='{"error":"Invalid rev id"}'
            )

    async def model_info(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path))
        repo = self._repo(request)
        revision = request.match_info.get("revision", "main")
        self._check_revision(repo, revision)
        siblings = []
        for name in repo.files():
            path = repo.directory / name
            size = 100 if name in repo.understate_size else path.stat().st_size
            entry: dict[str, object] = {"rfilename": name, "size": size, "blobId": _git_sha(path)}
            if path.stat().st_size >= LFS_MIN_BYTES:
                sha = "0" * 64 if name in repo.corrupt_sha256 else _sha256(path)
                entry["lfs"] = {"sha256": sha, "size": size, "pointerSize": 134}
            siblings.append(entry)
        repo_id = f"{request.match_info['org']}/{request.match_info['name']}"
        return web.json_response(
            {
                "_id": "x",
                "id": repo_id,
                "modelId": repo_id,
                "sha": repo.commit,
                "private": False,
                "siblings": siblings,
            }
        )

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        repo = self._repo(request)
        self._check_revision(repo, request.match_info["revision"])
        name = request.match_info["path"]
        path = repo.directory / name
        if not path.is_file():
            raise web.HTTPNotFound(
                headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.commit}
            )
        size = path.stat().st_size
        lfs = size >= LFS_MIN_BYTES
        etag = _sha256(path) if lfs else _git_sha(path)
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{etag}"', "Content-Length": str(size)}
        if lfs:
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(size)
        if request.method == "HEAD":
            return web.Response(status=200, headers=headers)
        response = web.StreamResponse(status=200, headers=headers)
        await response.prepare(request)
        with path.open("rb") as f:
            while chunk := f.read(64 * 1024):
                await response.write(chunk)
        await response.write_eof()
        return response

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> Self:
        app = web.Application()
        app.router.add_get("/api/models/{org}/{name}", self.model_info)
        app.router.add_get("/api/models/{org}/{name}/revision/{revision}", self.model_info)
        # add_get serves HEAD too.
        app.router.add_get("/{org}/{name}/resolve/{revision}/{path:.+}", self.resolve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
