"""Building and running the clients' conformance programs (client/<language>/) for
tests/test_clients.py.

Each language says what it needs on the machine (``client/toolchains.sh`` installs it in
``make test``), how to build its program into a directory, and the command that runs it.
Builds are cached under ``.cache/clients/<language>/<key>/``: the key hashes every file
the build reads (proto/, the buf templates, client/<language>/) and the toolchain's
version, so a rebuild happens only when one of them changed. C++, Java and Ruby stubs are
generated into the build directory by buf from the same templates as ``make stubs``
(filtered to the language's plugins); Go and TypeScript build from the committed stubs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "clients"
BUF = ("npx", "--yes", "@bufbuild/buf@1.75.0")
TEMPLATES = (REPO / "buf.gen.yaml", REPO / "client" / "proto-deps" / "buf.gen.yaml")
# Installs and outputs inside client/<language>/ that never key a build (plus gen/ for the
# languages whose stubs are generated at build time: `make stubs` output, not sources).
IGNORED_PARTS = frozenset({"node_modules", "dist"})


class BuildError(RuntimeError):
    """A build step failed; the message holds its output."""


def run(command: Sequence[str], *, cwd: Path = REPO, env: dict[str, str] | None = None) -> str:
    """Run a build step; its output on success, BuildError with the output otherwise."""
    result = subprocess.run(
        list(command),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def buf_templates(language: str, dest: Path) -> list[str]:
    """The buf templates (as JSON) that generate ``language``'s stubs into ``dest``.

    Taken from buf.gen.yaml and client/proto-deps/buf.gen.yaml with only the plugins whose
    ``out`` lies under client/<language>/, so a build needs only its own plugins."""
    prefix = f"client/{language}/"
    templates = []
    for path in TEMPLATES:
        template = yaml.safe_load(path.read_text())
        plugins = [
            {**plugin, "out": str(dest)}
            for plugin in template["plugins"]
            if str(plugin["out"]).startswith(prefix)
        ]
        if plugins:
            templates.append(json.dumps({**template, "plugins": plugins}))
    return templates


def generate(language: str, dest: Path) -> None:
    """Generate ``language``'s stubs into ``dest`` with buf, as ``make stubs`` does."""
    dest.mkdir(parents=True, exist_ok=True)
    for template in buf_templates(language, dest):
        run([*BUF, "generate", "--template", template])


def _files(patterns: Iterable[str], ignored: frozenset[str]) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        for path in REPO.glob(pattern):
            relative = path.relative_to(REPO)
            if path.is_file() and not ignored.intersection(relative.parts[2:]):
                found.add(path)
    return sorted(found)


@dataclass(frozen=True)
class Built:
    """A built conformance program: where, how long the build took (0 when cached)."""

    directory: Path
    seconds: float
    cached: bool


