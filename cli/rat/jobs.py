"""``rat jobs`` and ``rat batch``: long-running jobs through google.longrunning.Operations.

rat batch items.jsonl            # one BatchItem per line, as JSON; prints the job's name
rat jobs                         # the caller's jobs, newest first
rat jobs wait batch-1f2e...      # until done; then the state
rat jobs result batch-1f2e...    # one JSON line per item
rat jobs cancel|delete|get NAME
rat video "a squirrel on an ash tree" -o clip.mp4   # starts, waits, writes the video
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from google.longrunning import operations_proto_pb2 as operations_pb2
from google.protobuf import json_format

from rat import output
from rat.output import print_json, table, to_dict
from ratatoskr import ServiceClient, batch_result, job_metadata, video_result
from ratatoskr.v1 import jobs_pb2

ACTIONS = ("list", "get", "wait", "cancel", "delete", "result")


class JobsUsageError(Exception):
    """Bad input to ``rat jobs`` / ``rat batch`` (exit code 2)."""


def full_name(name: str) -> str:
    """``batch-1f2e...`` or ``operations/batch-1f2e...``."""
    return name if name.startswith("operations/") else f"operations/{name}"


def state_name(state: int) -> str:
    return jobs_pb2.JobState.Name(state).removeprefix("JOB_STATE_").lower()


def _row(operation: operations_pb2.Operation) -> tuple[str, ...]:
    meta = job_metadata(operation)
    done = meta.completed + meta.failed
    count = f"{done}/{meta.total}" if meta.total else "-"
    error = operation.error.message if operation.HasField("error") else ""
    return (
        operation.name.removeprefix("operations/"),
        meta.kind,
        state_name(meta.state),
        f"{100 * meta.progress:.0f}%",
        count,
        str(meta.failed),
        output.when(meta.create_time),
        meta.tenant or "-",
        error or meta.display_name,
    )


_HEADERS = ("JOB", "KIND", "STATE", "PROGRESS", "ITEMS", "FAILED", "CREATED", "TENANT", "NOTE")


def _show(operation: operations_pb2.Operation, as_json: bool) -> None:
    if as_json:
        print_json(operation)
    else:
        table([_row(operation)], _HEADERS)


async def jobs(client: ServiceClient, args: argparse.Namespace) -> None:
    action = args.action
    if action == "list":
        done = True if args.done else False if args.running else None
        operations, token = [], ""
        while True:
            page = await client.list_operations(done=done, page_token=token)
            operations.extend(page.operations)
            token = page.next_page_token
            if not token:
                break
        if args.json:
            print_json({"operations": [to_dict(op) for op in operations]})
        else:
            table([_row(op) for op in operations], _HEADERS)
        return
    if not args.name:
        raise JobsUsageError(f"rat jobs {action} needs a job name")
    name = full_name(args.name)
    if action == "get":
        _show(await client.get_operation(name), args.json)
    elif action == "wait":
        operation = await client.wait_operation(name, wait=args.wait)
        _show(operation, args.json)
        if not operation.done:
            raise SystemExit(4)  # still running when the wait ran out
    elif action == "cancel":
        await client.cancel_operation(name)
        _show(await client.get_operation(name), args.json)
    elif action == "delete":
        await client.delete_operation(name)
        if not args.json:
            print(f"deleted {name}")
    else:
        _print_results(await client.get_operation(name), args.output)


def _print_results(operation: operations_pb2.Operation, output_path: str | None = None) -> None:
    """One JSON line per item of a finished batch; a video job's video written to
    ``output_path`` (its size, type and uri printed)."""
    if operation.HasField("error"):
        raise JobsUsageError(f"{operation.name} failed: {operation.error.message}")
    if not operation.done:
        raise JobsUsageError(f"{operation.name} is still running (rat jobs wait)")
    if job_metadata(operation).kind == "video":
        _write_videos(video_result(operation).videos, output_path)
        return
    for item in batch_result(operation).results:
        sys.stdout.write(json.dumps(to_dict(item), ensure_ascii=False) + "\n")


def _write_videos(videos: Any, output_path: str | None) -> None:
    for i, video in enumerate(videos):
        path = ""
        if video.data and output_path:
            path = output_path if i == 0 else f"{output_path}.{i}"
            with open(path, "wb") as file:
                file.write(video.data)
        info = {"mime_type": video.mime_type, "bytes": len(video.data), "uri": video.uri}
        sys.stdout.write(json.dumps({**info, "written_to": path}) + "\n")
    if output_path is None and any(video.data for video in videos):
        sys.stderr.write("rat: pass -o FILE to write the video\n")


async def video(client: ServiceClient, args: argparse.Namespace) -> None:
    prompt = " ".join(args.prompt).strip()
    if not prompt:
        raise JobsUsageError("no prompt given")
    started = await client.generate_video(prompt, model=args.model or "", display_name="")
    if args.no_wait:
        if args.json:
            print_json(started)
        else:
            print(started.name.removeprefix("operations/"))
        return
    sys.stderr.write(f"rat: {started.name.removeprefix('operations/')} started; waiting\n")
    operation = await client.wait_operation(started.name)
    if args.json:
        print_json(job_metadata(operation))
    _print_results(operation, args.output)


def read_items(path: str) -> list[jobs_pb2.BatchItem]:
    """BatchItems, one JSON object a line (``-``: stdin); blank lines skipped."""
    try:
        lines = sys.stdin.readlines() if path == "-" else open(path).readlines()  # noqa: SIM115
    except OSError as err:
        raise JobsUsageError(f"cannot read {path}: {err.strerror}") from None
    items = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data: Any = json.loads(line)
            items.append(json_format.ParseDict(data, jobs_pb2.BatchItem()))
        except (ValueError, json_format.ParseError) as err:
            raise JobsUsageError(f"{path}:{number}: not a batch item: {err}") from None
    return items


async def batch(client: ServiceClient, args: argparse.Namespace) -> None:
    items = read_items(args.file)
    started = await client.submit_batch(
        items,
        concurrency=args.concurrency or 0,
        display_name=args.name or "",
        provider=args.provider or "",
    )
    if args.wait:
        operation = await client.wait_operation(started.name)
        if args.json:
            print_json(operation)
        else:
            _print_results(operation)
        return
    if args.json:
        print_json(started)
    else:
        print(started.name.removeprefix("operations/"))


def add_parsers(add: Any) -> None:
    """``add(name, help)`` makes a subcommand parser (rat.main's)."""
    p = add("jobs", "long-running jobs: list, get, wait, cancel, delete, result")
    p.add_argument("action", nargs="?", default="list", choices=ACTIONS)
    p.add_argument("name", nargs="?", help="the job (batch-... or operations/batch-...)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--done", action="store_true", help="list: finished jobs only")
    which.add_argument("--running", action="store_true", help="list: running jobs only")
    p.add_argument("--wait", type=float, help="wait: give up after this many seconds")
    p.add_argument("-o", "--output", help="result of a video job: write the video here")
    p = add("batch", "submit a batch job: BatchItem JSON lines (chat or embed requests)")
    p.add_argument("file", help="the JSON lines file (- for stdin)")
    p.add_argument("--concurrency", type=int, help="items at once (capped by the server)")
    p.add_argument("--name", help="a label for the job")
    p.add_argument(
        "--provider",
        help="run at this provider's batch API (kind openai, anthropic or google; up to 24 h)",
    )
    p.add_argument("--wait", action="store_true", help="wait and print the results")
    p = add("video", "generate a video (a job): waits and writes it with -o")
    p.add_argument("prompt", nargs="+")
    p.add_argument("-m", "--model", help="default: gemini-omni-flash-preview")
    p.add_argument("-o", "--output", help="where to write the video")
    p.add_argument("--no-wait", action="store_true", help="print the job's name and return")
