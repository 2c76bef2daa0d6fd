"""More `voicecall` subcommands: dtmf (press keys on a call), smoke (an end-to-end test call) and
completion (a bash or zsh completion script generated from the argparse tree, so plugin commands
are included).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shlex
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass

from voicecall_client.cli_base import EXIT_FAILURE, EXIT_OK, Command, CommandContext
from voicecall_client.cli_format import format_event, format_time
from voicecall_client.tool import DTMF_PATTERN
from voicecall_client.v1 import voicecall_service_pb2 as pb

_DTMF = re.compile(DTMF_PATTERN)

TERMINAL_STATES = frozenset(
    {
        pb.CALL_STATE_COMPLETED,
        pb.CALL_STATE_HANGUP_USER,
        pb.CALL_STATE_HANGUP_BOT,
        pb.CALL_STATE_TIMEOUT,
        pb.CALL_STATE_ERROR,
        pb.CALL_STATE_FAILED,
        pb.CALL_STATE_NO_ANSWER,
        pb.CALL_STATE_BUSY,
        pb.CALL_STATE_VOICEMAIL,
    }
)
# A smoke call "completed" when it was answered and ended by either side hanging up normally.
COMPLETED_STATES = frozenset({pb.CALL_STATE_COMPLETED, pb.CALL_STATE_HANGUP_BOT, pb.CALL_STATE_HANGUP_USER})
SMOKE_MESSAGE = "This is a voicecall smoke test. Everything works. Goodbye."


# --- dtmf -------------------------------------------------------------------------------------------


def _digits(text: str) -> str:
    if not _DTMF.match(text):
        raise argparse.ArgumentTypeError(
            f"expected 1-64 of 0-9 * # A-D and w (a half-second wait), got {text!r}"
        )
    return text


def _dtmf_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--call-id", "-c", required=True, help="the call's id (or the provider's call id)")
    p.add_argument(
        "--digits", "-d", required=True, type=_digits, help="keys to press: 0-9 * # A-D, w = half-second wait"
    )


async def _dtmf(ctx: CommandContext) -> int:
    await ctx.client().send_dtmf(ctx.args.call_id, ctx.args.digits)
    ctx.out({"success": True})
    return EXIT_OK


# --- smoke ------------------------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _smoke_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", "-t", required=True, help="number to call in E.164, e.g. your own phone")
    p.add_argument(
        "--message", "-m", default=SMOKE_MESSAGE, help="what the call says (default: a short notice)"
    )
    p.add_argument("--yes", "-y", action="store_true", help="really place the call (default: a dry run)")
    p.add_argument(
        "--max-wait",
        type=_positive_float,
        default=180.0,
        metavar="SECONDS",
        help="hang up and fail if the call has not ended after this long (default 180)",
    )


async def _smoke(ctx: CommandContext) -> int:
    a = ctx.args
    client = ctx.client()
    # Reachability (and the token/TLS settings) first, in both modes: ListCalls has no side effect.
    live = await client.list_calls(live_only=True, page_size=100)
    if not a.yes:
        ctx.out(
            {
                "dryRun": True,
                "server": ctx.server,
                "serverReachable": True,
                "liveCalls": len(live.calls),
                "wouldCall": {"to": a.to, "mode": "notify", "message": a.message},
                "next": "run again with --yes to place this call and follow it to its end",
            }
        )
        return EXIT_OK
    resp = await client.initiate_call(a.to, a.message, mode="notify", session_key="voicecall-smoke")
    call_id = resp.call_id
    ctx.err(f"smoke: placed call {call_id} to {a.to}; following it (Ctrl-C hangs up)")
    events = 0
    try:
        async with asyncio.timeout(a.max_wait):
            async with aclosing(client.tail(call_id)) as stream:
                async for event in stream:
                    events += 1
                    ctx.err(f"smoke: {format_event(event)}")
                    if (
                        event.WhichOneof("kind") == "state_changed"
                        and event.state_changed.state in TERMINAL_STATES
                    ):
                        break
    except TimeoutError:
        ctx.err(f"smoke: the call did not end within {a.max_wait:g} s; hanging up")
        await client.end_call(call_id)
    except asyncio.CancelledError:
        # Ctrl-C: do not leave a phone ringing behind us.
        await asyncio.shield(client.end_call(call_id))
        raise
    call = await client.status(call_id)
    summary = _summary(call, events)
    ctx.out(summary)
    return EXIT_OK if summary["completed"] else EXIT_FAILURE


def _summary(call: pb.Call, events: int) -> dict[str, object]:
    answered = call.HasField("answer_time")
    out: dict[str, object] = {
        "callId": call.call_id,
        "to": call.to_number,
        "provider": call.provider,
        "state": pb.CallState.Name(call.state),
        "endReason": pb.EndReason.Name(call.end_reason),
        "answered": answered,
        "completed": answered and call.state in COMPLETED_STATES,
        "events": events,
        "botSaid": [t.text for t in call.transcript if t.speaker == pb.SPEAKER_BOT and t.is_final],
    }
    if answered and call.HasField("end_time"):
        seconds = (call.end_time.ToNanoseconds() - call.answer_time.ToNanoseconds()) / 1e9
        out["answeredSeconds"] = round(seconds, 1)
    if call.HasField("end_time"):
        out["endTime"] = format_time(call.end_time)
    return out


# --- completion -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Opt:
    flags: tuple[str, ...]
    help: str
    takes_value: bool
    choices: tuple[str, ...]
    is_file: bool


@dataclass(frozen=True)
class _Sub:
    name: str
    help: str
    options: tuple[_Opt, ...]
    words: tuple[str, ...]  # choices of positional arguments


def _options(parser: argparse.ArgumentParser) -> tuple[tuple[_Opt, ...], tuple[str, ...]]:
    opts: list[_Opt] = []
    words: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        choices = tuple(str(c) for c in action.choices) if action.choices is not None else ()
        if not action.option_strings:
            words.extend(choices)
            continue
        metavar = action.metavar
        opts.append(
            _Opt(
                flags=tuple(action.option_strings),
                help=" ".join((action.help or "").split()) if action.help != argparse.SUPPRESS else "",
                takes_value=action.nargs != 0,
                choices=choices,
                is_file=isinstance(metavar, str) and "FILE" in metavar,
            )
        )
    return tuple(opts), tuple(words)


def _tree(parser: argparse.ArgumentParser) -> tuple[tuple[_Opt, ...], tuple[_Sub, ...]]:
    globals_, _ = _options(parser)
    subs: list[_Sub] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {c.dest: str(c.help or "") for c in action._choices_actions}
            for name, sub in action.choices.items():
                opts, words = _options(sub)
                subs.append(_Sub(name, helps.get(name, ""), opts, words))
    return globals_, tuple(subs)


def _bash_case(options: Sequence[_Opt], words: Sequence[str]) -> list[str]:
    lines = ['            case "$prev" in']
    free: list[str] = []  # options whose value cannot be guessed: offer nothing rather than noise
    for opt in options:
        if not opt.takes_value:
            continue
        if opt.choices:
            action = f'COMPREPLY=($(compgen -W {shlex.quote(" ".join(opt.choices))} -- "$cur"))'
        elif opt.is_file:
            action = 'COMPREPLY=($(compgen -f -- "$cur"))'
        else:
            free.extend(opt.flags)
            continue
        lines.append(f"                {'|'.join(opt.flags)}) {action}; return 0 ;;")
    if free:
        lines.append(f"                {'|'.join(free)}) COMPREPLY=(); return 0 ;;")
    lines.append("            esac")
    flags = " ".join(f for o in options for f in o.flags)
    lines.append(f"            opts={shlex.quote(flags)}; words={shlex.quote(' '.join(words))} ;;")
    return lines


def bash_script(parser: argparse.ArgumentParser) -> str:
    globals_, subs = _tree(parser)
    prog = parser.prog
    fn = "_" + re.sub(r"\W", "_", prog)
    skip = "|".join(f for o in globals_ if o.takes_value for f in o.flags) or "--"
    lines = [
        f"# bash completion for {prog} (generated by `{prog} completion bash`).",
        f"# Load it now with: source <({prog} completion bash), or save it in a bash-completion directory.",
        f"{fn}() {{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" cmd="" opts="" words="" i',
        '    (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"',
        "    for (( i = 1; i < COMP_CWORD; i++ )); do",
        '        case "${COMP_WORDS[i]}" in',
        f"            {skip}) (( i++ )) ;;",
        "            -*) ;;",
        '            *) cmd="${COMP_WORDS[i]}"; break ;;',
        "        esac",
        "    done",
        '    case "$cmd" in',
        '        "")',
        *_bash_case(globals_, [s.name for s in subs]),
    ]
    for sub in subs:
        lines.append(f"        {sub.name})")
        lines.extend(_bash_case(sub.options, sub.words))
    lines += [
        "        *) return 0 ;;",
        "    esac",
        '    if [[ "$cur" == -* || -z "$words" ]]; then',
        '        COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
        "    else",
        '        COMPREPLY=($(compgen -W "$words" -- "$cur"))',
        "    fi",
        "}",
        f"complete -F {fn} {prog}",
    ]
    return "\n".join(lines) + "\n"


def _zq(text: str) -> str:
    """A zsh single-quoted word."""
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_desc(text: str) -> str:
    # A bracket would end an _arguments description early.
    return text.replace("[", "(").replace("]", ")")


def _zsh_specs(options: Sequence[_Opt], words: Sequence[str]) -> list[str]:
    specs: list[str] = []
    for opt in options:
        desc = _zsh_desc(opt.help)
        value = ""
        if opt.takes_value:
            action = "_files" if opt.is_file else (f"({' '.join(opt.choices)})" if opt.choices else " ")
            value = f":{opt.flags[0].lstrip('-')}:{action}"
        if len(opt.flags) == 1:
            specs.append(_zq(f"{opt.flags[0]}[{desc}]{value}"))
        else:
            exclusive = f"({' '.join(opt.flags)})"
            specs.append(_zq(exclusive) + "{" + ",".join(opt.flags) + "}" + _zq(f"[{desc}]{value}"))
    if words:
        specs.append(_zq(f"1:choice:({' '.join(words)})"))
    return specs


def zsh_script(parser: argparse.ArgumentParser) -> str:
    globals_, subs = _tree(parser)
    prog = parser.prog
    fn = "_" + re.sub(r"\W", "_", prog)
    lines = [
        f"#compdef {prog}",
        f"# zsh completion for {prog} (generated by `{prog} completion zsh`).",
        f"# Load it now with: source <({prog} completion zsh), or save it as {fn} on your $fpath.",
        f"{fn}() {{",
        "    local curcontext=$curcontext state line",
        "    local -a commands",
        "    commands=(",
        *(f"        {_zq(s.name + ':' + _zsh_desc(s.help))}" for s in subs),
        "    )",
        "    _arguments -C \\",
        *(f"        {spec} \\" for spec in _zsh_specs(globals_, ())),
        "        '1: :->command' \\",
        "        '*:: :->args'",
        "    case $state in",
        f"        command) _describe -t commands {_zq(prog + ' command')} commands ;;",
        "        args)",
        "            case $words[1] in",
    ]
    for sub in subs:
        specs = " ".join(_zsh_specs(sub.options, sub.words))
        lines.append(f"                {sub.name}) _arguments {specs} ;;")
    lines += [
        "            esac ;;",
        "    esac",
        "}",
        "if [[ $zsh_eval_context[-1] == loadautofunc ]]; then",
        f'    {fn} "$@"',
        "else",
        f"    compdef {fn} {prog}",
        "fi",
    ]
    return "\n".join(lines) + "\n"


SHELLS = {"bash": bash_script, "zsh": zsh_script}


def _completion_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=sorted(SHELLS), help="the shell to complete for")


async def _completion(ctx: CommandContext) -> int:
    # Imported here: cli.py imports this module for its command table.
    from voicecall_client.cli import build_parser

    print(SHELLS[ctx.args.shell](build_parser()), end="", flush=True)
    return EXIT_OK


COMMANDS: list[Command] = [
    Command(
        "dtmf",
        "press phone keys on a live call",
        'voicecall dtmf --call-id 3f2a9c1e-... --digits "ww123#"',
        _dtmf_args,
        _dtmf,
        description="Plays touch tones on a connected call, e.g. to get through a phone menu; w waits "
        'half a second. Prints {"success": true}.',
    ),
    Command(
        "smoke",
        "test call end to end (dry run unless --yes)",
        "voicecall smoke --to +15551234567 --yes",
        _smoke_args,
        _smoke,
        description="Without --yes: checks the sidecar is reachable and prints the call it would "
        "place. With --yes: places a short notify call, prints its events on stderr as they happen "
        "and a JSON summary on stdout; exits 0 only if the call was answered and ended normally.",
    ),
    Command(
        "completion",
        "print a shell completion script",
        "source <(voicecall completion bash)    # zsh: source <(voicecall completion zsh)",
        _completion_args,
        _completion,
        description="Prints a completion script for every subcommand installed, plugins included.",
    ),
]