@dataclass(frozen=True)
class Language:
    name: str
    # Executables on PATH and files that must exist (installed by client/toolchains.sh).
    tools: tuple[str, ...]
    files: tuple[str, ...] = ()
    # A command that must succeed (libraries that have no one file to look for).
    probe: tuple[str, ...] = ()
    # A command whose output fingerprints the toolchain (part of the cache key).
    version: tuple[str, ...] = ()
    generated_at_build: bool = False
    build_steps: Callable[[Path], None] = field(default=lambda out: None)
    command_for: Callable[[Path], list[str]] = field(default=lambda out: [])

    @property
    def source(self) -> Path:
        return REPO / "client" / self.name

    def unavailable(self) -> str | None:
        """Why this language cannot build here, or None when it can."""
        needs = [*self.tools, *(("npx",) if self.generated_at_build else ())]
        missing = [tool for tool in needs if shutil.which(tool) is None]
        missing += [path for path in self.files if not Path(path).exists()]
        if not missing and self.probe:
            result = subprocess.run(self.probe, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                first_line = (result.stderr.strip().splitlines() or ["no output"])[0]
                missing.append(f"`{' '.join(self.probe)}` failed: {first_line[:300]}")
        if missing:
            return (
                f"{self.name} toolchain missing ({'; '.join(missing)}): "
                "`make clients-toolchains` installs it"
            )
        return None

    def key(self) -> str:
        digest = hashlib.sha256()
        patterns = ["proto/**/*.proto", f"client/{self.name}/**/*"]
        if self.generated_at_build or self.name == "typescript":
            patterns += ["buf.gen.yaml", "client/proto-deps/**/*"]
        ignored = IGNORED_PARTS | ({"gen"} if self.generated_at_build else set())
        for path in _files(patterns, ignored):
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
        if self.version:
            digest.update(run(self.version).encode())
        return digest.hexdigest()[:16]

    def build(self) -> Built:
        """The program built for the current sources, from the cache when it is there."""
        key = self.key()
        root = CACHE / self.name
        out = root / key
        if (out / "built").exists():
            return Built(out, 0.0, cached=True)
        if root.exists():  # an older build of this language
            shutil.rmtree(root)
        staging = root / f"{key}.tmp"
        staging.mkdir(parents=True)
        start = time.monotonic()
        if self.generated_at_build:
            generate(self.name, staging / "gen")
        self.build_steps(staging)
        staging.rename(out)
        (out / "built").write_text(key)
        return Built(out, time.monotonic() - start, cached=False)

    def command(self, built: Built) -> list[str]:
        return self.command_for(built.directory)


def _go_build(out: Path) -> None:
    # Go's build cache is content-addressed: sharing it makes a rebuild after an edit fast.
    run(["sh", "client/go/build.sh", str(out)], env={"GOCACHE": str(CACHE / "go-build")})


def _typescript_build(out: Path) -> None:
    ts = REPO / "client" / "typescript"
    run(
        [
            str(ts / "node_modules" / ".bin" / "tsc"),
            "-p",
            str(ts / "tsconfig.json"),
            "--outDir",
            str(out / "dist"),
        ]
    )
    # Node resolves the packages and the module type from beside the compiled files.
    (out / "package.json").write_text('{"type": "module"}\n')
    (out / "node_modules").symlink_to(ts / "node_modules")


def _cpp_build(out: Path) -> None:
    run(
        [
            "make",
            "-s",
            "-C",
            "client/cpp",
            f"-j{os.cpu_count() or 2}",
            f"GEN={out / 'gen'}",
            f"OUT={out}",
        ]
    )


def _java_build(out: Path) -> None:
    run(["sh", "client/java/build.sh", str(out / "gen"), str(out)])


def _java_command(out: Path) -> list[str]:
    jars = (out / "classpath.txt").read_text().strip()
    return ["java", "-cp", f"{out / 'classes'}:{jars}", "ratatoskr.client.Conformance"]


LANGUAGES: dict[str, Language] = {
    language.name: language
    for language in (
        Language(
            "go",
            tools=("go", "protoc-gen-go", "protoc-gen-go-grpc", "npx"),
            files=(
                "/usr/share/gocode/src/google.golang.org/grpc/health/grpc_health_v1",
                "/usr/share/gocode/src/google.golang.org/genproto/googleapis/rpc/errdetails",
                "/usr/share/gocode/src/google.golang.org/protobuf/proto",
            ),
            version=("go", "version"),
            build_steps=_go_build,
            command_for=lambda out: [str(out / "conformance")],
        ),
        Language(
            "typescript",
            tools=("node", "npx"),
            files=(str(REPO / "client/typescript/node_modules/@connectrpc/connect-node"),),
            version=("node", "--version"),
            build_steps=_typescript_build,
            command_for=lambda out: ["node", str(out / "dist" / "conformance.js")],
        ),
        Language(
            "cpp",
            tools=("g++", "make", "pkg-config", "protoc", "grpc_cpp_plugin"),
            probe=("pkg-config", "--exists", "grpc++", "protobuf"),
            version=("dpkg-query", "-W", "libgrpc++-dev", "libprotobuf-dev", "g++"),
            generated_at_build=True,
            build_steps=_cpp_build,
            command_for=lambda out: [str(out / "conformance")],
        ),
        Language(
            "java",
            tools=("javac", "java", "protoc", "grpc_java_plugin"),
            files=("/usr/share/java/grpc-netty.jar", "/usr/share/java/protobuf.jar"),
            version=(
                "dpkg-query",
                "-W",
                "libgrpc-java",
                "libprotobuf-java",
                "default-jdk-headless",
            ),
            generated_at_build=True,
            build_steps=_java_build,
            command_for=_java_command,
        ),
        Language(
            "ruby",
            tools=("ruby", "protoc", "grpc_ruby_plugin"),
            probe=("ruby", "-e", 'require "grpc"; require "google/rpc/error_details_pb"'),
            version=(
                "dpkg-query",
                "-W",
                "ruby-grpc",
                "ruby-google-protobuf",
                "ruby-googleapis-common-protos-types",
            ),
            generated_at_build=True,
            command_for=lambda out: [
                "ruby",
                "-I",
                str(out / "gen"),
                "-I",
                str(REPO / "client" / "ruby" / "lib"),
                str(REPO / "client" / "ruby" / "conformance.rb"),
            ],
        ),
    )
}


CONFORMANCE_SOURCES = {
    "go": REPO / "client/go/cmd/conformance/main.go",
    "typescript": REPO / "client/typescript/src/conformance.ts",
    "cpp": REPO / "client/cpp/conformance.cc",
    "java": REPO / "client/java/src/ratatoskr/client/Conformance.java",
    "ruby": REPO / "client/ruby/conformance.rb",
}


def doc_regions(path: Path) -> list[str]:
    """The pieces of a conformance program between ``docs:begin`` and ``docs:end`` comment
    lines, dedented: docs/clients.md shows each verbatim, and a test keeps it so."""
    regions: list[str] = []
    current: list[str] | None = None
    for line in path.read_text().splitlines(keepends=True):
        marker = line.strip().lstrip("/#").strip()
        if marker == "docs:begin":
            current = []
        elif marker == "docs:end" and current is not None:
            regions.append(textwrap.dedent("".join(current)))
            current = None
        elif current is not None:
            current.append(line)
    return regions


if __name__ == "__main__":  # python -m tests.support.clients LANGUAGE: build, print the command
    built = LANGUAGES[sys.argv[1]].build()
    print(" ".join(LANGUAGES[sys.argv[1]].command(built)))
