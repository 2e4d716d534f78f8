"""``rat``: talk to a running ratd from a shell.

rat health
rat chat "hello" -m openai/gpt-4o-mini
echo "some text" | rat embed   # the local all-MiniLM-L6-v2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from rat import jobs as jobs_cli
from rat import media, output
from rat.output import Dim, print_json, table, to_dict
from ratatoskr import ChatOptions, GenerateOptions, Message, ServiceClient, errors
from ratatoskr.address import DEFAULT_ADDRESS
from ratatoskr.v1 import inference_pb2, models_pb2

Handler = Callable[[ServiceClient, argparse.Namespace], Awaitable[None]]
COMMANDS: dict[str, Handler] = {}

DEFAULT_EMBED_MODEL = "ratatoskr:free/embedding"
DEFAULT_NLI_MODEL = "ratatoskr:free/nli"
DEFAULT_TOKENS_MODEL = "ratatoskr:free/tokens"


class UsageError(Exception):
    """Bad command-line input (exit code 2)."""


class CommandFailed(Exception):
    """ratd answered, but the command did not do what was asked (exit code 1)."""


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn

    return register


def text_argument(values: list[str] | str | None, what: str) -> str:
    """The text from the arguments, or from stdin when none (or "-") is given."""
    if isinstance(values, list):
        values = " ".join(values) if values else None
    if values is None or values == "-":
        if sys.stdin.isatty():
            raise UsageError(f"no {what} given (pass it as an argument or on stdin)")
        values = sys.stdin.read()
        if values.endswith("\n"):
            values = values[:-1]
    return values


# -- commands -----------------------------------------------------------------------------


@command("health")
async def health(client: ServiceClient, args: argparse.Namespace) -> None:
    reply = await client.health()
    if args.json:
        print_json(reply)
        return
    sha = f" (git {reply.git_sha[:12]})" if reply.HasField("git_sha") else ""
    state = "healthy" if reply.healthy else "NOT healthy"
    print(f"ratd {reply.version}{sha} at {args.address}: {state}")
    if reply.HasField("state_backend_up") and not reply.state_backend_up:
        print("state backend (Redis): DOWN; limits and budgets follow state.on_unavailable")
    if not reply.healthy:
        raise SystemExit(3)


@command("models")
async def models(client: ServiceClient, args: argparse.Namespace) -> None:
    found = await client.list_models(args.provider or "")
    if args.json:
        print_json({"models": [to_dict(m) for m in found]})
        return
    rows = [
        (
            m.provider,
            m.id,
            str(m.context_window) if m.HasField("context_window") else "-",
            *output.prices(m.pricing if m.HasField("pricing") else None),
            output.capability_names(m.capabilities),
            output.retirement(m),
        )
        for m in found
    ]
    headers = ("PROVIDER", "MODEL", "CONTEXT", "IN/MTOK", "OUT/MTOK", "CAPABILITIES", "RETIREMENT")
    table(rows, headers)


@command("status")
async def status(client: ServiceClient, args: argparse.Namespace) -> None:
    reply = await client.model_status(args.model)
    if args.json:
        print_json(reply)
        return
    name = models_pb2.ModelStatus.Name(reply.status).removeprefix("MODEL_STATUS_").lower()
    reason = f": {reply.reason}" if reply.HasField("reason") else ""
    print(f"{args.model}: {name}{reason}")


@command("metadata")
async def metadata(client: ServiceClient, args: argparse.Namespace) -> None:
    found = await (client.fetch_model_metadata if args.fetch else client.model_metadata)(args.model)
    if found is None:
        raise errors.ModelNotFound(f"ratd has no metadata for {args.model}")
    if args.json:
        print_json(found)
        return
    _print_model(found)
    rows = [_parameter_row(entry) for entry in found.parameters]
    if rows:
        print()
        table(rows, ("PARAMETER", "AVAILABILITY", "RANGE / VALUE"))


def _print_model(found: models_pb2.ModelMetadata) -> None:
    info = found.info
    print(f"model     {info.id}")
    print(f"provider  {info.provider}")
    if info.HasField("context_window"):
        print(f"context   {info.context_window} tokens")
    if info.HasField("dimensions"):
        print(f"dims      {info.dimensions}")
    if found.HasField("max_output_tokens"):
        print(f"output    {found.max_output_tokens} tokens max")
    if found.HasField("pricing"):
        price_in, price_out = output.prices(found.pricing)
        print(f"price     in {price_in} / out {price_out} per Mtok")
    print(f"caps      {output.capability_names(info.capabilities)}")
    if info.HasField("deprecation_date"):
        print(f"deprecated {info.deprecation_date}")
    if info.HasField("shutdown_date"):
        print(f"shutdown  {info.shutdown_date}")
    if info.HasField("replacement"):
        print(f"replace   with {info.replacement}")


def _parameter_row(entry: models_pb2.ParameterEntry) -> tuple[str, str, str]:
    kind = entry.availability.WhichOneof("kind") or "-"
    if kind == "mutable_range":
        r = entry.availability.mutable_range
        parts = [
            f"{label} {getattr(r, f):g}"
            for f, label in (("min", "min"), ("max", "max"), ("default_value", "default"))
            if r.HasField(f)
        ]
        return entry.name, "mutable", ", ".join(parts)
    if kind == "read_only_json":
        return entry.name, "read-only", entry.availability.read_only_json
    return entry.name, kind, ""


@command("presets")
async def presets(client: ServiceClient, args: argparse.Namespace) -> None:
    tiers = await client.list_presets()
    if args.json:
        print_json({"tiers": [to_dict(t) for t in tiers]})
        return
    for tier in tiers:
        print(f"{tier.tier}: {', '.join(tier.capabilities)}")


def _chat_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model": args.model,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "reasoning_effort": args.reasoning_effort,
    }


@command("chat")
async def chat(client: ServiceClient, args: argparse.Namespace) -> None:
    messages = [Message.system(args.system)] if args.system else []
    attached = [media.attachment(path) for path in args.file or ()]
    messages.append(Message.user(text_argument(args.message, "message"), parts=attached))
    options = ChatOptions(**_chat_options(args))
    if args.json or args.no_stream:
        reply = await client.chat(messages, options=options)
        if args.json:
            print_json(reply)
            return
        if reply.HasField("reasoning") and reply.reasoning:
            Dim(sys.stderr).write(reply.reasoning + "\n")
        print(reply.content)
        for call in reply.tool_calls:
            print(f"[tool call {call.id}] {call.name}({call.arguments})")
        return
    dim = Dim(sys.stderr)
    calls: dict[int, list[str]] = {}
    ended_with_newline = True
    async for event in client.chat_stream(messages, options=options):
        kind = event.WhichOneof("event")
        if kind == "content":
            sys.stdout.write(event.content)
            sys.stdout.flush()
            ended_with_newline = event.content.endswith("\n")
        elif kind == "reasoning":
            dim.write(event.reasoning)
        elif kind == "tool_call_start":
            calls[event.tool_call_start.index] = [
                event.tool_call_start.id,
                event.tool_call_start.name,
                "",
            ]
        elif kind == "tool_call_delta":
            calls[event.tool_call_delta.index][2] += event.tool_call_delta.arguments
        elif kind == "tool_call_end":
            call_id, name, arguments = calls[event.tool_call_end.index]
            prefix = "" if ended_with_newline else "\n"
            sys.stdout.write(f"{prefix}[tool call {call_id}] {name}({arguments})\n")
            ended_with_newline = True
    if not ended_with_newline:
        sys.stdout.write("\n")


command("image")(media.image)
command("transcribe")(media.transcribe)


@command("say")
async def say(client: ServiceClient, args: argparse.Namespace) -> None:
    await media.say(client, args, text_argument(args.text, "text"))


@command("generate")
async def generate(client: ServiceClient, args: argparse.Namespace) -> None:
    prompt = text_argument(args.prompt, "prompt")
    options = GenerateOptions(args.model, temperature=args.temperature, max_tokens=args.max_tokens)
    if args.json or args.no_stream:
        reply = await client.generate(prompt, options)
        if args.json:
            print_json(reply)
        else:
            print(reply.text)
        return
    ended_with_newline = True
    async for event in client.generate_stream(prompt, options):
        if event.WhichOneof("event") == "text":
            sys.stdout.write(event.text)
            sys.stdout.flush()
            ended_with_newline = event.text.endswith("\n")
        elif event.WhichOneof("event") == "reasoning":
            Dim(sys.stderr).write(event.reasoning)
    if not ended_with_newline:
        sys.stdout.write("\n")


@command("embed")
async def embed(client: ServiceClient, args: argparse.Namespace) -> None:
    texts = args.text or [text_argument(None, "text")]
    embeddings = await client.embed_batch(texts, args.model, dimensions=args.dimensions)
    for embedding in embeddings:
        if args.json:
            print_json(embedding)
        else:
            print("[" + ", ".join(f"{v:.6g}" for v in embedding.values) + "]")


def _scores(pairs: list[tuple[str, float]], top: str) -> None:
    width = max(len(label) for label, _ in pairs)
    for label, score in sorted(pairs, key=lambda p: -p[1]):
        marker = "  <-" if label == top else ""
        print(f"{label.ljust(width)}  {score:.4f}{marker}")


@command("nli")
async def nli(client: ServiceClient, args: argparse.Namespace) -> None:
    reply = await client.infer_nli(args.premise, args.hypothesis, args.model)
    if args.json:
        print_json(reply)
        return
    top = inference_pb2.NliLabel.Name(reply.label).removeprefix("NLI_LABEL_").lower()
    _scores(
        [
            ("entailment", reply.entailment),
            ("neutral", reply.neutral),
            ("contradiction", reply.contradiction),
        ],
        top,
    )


@command("classify")
async def classify(client: ServiceClient, args: argparse.Namespace) -> None:
    labels = [label.strip() for label in args.labels.split(",") if label.strip()]
    text = text_argument(args.text, "text")
    reply = await client.classify_zero_shot(
        text, labels, args.model, multi_label=args.multi_label or None
    )
    if args.json:
        print_json(reply)
        return
    _scores(list(reply.scores.items()), reply.top_label)


@command("stance")
async def stance(client: ServiceClient, args: argparse.Namespace) -> None:
    reply = await client.classify_stance(text_argument(args.text, "text"), args.target, args.model)
    if args.json:
        print_json(reply)
        return
    top = inference_pb2.StanceLabel.Name(reply.label).removeprefix("STANCE_LABEL_").lower()
    _scores([("favor", reply.favor), ("against", reply.against), ("neutral", reply.neutral)], top)


@command("tokens")
async def tokens(client: ServiceClient, args: argparse.Namespace) -> None:
    count = await client.count_tokens(text_argument(args.text, "text"), args.model)
    if args.json:
        print_json({"count": count})
    else:
        print(count)


@command("tokenize")
async def tokenize(client: ServiceClient, args: argparse.Namespace) -> None:
    found = await client.tokenize(text_argument(args.text, "text"), args.model)
    if args.json:
        print_json({"tokens": [to_dict(t) for t in found]})
        return
    for token in found:
        print(f"{token.id}\t{token.start}-{token.end}\t{token.text!r}")


@command("ps")
async def ps(client: ServiceClient, args: argparse.Namespace) -> None:
    loaded = await client.list_loaded()
    if args.json:
        print_json({"models": [to_dict(m) for m in loaded]})
        return
    rows = [
        (
            m.name,
            m.kind,
            models_pb2.ModelStatus.Name(m.status).removeprefix("MODEL_STATUS_").lower(),
            output.human_bytes(m.bytes),
            m.device,
            output.when(m.last_used),
            "pinned" if m.pinned else output.when(m.expires_at),
        )
        for m in loaded
    ]
    table(rows, ("NAME", "KIND", "STATUS", "SIZE", "DEVICE", "LAST USED", "UNTIL"))


@command("load")
async def load(client: ServiceClient, args: argparse.Namespace) -> None:
    model = await client.load_model(args.model, pin=args.pin)
    if args.json:
        print_json(model)
    else:
        print(f"loaded {model.name} on {model.device} ({output.human_bytes(model.bytes)})")


@command("reload")
async def reload(client: ServiceClient, args: argparse.Namespace) -> None:
    reply = await client.reload_config()
    if args.json:
        print_json(reply)
        return
    state = "reloaded" if reply.reloaded else "not reloaded"
    print(f"{state}: {reply.message}" if reply.message else state)
    if not reply.reloaded:
        raise CommandFailed("the config was not reloaded")


@command("usage")
async def usage(client: ServiceClient, args: argparse.Namespace) -> None:
    end = int(time.time()) if args.end is None else args.end
    start = end - int(args.hours * 3600)
    reply = await client.usage(
        tenant=args.tenant or "", start_unix=start, end_unix=end, group_by=args.by or ""
    )
    if args.json:
        print_json(reply)
        return
    split = (args.by.upper(),) if args.by else ()
    rows = [
        (
            r.tenant,
            *((r.key or "-",) if args.by else ()),
            str(r.requests),
            str(r.prompt_tokens),
            str(r.completion_tokens),
            f"{r.cost_usd:.6f}",
        )
        for r in reply.rows
    ]
    table(rows, ("TENANT", *split, "REQUESTS", "TOKENS IN", "TOKENS OUT", "COST USD"))


@command("unload")
async def unload(client: ServiceClient, args: argparse.Namespace) -> None:
    unloaded = await client.unload_model(args.model)
    if args.json:
        print_json({"unloaded": unloaded})
    else:
        print(f"unloaded {args.model}" if unloaded else f"{args.model} was not loaded")


@command("download")
async def download(client: ServiceClient, args: argparse.Namespace) -> None:
    last_path = ""
    async for progress in client.download_model(args.model, args.revision or ""):
        if args.json:
            print_json(progress)
            continue
        if progress.done:
            last_path = progress.path
            continue
        total = progress.total_bytes
        done = progress.downloaded_bytes
        bar = ""
        if total:
            filled = int(30 * done / total)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {100 * done / total:5.1f}% "
        sys.stderr.write(f"\r{bar}{output.human_bytes(done)} {progress.file}\x1b[K")
        sys.stderr.flush()
    if not args.json:
        sys.stderr.write("\n")
        print(f"downloaded {args.model} to {last_path}")


COMMANDS["jobs"] = jobs_cli.jobs
COMMANDS["batch"] = jobs_cli.batch
COMMANDS["video"] = jobs_cli.video


# -- argument parsing ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rat", description="Command line of the Ratatoskr gateway (ratd)."
    )
    parser.add_argument(
        "--address",
        default=os.environ.get("RATD_ADDRESS", DEFAULT_ADDRESS),
        help="ratd address: host:port or unix:/path (env RATD_ADDRESS; default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document per result")
    parser.add_argument("--timeout", type=float, help="deadline of each call in seconds")
    tls = parser.add_argument_group("TLS and caller credentials")
    tls.add_argument(
        "--tls-ca",
        default=os.environ.get("RATD_TLS_CA"),
        help="CA certificate (PEM) that signed ratd's: connect with TLS (env RATD_TLS_CA; "
        "an https:// address uses the system's CAs without it)",
    )
    tls.add_argument(
        "--tls-cert",
        default=os.environ.get("RATD_TLS_CERT"),
        help="client certificate (PEM) for mutual TLS (env RATD_TLS_CERT)",
    )
    tls.add_argument(
        "--tls-key",
        default=os.environ.get("RATD_TLS_KEY"),
        help="the client certificate's private key (env RATD_TLS_KEY)",
    )
    tls.add_argument(
        "--api-key",
        default=os.environ.get("RATD_API_KEY"),
        help="caller API key, sent as 'authorization: Bearer' (env RATD_API_KEY; prefer the "
        "environment: arguments show in the process list)",
    )
    # --json is accepted after the command too: `rat chat --json ...`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, parents=[common])

    def model_arg(p: argparse.ArgumentParser, default: str | None = None) -> None:
        if default is None:
            p.add_argument("-m", "--model", required=True)
        else:
            p.add_argument("-m", "--model", default=default, help=f"default: {default}")

    add("health", "is ratd up? version and health")
    p = add("models", "list models with provider, context, price and capabilities")
    p.add_argument("--provider")
    p = add("status", "status of one model")
    p.add_argument("model")
    p = add("metadata", "everything ratd knows of a model: context, prices, parameters")
    p.add_argument("model")
    p.add_argument("--fetch", action="store_true", help="ask the provider for fresh metadata")
    add("presets", "list the ratatoskr:<tier>/<capability> presets")
    for name, arg in (("chat", "message"), ("generate", "prompt")):
        p = add(name, f"{name} (streams by default; text from stdin when no {arg} is given)")
        p.add_argument(arg, nargs="*")
        model_arg(p)
        p.add_argument("--temperature", type=float)
        p.add_argument("--max-tokens", type=int)
        p.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
        if name == "chat":
            p.add_argument("--system", help="a system message")
            p.add_argument(
                "--file",
                action="append",
                metavar="FILE",
                help="attach a document (PDF), image, audio or video file (repeatable)",
            )
            p.add_argument(
                "--reasoning-effort", choices=("none", "minimal", "low", "medium", "high", "xhigh")
            )
    p = add("embed", "embeddings, one line per text")
    p.add_argument("text", nargs="*")
    p.add_argument(
        "--dimensions",
        type=int,
        help="a shorter vector (text-embedding-3, Gemini, Matryoshka local models)",
    )
    # The preset is the local all-MiniLM-L6-v2 unless the config points it elsewhere.
    model_arg(p, default=DEFAULT_EMBED_MODEL)
    p = add("nli", "natural language inference of a premise and a hypothesis")
    p.add_argument("premise")
    p.add_argument("hypothesis")
    # The preset is the local nli-deberta-v3-small unless the config points it elsewhere.
    model_arg(p, default=DEFAULT_NLI_MODEL)
    p = add("classify", "zero-shot classification")
    p.add_argument("text", nargs="?")
    p.add_argument("--labels", required=True, help="comma-separated labels")
    p.add_argument("--multi-label", action="store_true")
    model_arg(p)
    p = add("stance", "stance of a text toward a target")
    p.add_argument("text", nargs="?")
    p.add_argument("--target", required=True)
    model_arg(p)
    for name, help_text in (
        ("tokens", "count tokens"),
        ("tokenize", "tokens with ids and offsets"),
    ):
        p = add(name, help_text)
        p.add_argument("text", nargs="?")
        # The preset is the local o200k_base tokenizer (GPT-4o's) unless configured.
        model_arg(p, default=DEFAULT_TOKENS_MODEL)
    _usage_arguments(add("usage", "requests, tokens and cost of your tenant (admin: all)"))
    media.add_parsers(sub, common)
    add("reload", "reload the config file (AdminService.ReloadConfig), as SIGHUP does")
    add("ps", "local models the daemon holds")
    p = add("load", "load a local model now")
    p.add_argument("model")
    p.add_argument("--pin", action="store_true", help="keep it loaded")
    p = add("unload", "unload a local model")
    p.add_argument("model")
    p = add("download", "download a local model into the cache")
    p.add_argument("model")
    p.add_argument("--revision")
    jobs_cli.add_parsers(add)
    return parser


def _usage_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant", help="one tenant (another than your own needs role admin)")
    p.add_argument("--by", choices=("model", "provider", "user"), help="split the totals")
    p.add_argument("--hours", type=float, default=24.0, help="the window: the last N hours")
    p.add_argument("--end", type=int, help="the window's end, Unix seconds (default: now)")


async def _run(args: argparse.Namespace) -> None:
    try:
        client = await ServiceClient.connect(
            args.address,
            timeout=args.timeout,
            tls_ca=args.tls_ca,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            api_key=args.api_key or None,
        )
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot set up the connection: {err}") from None
    try:
        await COMMANDS[args.command](client, args)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_run(args))
    except errors.ConnectionFailed as err:
        hint = ""
        if not (args.tls_ca or args.tls_cert or args.address.startswith("https://")):
            hint = " (if ratd serves TLS: an https:// address or --tls-ca)"
        print(f"rat: cannot reach ratd at {args.address}: {err.message}{hint}", file=sys.stderr)
        return output.exit_code(err)
    except errors.RatatoskrError as err:
        print(f"rat: {output.describe_error(err)}", file=sys.stderr)
        return output.exit_code(err)
    except media.MediaUsageError as err:
        print(f"rat: {err}", file=sys.stderr)
        return 2
    except (UsageError, jobs_cli.JobsUsageError) as err:
        print(f"rat: {err}", file=sys.stderr)
        return 2
    except CommandFailed as err:
        print(f"rat: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
