"""The call-control subcommands of `voicecall`: call, continue, speak, end, status, list, tail, latency."""

from __future__ import annotations

import argparse
import json
from contextlib import aclosing

import grpc

from voicecall_client.cli_base import EXIT_FAILURE, EXIT_OK, Command, CommandContext, message_to_json
from voicecall_client.cli_format import format_event, latency_report
from voicecall_client.errors import VoiceCallError
from voicecall_client.v1 import voicecall_service_pb2 as pb


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _call_id(p: argparse.ArgumentParser, *, required: bool = True, help: str = "the call's id") -> None:
    p.add_argument(
        "--call-id", "-c", required=required, default="", help=help + " (or the provider's call id)"
    )


def _message(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--message", "-m", required=True, help=help)


# --- call -------------------------------------------------------------------------------------------


def _call_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", "-t", default="", help="number to call in E.164 (default: the server's toNumber)")
    _message(p, "what to say when the call is answered")
    p.add_argument(
        "--mode",
        choices=("notify", "conversation"),
        default=None,
        help="notify speaks once and hangs up; conversation keeps the call open "
        "(default: the server's outbound.defaultMode)",
    )
    p.add_argument("--session-key", default="", help="an opaque key stored on the call")
    p.add_argument("--request-id", default=None, help="idempotency key; repeating it never dials twice")


async def _call(ctx: CommandContext) -> int:
    a = ctx.args
    resp = await ctx.client().initiate_call(
        a.to, a.message, mode=a.mode, session_key=a.session_key, request_id=a.request_id
    )
    ctx.out({"callId": resp.call_id})
    return EXIT_OK


# --- continue / speak / end -------------------------------------------------------------------------


def _continue_args(p: argparse.ArgumentParser) -> None:
    _call_id(p)
    _message(p, "what to say before listening")
    p.add_argument(
        "--timeout",
        dest="turn_timeout",
        type=_positive_float,
        metavar="SECONDS",
        default=None,
        help="seconds to wait for the caller (default: the server's transcriptTimeoutMs)",
    )


async def _continue(ctx: CommandContext) -> int:
    a = ctx.args
    resp = await ctx.client().continue_call(a.call_id, a.message, timeout=a.turn_timeout)
    ctx.out({"success": True, "transcript": resp.transcript})
    return EXIT_OK


def _speak_args(p: argparse.ArgumentParser) -> None:
    _call_id(p)
    _message(p, "what to say")


async def _speak(ctx: CommandContext) -> int:
    await ctx.client().speak(ctx.args.call_id, ctx.args.message)
    ctx.out({"success": True})
    return EXIT_OK


async def _end(ctx: CommandContext) -> int:
    await ctx.client().end_call(ctx.args.call_id)
    ctx.out({"success": True})
    return EXIT_OK


# --- status / list ----------------------------------------------------------------------------------


async def _status(ctx: CommandContext) -> int:
    try:
        call = await ctx.client().status(ctx.args.call_id)
    except VoiceCallError as err:
        if err.code != grpc.StatusCode.NOT_FOUND:
            raise
        ctx.out({"found": False})
        return EXIT_FAILURE
    ctx.out(message_to_json(call))
    return EXIT_OK


def _list_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--live", action="store_true", help="only calls that have not ended")
    p.add_argument("--limit", type=_positive_int, default=50, help="most calls to show (default 50)")


async def _list(ctx: CommandContext) -> int:
    limit: int = ctx.args.limit
    calls: list[pb.Call] = []
    async with aclosing(ctx.client().iter_calls(live_only=ctx.args.live, page_size=min(limit, 1000))) as it:
        async for call in it:
            calls.append(call)
            if len(calls) >= limit:
                break
    ctx.out([message_to_json(c) for c in calls])
    return EXIT_OK


# --- tail -------------------------------------------------------------------------------------------


def _tail_args(p: argparse.ArgumentParser) -> None:
    _call_id(p, required=False, help="only this call (default: all calls)")
    p.add_argument(
        "--since",
        type=_non_negative_int,
        default=0,
        help="resume after this event sequence (default 0: from the beginning of the log)",
    )
    p.add_argument("--json", action="store_true", help="one compact JSON object per event")


async def _tail(ctx: CommandContext) -> int:
    a = ctx.args
    client = ctx.client()
    # Fail fast with the usual error line when the server is down or refuses us; once the
    # stream has been reachable, drops are retried in the background and only reported.
    await client.list_calls(page_size=1)

    last_notice = ""

    def on_retry(err: VoiceCallError, delay: float) -> None:
        # While the server stays down the same failure repeats every few seconds: say it once.
        nonlocal last_notice
        notice = f"tail: {_retry_reason(err, ctx.server)}; reconnecting"
        if notice != last_notice:
            ctx.err(f"{notice} in {delay:.1f} s")
            last_notice = notice

    async with aclosing(client.tail(a.call_id, a.since, on_retry=on_retry)) as events:
        async for event in events:
            last_notice = ""
            if a.json:
                line = json.dumps(message_to_json(event), separators=(",", ":"), ensure_ascii=False)
            else:
                line = format_event(event)
            print(line, flush=True)
    return EXIT_OK


def _retry_reason(err: VoiceCallError, server: str) -> str:
    if err.code == grpc.StatusCode.UNAVAILABLE and not err.reason:
        why = "connection refused" if "connection refused" in err.message.lower() else err.message
        return f"UNAVAILABLE: cannot reach {server} ({why})"
    return str(err)


# --- latency ----------------------------------------------------------------------------------------


def _latency_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--last", type=_positive_int, default=200, help="how many recent turns (default 200)")


async def _latency(ctx: CommandContext) -> int:
    wanted: int = ctx.args.last
    turns: list[pb.TurnLatency] = []
    scanned = 0
    async with aclosing(ctx.client().iter_calls(page_size=100)) as it:
        async for call in it:
            scanned += 1
            # Calls come newest first and each call's turns oldest first: walk turns backwards.
            for turn in reversed(call.turn_latencies):
                turns.append(turn)
                if len(turns) >= wanted:
                    break
            if len(turns) >= wanted:
                break
    ctx.out(latency_report(scanned, turns))
    return EXIT_OK


COMMANDS: list[Command] = [
    Command(
        "call",
        "place an outbound call",
        'voicecall call --to +15551234567 --message "Your order is ready" --mode notify',
        _call_args,
        _call,
        description='Places a call and prints {"callId": "..."}.',
    ),
    Command(
        "continue",
        "speak, then wait for the caller's reply",
        'voicecall continue --call-id 3f2a9c1e-... --message "Anything else?" --timeout 30',
        _continue_args,
        _continue,
        description="Speaks a message, waits for the caller's next final utterance and prints "
        '{"success": true, "transcript": "..."}.',
    ),
    Command(
        "speak",
        "say something without waiting",
        'voicecall speak --call-id 3f2a9c1e-... --message "One moment please"',
        _speak_args,
        _speak,
    ),
    Command("end", "hang up a call", "voicecall end --call-id 3f2a9c1e-...", _call_id, _end),
    Command(
        "status",
        "show a call record",
        "voicecall status --call-id 3f2a9c1e-...",
        _call_id,
        _status,
        description='Prints the call record as JSON, or {"found": false} (exit 1) for an unknown call.',
    ),
    Command(
        "list",
        "list recent calls, newest first",
        "voicecall list --live --limit 10",
        _list_args,
        _list,
    ),
    Command(
        "tail",
        "follow call events live",
        "voicecall tail --call-id 3f2a9c1e-... --since 120 --json",
        _tail_args,
        _tail,
        description="Prints the event log, then follows it live until Ctrl-C. Resume a previous "
        "tail with --since <last sequence seen>.",
        interrupt_exit=EXIT_OK,
    ),
    Command(
        "latency",
        "per-turn latency statistics",
        "voicecall latency --last 100",
        _latency_args,
        _latency,
        description="Turn latency and listen wait (min, max, average, nearest-rank p50/p95) over the "
        "most recent turns, and for auto-responded turns each stage from the end of the caller's "
        "speech (stt_final, model, tts_first_byte, first_audio, spoken: count, p50, p95).",
    ),
]
