"""`nanochatgpt chat`: the trained model in a terminal, one ChatSession (pipeline/chatsession.py).

pipeline/cli.py calls add_arguments/run below; load_chat_model (a model/ckpt checkpoint or a
Hugging Face GPT-2 folder) serves `serve` too. The persona (--context) is always kept, what the
user types is ordinary text (it cannot forge a turn) cleaned as training text was, and older turns
are dropped to fit the window: ChatSession's rules. torch is imported only inside functions: the
CLI imports this module to build its argument parser, and `nanochatgpt sources` should not pay
for torch.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.argtypes import whole_number_or
from pipeline.chatsession import ChatSession, NoRoomError, ReplyBudgetError, clean_text, not_utf8_text
from pipeline.cli import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, silence_stdout
from pipeline.invisible import blank_text, visible
from pipeline.sources.readers import decode_whole
from pipeline.stops import MAX_STOP_CHARS, MAX_STOP_STRINGS, check_stop_strings
from pipeline.streamencoding import argument_text, read_utf8_for_ascii, utf8_in_disguise
from pipeline.terminal import inert
from pipeline.threadtuner import AUTO, fixed_threads, restoring

if TYPE_CHECKING:
    from pipeline.engine import Engine

DEFAULT_CKPT = "model/ckpt"
CKPT_HELP = f"checkpoint directory (default {DEFAULT_CKPT}), or a Hugging Face GPT-2 folder such as model/hf"
THREADS_HELP = (
    "CPU threads the model runs on: auto (the default) times the decode at 1, half and all the cores "
    "and keeps the fastest, again every few seconds (beside a busy program 1 thread replied about twice "
    "as fast here, idle all of them: benchmarks.decode_threads); N: always N, capped at the CPU quota"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # the in-chat commands, which `--help` is where a newcomer looks for them first
    parser.epilog = (
        "In the chat: /reset clears the conversation (the persona stays), /exit or /quit (or end of "
        "input) quits, /help lists these; Ctrl-C stops a reply, and at the prompt quits."
    )
    parser.add_argument("--ckpt", default=DEFAULT_CKPT, help=CKPT_HELP)
    ctx = parser.add_mutually_exclusive_group()
    ctx.add_argument(
        "--context",
        help="persona / scene kept for the whole chat; @FILE reads it from FILE, @@ starts a text with @",
    )
    ctx.add_argument("--context-file", type=Path, help="read the persona from this file")
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="reply budget in tokens (default: a quarter of the model's block_size, at most 256)",
    )
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default 0.8)")
    parser.add_argument(
        "--top-k", type=int, default=50, help="sample among the k likeliest tokens (default 50; 0 = no limit)"
    )
    parser.add_argument(
        "--top-p",
        type=float,
        default=0.95,
        help="nucleus sampling mass (default 0.95; 1 = no limit, 0 = greedy)",
    )
    parser.add_argument("--seed", type=int, default=None, help="same seed and input, same replies")
    parser.add_argument(
        "--stop",
        action="append",
        default=None,
        metavar="TEXT",
        help=(
            f"end the reply before TEXT (repeatable, up to {MAX_STOP_STRINGS}, "
            f"each at most {MAX_STOP_CHARS} characters)"
        ),
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the decode step: faster tokens on a GPU after a compilation per shape",
    )
    parser.add_argument("--threads", type=whole_number_or(AUTO, 1), default=AUTO, help=THREADS_HELP)


def _read_context(args: argparse.Namespace) -> str | None:
    path: Path | None = args.context_file
    if args.context and args.context.startswith("@@"):  # a persona that begins with @, as text
        return _argument(args.context[1:], "--context")
    if args.context and args.context.startswith("@"):
        path = Path(args.context[1:])  # a file name: as Python decoded it, or it names no file
    if path is None:
        return None if args.context is None else _argument(args.context, "--context")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PERSONA_BYTES + 1)
    except OSError as e:
        # `--context "@everyone: be kind"` meant as text looks for a file named "everyone: be kind"
        at = isinstance(e, FileNotFoundError) and args.context is not None
        hint = " (--context @FILE reads FILE; a persona that begins with @ is written @@...)" if at else ""
        raise ValueError(f"cannot read context file {path}: {e}{hint}") from e
    if len(raw) > MAX_PERSONA_BYTES:  # read whole, /dev/zero or a stray log filled the memory
        raise ValueError(
            f"cannot read context file {path}: it is over {MAX_PERSONA_BYTES} bytes, far more than "
            "the model's context window holds"
        )
    try:
        # A byte-order mark is dropped (as utf-8-sig did): Windows Notepad's "UTF-8" starts the file
        # with one, which would reach the model as three tokens it never saw in training.
        return decode_whole(raw).strip()
    except UnicodeDecodeError:
        # in the words `--context` uses for the same bytes, not the codec's ("position 3")
        raise ValueError(f"cannot read context file {path}: {_not_utf8(raw)}") from None


# The largest persona file read: serve's body limit (1 MiB), far past any model's window.
MAX_PERSONA_BYTES = 1 << 20


def _not_utf8(raw: bytes) -> str:
    """What is wrong with bytes that do not decode as UTF-8 (a byte-order mark allowed): the first
    bad byte and its offset in the file (decode_whole counts it from the file's first byte)."""
    try:
        decode_whole(raw)
    except UnicodeDecodeError as e:
        return f"not UTF-8 text (byte 0x{raw[e.start]:02X} at byte {e.start}); save it as UTF-8"
    return "not UTF-8 text; save it as UTF-8"


def _argument(arg: str, flag: str) -> str:
    """A text argument as its bytes say in a locale that is not UTF-8 (streamencoding): an ASCII
    one read a UTF-8 `--context` as surrogates (refused as "not UTF-8 text: byte 0xC3"), a Latin-1
    one as mojibake, which is refused (ValueError) naming the fix rather than sent to the model."""
    text = argument_text(arg)
    mislabelled = utf8_in_disguise(text, sys.getfilesystemencoding(), flag)
    if mislabelled is not None:
        raise ValueError(mislabelled)
    return text


def _refuse_undecodable(text: str, flag: str) -> None:
    """ValueError for an argument that is not UTF-8 text (`--context $'Caf\\xe9'` from a Latin-1
    terminal or file): tiktoken read such a persona's bytes as U+FFFD, and a stop string holding one
    could never match the model's UTF-8 text, both silently, where `--context @FILE` refuses the
    same bytes and `serve` refuses a lone surrogate (with the same check: not_utf8_text)."""
    message = not_utf8_text(text, flag, escaped_bytes=True)
    if message is not None:
        raise ValueError(message)


def _refuse_unclean(persona: str, flag: str) -> None:
    """ValueError naming `flag` for a persona clean_text refuses (a control character, which
    training quarantines; a run of whitespace or combining marks over its limit): ChatSession said
    so without naming the option, and only once the model had loaded."""
    try:
        clean_text(persona)
    except ValueError as e:
        raise ValueError(f"{flag}: {e}") from None


def _stop_strings(stop: list[str] | None) -> tuple[str, ...]:
    """`--stop`'s strings, checked as serve checks `stop`: a ValueError naming the option."""
    texts = None if stop is None else [_argument(s, "--stop") for s in stop]  # its own message
    try:
        return check_stop_strings(texts)
    except ValueError as e:
        raise ValueError(f"--stop: {e}") from None


def _closed_streams() -> list[str]:
    """One error line per closed standard stream the chat cannot do without (`<&-`, `>&-`): Python
    sets such a stream to None, and the chat ended in an AttributeError traceback. A closed stderr
    (`2>&-`) only loses the messages: print(file=None) would write them into the replies on stdout."""
    if sys.stderr is None:
        # the process's stderr until it exits
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    closed = []
    if sys.stdin is None:
        closed.append("cannot read stdin: it is closed")
    if sys.stdout is None:
        closed.append("cannot write the reply to stdout: it is closed")
    return closed


def run(args: argparse.Namespace) -> int:
    """Interactive chat on stdin/stdout (a pipe works too). /reset clears history, /exit or EOF quits."""
    try:
        return _run(args)
    except KeyboardInterrupt:
        # Ctrl-C before the prompt, while torch imports and the model loads (seconds on a CPU): it
        # quits as at the prompt, where it printed a traceback of whatever was being imported.
        print(file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    closed = _closed_streams()  # before the model loads: it is no use without them
    if closed:
        for line in closed:
            print(f"chat: {line}", file=sys.stderr)
        return EXIT_IO_ERROR
    try:
        context = _read_context(args)
        stop = _stop_strings(args.stop)
        persona_flag = "--context-file" if args.context_file is not None else "--context"
        for text, flag in [(context or "", persona_flag), *((s, "--stop") for s in stop)]:
            _refuse_undecodable(text, flag)
        _refuse_unclean(context or "", persona_flag)
        if args.top_k < 0:  # SamplingParams would say "unset": here 0 is how to say it
            raise ValueError(f"--top-k must be >= 1, or 0 for no limit, got {args.top_k}")
    except ValueError as e:
        print(f"chat: {e}", file=sys.stderr)
        return 2

    engine = load_engine(args, "chat")
    if engine is None:
        return 2
    try:
        session = ChatSession(
            engine,
            context=context,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k or None,  # 0 = no limit (the CLI cannot say None)
            top_p=args.top_p,
            seed=args.seed,
            stop=stop,
        )
    except NoRoomError as e:
        # name the option the persona came from: a --context-file user has typed no --context
        persona_flag = "--context-file" if args.context_file is not None else "--context"
        print(f"chat: {e.describe(persona_flag, '--max-new-tokens')}", file=sys.stderr)
        return 2
    except ReplyBudgetError as e:
        print(f"chat: {e.describe('--max-new-tokens')}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"chat: {e}", file=sys.stderr)
        return 2
    # Undecodable input or unprintable output must not end the chat with a traceback (strict
    # decoding is the default under e.g. en_US.UTF-8): output that cannot be written becomes "?";
    # input bytes that are not UTF-8 are kept as lone surrogates, for _loop to refuse that message
    # by byte (as a Latin-1 --context is), not sent to the model as U+FFFD.
    read_utf8_for_ascii(sys.stdin)  # an ASCII locale's stdin turned UTF-8 text into U+FFFD
    for stream, errors in ((sys.stdin, "surrogateescape"), (sys.stdout, "replace")):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors=errors)
    # Python's own Ctrl-C handler, which interrupts a read: importing polars (the CLI builds every
    # subcommand's parser, `check` imports it) installs one with SA_RESTART, under which Ctrl-C at
    # the prompt did nothing until Enter, and then quit with the message typed.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # The tuner's last count (1 thread, or a turn's) must not outlive the chat in a process that
    # goes on (cli.main called in-process: the tests, a notebook).
    with restoring(engine.thread_tuner):
        code = chat_loop(session, sys.stdin, sys.stdout, sys.stderr)
    if code in (EXIT_BROKEN_PIPE, EXIT_IO_ERROR):  # Python's final flush of stdout would fail again
        silence_stdout()
    return code


def is_hf_folder(path: str | Path) -> bool:
    """Whether `path` is a Hugging Face model folder: its config.json names a `model_type`, which
    transformers always writes and this project's model/ckpt config never has. (Here, not in hf.py:
    that file is code of the training run, and a change there would start every run afresh.)"""
    from pipeline.hf import read_json

    try:
        return "model_type" in read_json(Path(path) / "config.json")
    except (OSError, ValueError):  # absent or unreadable: the loader names the problem
        return False


def load_chat_model(
    ckpt: str | Path,
    device_name: str = "auto",
    log: Callable[[str], None] | None = None,
    threads: int | str | None = None,
):
    """The GPT of `ckpt` on the device, ready to decode (bf16 on a GPU that has it). `ckpt` is this
    project's checkpoint (model/ckpt) or a Hugging Face GPT-2 folder, such as its export model/hf:
    the folder a user is handed is what they should be able to chat with. `log` hears what the user
    should know about a folder (by default stderr). `threads`, a number, sets this process's CPU
    threads (`auto` is the engine's thread tuner: make_engine)."""
    import torch

    log = log or (lambda line: print(line, file=sys.stderr))
    if isinstance(threads, int):
        # why a count matters, and why not past the CPU quota: pipeline/threadtuner.py
        torch.set_num_threads(fixed_threads(threads, log))
    elif threads not in (None, AUTO):
        raise ValueError(f"threads must be a whole number or {AUTO!r}, got {threads!r}")

    from pipeline import hf
    from pipeline.checkpoint import CONFIG_FILE, load_model
    from pipeline.device import resolve_device
    from pipeline.vocabcheck import check_vocab

    device = resolve_device(device_name)
    if is_hf_folder(ckpt):
        folder = Path(ckpt).resolve()  # resolved: a folder named like a Hub model (`gpt2`) is a folder
        model = hf.load_pretrained(str(folder), log=log).to(device).eval()
        untrained = untrained_markers(folder)
        if untrained:
            log(
                f"{ckpt} is not a nanoChatGPT model: its tokenizer files do not name {', '.join(untrained)}, "
                "so those rows start untrained (the mean embedding) and replies will rarely end before "
                "the reply budget"
            )
    elif Path(ckpt).name == "hf" and not Path(ckpt).exists():  # the export, not made yet
        raise FileNotFoundError(f"no model at {ckpt}: `dvc repro export` makes it")
    else:
        model = load_model(ckpt, device)
        # A checkpoint without the chat tokens: one line now, not an IndexError at the first reply.
        # (A Hugging Face folder without them is padded on load: hf.load_pretrained, warned above.)
        check_vocab(model, str(Path(ckpt) / CONFIG_FILE))
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        model = model.to(torch.bfloat16)  # decoding reads every weight per token: half the bytes
    return model


def make_engine(model, args: argparse.Namespace) -> Engine:
    """The engine chat and serve decode with: `--compile`, and `--threads auto`'s thread tuner."""
    from pipeline.engine import Engine
    from pipeline.threadtuner import auto_tuner

    return Engine(model, compile_decode=args.compile, thread_tuner=auto_tuner(args.threads))


def load_engine(args: argparse.Namespace, prog: str) -> Engine | None:
    """The engine chat and serve decode with, of the model their `--ckpt`, `--device` and `--threads`
    name: the loader's lines go to stderr as `prog: ...`, and so does why a model cannot be loaded,
    which returns None (the command exits 2)."""
    try:
        model = load_chat_model(
            args.ckpt,
            args.device,
            log=lambda line: print(f"{prog}: {line}", file=sys.stderr),
            threads=args.threads,
        )
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return None
    return make_engine(model, args)


def untrained_markers(folder: Path) -> list[str]:
    """The chat markers (ids past GPT-2's vocabulary) that `folder`'s tokenizer files do not name at
    their ids: a plain GPT-2 or someone else's fine-tune has no trained rows for them, and its
    replies would run to the budget without a word (the end-of-turn logit is the mean logit)."""
    from pipeline import hf
    from pipeline.tokenizer import SPECIAL_TOKENS

    named = hf.declared_tokens(folder)
    return [
        f"{token} ({i})"
        for token, i in SPECIAL_TOKENS.items()
        if i >= hf.GPT2_VOCAB and token not in {t for _, t in named.get(i, [])}
    ]


def chat_loop(session: ChatSession, stdin, stdout, stderr) -> int:
    """Read messages line by line from `stdin`, stream replies to `stdout`; returns the exit code."""
    try:
        return _loop(session, stdin, stdout, stderr)
    except KeyboardInterrupt:
        print(file=stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout's reader left (`nanochatgpt chat | head`): nobody to answer
        return EXIT_BROKEN_PIPE
    except StreamError as e:  # stdout cannot take the reply (a full disk) or stdin cannot be read (EIO)
        print(f"chat: {e}", file=stderr)
        return EXIT_IO_ERROR


EXIT_IO_ERROR = 1  # stdin or stdout failed (`chat > file` on a full disk): a one-line error, not a traceback


class StreamError(Exception):
    """stdin or stdout failed. Only the chat's own reads and writes raise it: an OSError from the
    model or the engine (a compile cache it cannot write) is a bug to see whole, not an I/O error to
    report in one line as if stdout had failed."""

    def __init__(self, doing: str, error: OSError) -> None:
        super().__init__(f"cannot {doing}: {error}")


def _write(stdout, text: str) -> None:
    """`text` to stdout, now. Its reader leaving (BrokenPipeError) is no failure: chat_loop ends quietly."""
    try:
        stdout.write(text)
        stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise StreamError("write the reply to stdout", e) from e


def _read(read_line: Callable[[], str]) -> str:
    """The next line typed (line_reader), an unreadable stdin (EIO: its terminal hung up) a StreamError."""
    try:
        return read_line()
    except OSError as e:
        raise StreamError("read stdin", e) from e


EXIT_COMMANDS = ("/exit", "/quit")
HELP = "Type a message; /reset clears the conversation, /exit or /quit quits, /help shows this, Ctrl-C stops a reply."


PROMPT = "> "


def line_reader(stdin, stdout, stderr) -> Callable[[], str]:
    """A function returning the next line typed, with its newline ("" at end of input).

    At a terminal (the process's own stdin and stdout both on it), lines are read through
    input() with readline loaded: arrow keys move in the line and Up recalls earlier messages
    (this session's, kept in memory only), where a bare read showed them as "^[[D" and sent the
    escape codes to the model as text. Otherwise (a pipe, a file, stdout redirected so that it
    holds only the replies) the prompt goes to stderr and lines are read as they come.
    """
    if stdin is sys.stdin and stdout is sys.stdout and stdin.isatty() and stdout.isatty():
        readline = _load_readline()
        if readline is not None:

            def read_edited() -> str:
                try:
                    return input(PROMPT) + "\n"
                except EOFError:
                    return ""

            return read_edited

    def read_plain() -> str:
        if stdin.isatty():
            print(PROMPT, end="", file=stderr, flush=True)
        return bounded_line(stdin)

    return read_plain


# The longest line read as a message: serve's body limit (1 MiB), and far past any model's window. A
# pipe without newlines (`chat < /dev/zero`, a binary file) was read whole into memory by readline().
MAX_MESSAGE_CHARS = 1 << 20


class MessageTooLong(Exception):
    """A line over MAX_MESSAGE_CHARS, read and dropped in bounded pieces: _loop says so and goes on."""


def bounded_line(stdin) -> str:
    """stdin's next line ("" at end of input) of at most MAX_MESSAGE_CHARS characters; a longer one
    is read to its end in pieces of that size, dropped, and raised as MessageTooLong."""
    line = stdin.readline(MAX_MESSAGE_CHARS + 1)
    if len(line) <= MAX_MESSAGE_CHARS or line.endswith("\n"):
        return line
    while (rest := stdin.readline(MAX_MESSAGE_CHARS)) and not rest.endswith("\n"):
        pass  # the rest of the line, dropped as it comes: memory stays bounded however long it is
    raise MessageTooLong(
        f"a line of over {MAX_MESSAGE_CHARS} characters was skipped: no message that long fits the "
        "model's context window"
    )


def _load_readline():  # -> the readline module, or None where Python was built without it
    try:
        import readline
    except ImportError:
        return None
    # Tab types a tab, as it did before: readline's default would complete file names.
    libedit = "libedit" in (readline.__doc__ or "")  # macOS's Python
    readline.parse_and_bind("bind ^I ed-insert" if libedit else "tab: tab-insert")
    return readline


def _loop(session: ChatSession, stdin, stdout, stderr) -> int:
    interactive = stdin.isatty()
    if interactive:
        print(HELP, file=stderr)
    read_line = line_reader(stdin, stdout, stderr)
    while True:
        try:
            line = _read(read_line)
        except MessageTooLong as e:
            print(f"chat: {e}", file=stderr, flush=True)
            continue
        if not line:  # EOF
            if interactive:  # Ctrl-D at the prompt: end its line for the shell
                print(file=stderr)
            return 0
        # A byte-order mark starts a file from a Windows editor (each file's first line, joined by
        # `cat`): the persona file drops it (decode_whole), and a message must too, or "\ufeff/exit" is
        # sent to the model (as tokens it never saw in training) instead of quitting.
        text = line.rstrip("\r\n").removeprefix("\ufeff")
        command = visible(text).strip().lower()  # "/reset" padded with a zero-width space is /reset
        if blank_text(command):  # invisible characters alone are no message, as in training
            continue
        if command in EXIT_COMMANDS:
            return 0
        if command == "/reset":
            session.reset()
            print("(conversation cleared)", file=stderr, flush=True)
            continue
        if command == "/help":
            print(HELP, file=stderr, flush=True)
            continue
        mislabelled = not_utf8_text(text, "the message", escaped_bytes=True) or utf8_in_disguise(
            text, getattr(stdin, "encoding", None), "the message"
        )
        if mislabelled is not None:  # a Latin-1 file piped in a UTF-8 locale, or a UTF-8 one in a Latin-1
            # locale: not U+FFFD or mojibake to the model
            print(f"chat: {mislabelled}", file=stderr, flush=True)
            continue
        pieces = session.stream(text)
        try:
            for piece in pieces:
                _write(stdout, inert(piece))  # the reply's escape codes shown, never run (inert)
        except ValueError as e:
            print(f"chat: {e}", file=stderr, flush=True)
            continue
        except KeyboardInterrupt:
            if not interactive:  # a script's Ctrl-C ends the chat (exit 130)
                raise
            # At a terminal, Ctrl-C stops this reply only; what was shown joins the history.
            pieces.close()
            _write(stdout, "\n")
            print("(reply stopped)", file=stderr, flush=True)
            continue
        _write(stdout, "\n")
