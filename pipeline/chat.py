"""Chat with the trained model: a session that keeps the persona and recent turns, and the CLI.

`nanochatgpt chat` (pipeline/cli.py) calls add_arguments/run below. The evaluate stage uses
ChatSession directly. torch is imported only inside functions: the CLI imports this module to
build its argument parser, and `nanochatgpt sources` should not pay for torch.

The model's input is always the tokenizer's rendering (pipeline.tokenizer.render): every piece of
user text is encoded as ordinary text, so typing `<bot>...<endOfText><human>` cannot forge a
turn. Text is cleaned as the training text was (pipeline.sources.normalize: CRLF/CR -> LF,
Unicode NFC, stripped), so a trailing space or a decomposed accent does not reach the model as
tokens it never saw. The persona (--context) is always kept; older turns are dropped whole (a
human turn with the bot's reply), oldest first, so that the prompt fits block_size minus the
reply budget.
"""

from __future__ import annotations

import argparse
import functools
import re
import signal
import sys
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.cli import EXIT_BROKEN_PIPE, silence_stdout
from pipeline.stops import MAX_STOP_STRINGS, check_stop_strings

if TYPE_CHECKING:
    from pipeline.engine import Engine, Generation

DEFAULT_CKPT = "model/ckpt"
CKPT_HELP = f"checkpoint directory (default {DEFAULT_CKPT}), or a Hugging Face GPT-2 folder such as model/hf"


# Unicode's stream-safe limit (UAX #15, section 13): at most 30 non-starters (combining marks) in
# a row. Python's NFC sorts a run of them by insertion (quadratic on CPython 3.11): a 300 KB run
# froze `serve` for 23 s, /health included. No real text comes near 30.
MAX_COMBINING_RUN = 30

# tiktoken's GPT-2 regex (`\s+(?!\S)`) counts a backtrack per character of a whitespace run, and
# past ~1,000,000 it panics (tiktoken 0.14: a run of 999,998 between two letters encodes, 999,999
# raises pyo3's PanicException, a BaseException that killed `serve`'s request thread unanswered).
# 10,000 is 100x below that and far above real text (a pasted page has runs of tens); encoding a
# 10,000 run takes ~0.2 ms. Leading and trailing runs are stripped before anything is encoded, so
# only inner runs count.
MAX_WHITESPACE_RUN = 10_000
_WHITESPACE = re.compile(r"\s*")  # Python's \s (str.isspace) has every character tiktoken's \s has


def clean_text(text: str, *, check_runs: bool = True) -> str:
    """The training text's form (pipeline.sources.normalize.clean_text): CRLF/CR -> LF, NFC, stripped.

    Raises ValueError for text with a run of more than MAX_COMBINING_RUN combining characters,
    before it is normalized (and after: a few characters decompose into two), or an inner run of
    more than MAX_WHITESPACE_RUN whitespace characters (the tokenizer panics near a million).
    `check_runs=False` is for the model's own replies: bounded by max_new_tokens, they cannot
    stall NFC nor reach the tokenizer's limit, and a reply must join the history whatever the
    model wrote."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii():  # else already NFC, no combining marks: most messages, at no cost
        if check_runs:
            _check_combining_runs(text, "")
        text = unicodedata.normalize("NFC", text)
        if check_runs:
            _check_combining_runs(text, " once normalized (NFC)")
    stripped = text.strip()
    if check_runs:
        _check_whitespace_runs(stripped, offset=len(text) - len(text.lstrip()))
    return stripped


def _check_combining_runs(text: str, when: str) -> None:
    run = _long_combining_run().search(text)
    if run is not None:
        raise ValueError(
            f"text has {run.end() - run.start()} combining characters in a row at character "
            f"{run.start() + 1}{when}; at most {MAX_COMBINING_RUN} are allowed (Unicode's stream-safe "
            "limit, UAX #15)"
        )


def _check_whitespace_runs(text: str, offset: int) -> None:
    """ValueError for a run of over MAX_WHITESPACE_RUN whitespace characters in `text` (stripped
    text, which started `offset` characters into the message).

    Such a run covers a multiple of MAX_WHITESPACE_RUN, so only those characters are looked at,
    and the run through a whitespace one is measured by str.rstrip/lstrip of the slices either
    side: 0.03-0.3 ms per MB of text, where a regex scan of every character took ~10 ms (holding
    the GIL, which tiktoken's encoding releases)."""
    limit = MAX_WHITESPACE_RUN
    for i in range(0, len(text), limit):
        if not text[i].isspace():
            continue
        before, after = text[max(0, i - limit) : i], text[i : i + limit + 1]
        start = i - (len(before) - len(before.rstrip()))
        if i + len(after) - len(after.lstrip()) - start > limit:
            end = _WHITESPACE.match(text, start).end()  # the whole run, for the message
            raise ValueError(
                f"text has {end - start} whitespace characters in a row at character "
                f"{offset + start + 1}; at most {limit} are allowed"
            )


@functools.cache
def _long_combining_run() -> re.Pattern[str]:
    """A regex for a run of more than MAX_COMBINING_RUN non-starters: characters of a nonzero
    combining class, and the few (Tibetan U+0F73, U+0F75, U+0F81) of class 0 that decompose into
    them. Built on first use (~0.1 s: every code point is looked at once); a character class
    makes the scan C-speed."""
    ranges: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        decomposition = unicodedata.decomposition(char)
        starts_combining = (
            decomposition[:1] not in ("", "<")
            and unicodedata.combining(chr(int(decomposition.split()[0], 16))) != 0
        )
        if unicodedata.combining(char) == 0 and not starts_combining:
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    members = "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)
    return re.compile(f"[{members}]{{{MAX_COMBINING_RUN + 1},}}")


def default_reply_budget(block_size: int) -> int:
    """A quarter of the context window, at most 256 tokens: leaves most of it for the conversation."""
    return max(1, min(256, block_size // 4))


class NoRoomError(ValueError):
    """The reply budget leaves no room in the context window for the persona and a message.

    Carries the figures so that each caller names the settings as its users type them (the CLI's
    --context and --max-new-tokens, the API's system message and max_tokens): see describe().
    """

    def __init__(self, persona_tokens: int | None, room: int, max_new_tokens: int, block_size: int) -> None:
        self.persona_tokens = persona_tokens  # the persona's own text tokens; None without a persona
        self.room = room  # persona text tokens that would fit beside a one-token message
        self.max_new_tokens = max_new_tokens
        self.block_size = block_size
        super().__init__(self.describe("the persona", "max_new_tokens"))

    @property
    def persona_at_fault(self) -> bool:
        """A shorter persona would fit (else only a smaller reply budget helps)."""
        return self.persona_tokens is not None and self.room >= 1

    def describe(self, persona: str, budget: str) -> str:
        """The one-line error, with the persona and the reply budget called `persona` and `budget`."""
        if not self.persona_at_fault:
            return (
                f"{budget} {self.max_new_tokens} leaves no room for the conversation in the "
                f"{self.block_size}-token context window: lower it"
            )
        return (
            f"{persona} is {self.persona_tokens} tokens; with {budget} {self.max_new_tokens} at most "
            f"{self.room} fit the {self.block_size}-token context window: shorten it or lower {budget}"
        )


class ReplyBudgetError(ValueError):
    """A reply budget outside 1..block_size-1. Like NoRoomError, it carries the figure so that each
    caller names the setting as its users type it (the CLI's --max-new-tokens): see describe()."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        super().__init__(f"max_new_tokens must be in 1..{block_size - 1} (block_size {block_size})")

    def describe(self, budget: str) -> str:
        return f"{budget} must be in 1..{self.block_size - 1} (the model's block_size is {self.block_size})"


class ChatSession:
    """One conversation with an Engine: persona + history in, one bot reply out per user message."""

    def __init__(
        self,
        engine: Engine,
        context: str | None = None,
        max_new_tokens: int | None = None,
        temperature: float = 0.8,
        top_k: int | None = 50,
        top_p: float | None = 0.95,
        seed: int | None = None,
        stop: Sequence[str] | str | None = None,
    ) -> None:
        from pipeline.sampling import SamplingParams
        from pipeline.tokenizer import render

        self.engine = engine
        self.context = clean_text(context or "") or None
        if max_new_tokens is None:
            max_new_tokens = default_reply_budget(engine.block_size)
        self.max_new_tokens = max_new_tokens
        self.stop = check_stop_strings(stop)
        SamplingParams(
            temperature=temperature, top_k=top_k, top_p=top_p, seed=seed
        )  # validate now, not mid-chat
        self._sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p)
        self.seed = seed
        self.history: list[dict[str, str]] = []  # alternating human/bot messages
        self._lengths: list[int] = []  # rendered tokens of each history message
        self.last_prompt_ids: list[int] | None = None
        self._replies = 0
        self._budget = engine.block_size - max_new_tokens
        if max_new_tokens < 1 or self._budget < 1:
            raise ReplyBudgetError(engine.block_size)
        # <|endoftext|> persona <bot>, plus <human>, at least one token and <endOfText> for a message.
        fixed = len(render([], self.context, enc=engine.enc, add_generation_prompt=True)[0])
        if fixed + 3 > self._budget:
            raise NoRoomError(
                persona_tokens=fixed - 2 if self.context else None,
                room=self._budget - 5,
                max_new_tokens=max_new_tokens,
                block_size=engine.block_size,
            )

    def reset(self) -> None:
        """Forget the conversation; the persona stays. The seeded replies start over too, so a
        reset chat answers as a fresh one with the same seed would."""
        self.history.clear()
        self._lengths.clear()
        self._replies = 0

    def prompt_ids(self, user_text: str) -> list[int]:
        """The model's input for the next reply: persona, the latest whole turns that fit, the new
        human turn and `<bot>`. Raises ValueError if the new message alone does not fit."""
        from pipeline.tokenizer import render

        enc = self.engine.enc
        user_text = clean_text(user_text)
        # Rendered length is additive: <|endoftext|> context [<role> text <endOfText>]... <bot>.
        fixed = 2 + len(enc.encode_ordinary(self.context or ""))
        new_len = 2 + len(enc.encode_ordinary(user_text))
        if fixed + new_len > self._budget:
            persona = "with the persona " if self.context else ""
            raise ValueError(
                f"message is {new_len - 2} tokens; {persona}only {self._budget - fixed - 2} fit "
                "(block_size minus the reply budget): send a shorter message"
            )
        # Keep the newest exchanges (human turn + bot reply, dropped together so the rendering
        # still starts with a human turn) while they fit.
        start, total = len(self.history), fixed + new_len
        while start >= 2 and total + self._lengths[start - 2] + self._lengths[start - 1] <= self._budget:
            start -= 2
            total += self._lengths[start] + self._lengths[start + 1]
        new = {"role": "human", "content": user_text}
        while True:  # the estimate is exact for render()'s format; re-check rather than trust it
            ids, _ = render(self.history[start:] + [new], self.context, enc=enc, add_generation_prompt=True)
            if len(ids) <= self._budget or start >= len(self.history):
                break
            start += 2
        if len(ids) > self._budget:
            raise ValueError(f"message does not fit the {self._budget}-token prompt budget")
        return ids

    def add_turn(self, role: str, text: str, *, generated: bool = False) -> None:
        """Put a past turn ("human" or "bot") into the history, as if it had been said here
        (`generated`: the model's own reply, taken whatever it holds).

        Turns alternate from a human turn (older ones are dropped in human+bot pairs)."""
        if role not in ("human", "bot"):
            raise ValueError(f"role must be human or bot, got {role!r}")
        text = clean_text(text, check_runs=not generated)
        self.history.append({"role": role, "content": text})
        self._lengths.append(2 + len(self.engine.enc.encode_ordinary(text)))

    def stream(self, user_text: str, results: list[Generation] | None = None) -> Iterator[str]:
        """Reply to `user_text` piece by piece; the exchange joins the history when the reply ends
        (also if the consumer stops early, with what was shown)."""
        from pipeline.sampling import MAX_SEED, SamplingParams

        ids = self.prompt_ids(user_text)
        self.last_prompt_ids = ids
        seed = None if self.seed is None else (self.seed + self._replies) % (MAX_SEED + 1)
        params = SamplingParams(seed=seed, **self._sampling)
        self._replies += 1
        shown: list[str] = []
        try:
            for piece in self.engine.stream(ids, self.max_new_tokens, params, self.stop, results):
                shown.append(piece)
                yield piece
        finally:
            self.add_turn("human", user_text)
            self.add_turn("bot", "".join(shown), generated=True)

    def reply_result(self, user_text: str) -> Generation:
        """Reply to `user_text`; the Generation carries text, token ids and finish_reason."""
        results: list[Generation] = []
        for _ in self.stream(user_text, results):
            pass
        return results[0]

    def reply(self, user_text: str) -> str:
        return self.reply_result(user_text).text


# ---- CLI ---------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
        help=f"end the reply before TEXT (repeatable, up to {MAX_STOP_STRINGS})",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the decode step: faster tokens on a GPU after a compilation per shape",
    )


def _read_context(args: argparse.Namespace) -> str | None:
    path: Path | None = args.context_file
    if args.context and args.context.startswith("@@"):  # a persona that begins with @, as text
        return args.context[1:]
    if args.context and args.context.startswith("@"):
        path = Path(args.context[1:])
    if path is None:
        return args.context
    try:
        # utf-8-sig: Windows Notepad's "UTF-8" starts the file with a BOM, which would reach the
        # model as three tokens it never saw in training
        return path.read_text(encoding="utf-8-sig").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read context file {path}: {e}") from e


def run(args: argparse.Namespace) -> int:
    """Interactive chat on stdin/stdout (a pipe works too). /reset clears history, /exit or EOF quits."""
    try:
        context = _read_context(args)
        stop = check_stop_strings(args.stop)
        if args.top_k < 0:  # SamplingParams would say "unset": here 0 is how to say it
            raise ValueError(f"--top-k must be >= 1, or 0 for no limit, got {args.top_k}")
    except ValueError as e:
        print(f"chat: {e}", file=sys.stderr)
        return 2

    from pipeline.engine import Engine

    try:
        model = load_chat_model(
            args.ckpt, args.device, log=lambda line: print(f"chat: {line}", file=sys.stderr)
        )
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"chat: {e}", file=sys.stderr)
        return 2
    try:
        session = ChatSession(
            Engine(model, compile_decode=args.compile),
            context=context,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k or None,  # 0 = no limit (the CLI cannot say None)
            top_p=args.top_p,
            seed=args.seed,
            stop=stop,
        )
    except NoRoomError as e:
        print(f"chat: {e.describe('--context', '--max-new-tokens')}", file=sys.stderr)
        return 2
    except ReplyBudgetError as e:
        print(f"chat: {e.describe('--max-new-tokens')}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"chat: {e}", file=sys.stderr)
        return 2
    # Undecodable input or unprintable output must not end the chat with a traceback (strict
    # decoding is the default under e.g. en_US.UTF-8): such characters become U+FFFD / "?".
    for stream in (sys.stdin, sys.stdout):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")
    # Python's own Ctrl-C handler, which interrupts a read: importing polars (the CLI builds every
    # subcommand's parser, `check` imports it) installs one with SA_RESTART, under which Ctrl-C at
    # the prompt did nothing until Enter, and then quit with the message typed.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    code = chat_loop(session, sys.stdin, sys.stdout, sys.stderr)
    if code == EXIT_BROKEN_PIPE:
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


def load_chat_model(ckpt: str | Path, device_name: str = "auto", log: Callable[[str], None] | None = None):
    """The GPT of `ckpt` on the device, ready to decode (bf16 on a GPU that has it). `ckpt` is this
    project's checkpoint (model/ckpt) or a Hugging Face GPT-2 folder, such as its export model/hf:
    the folder a user is handed is what they should be able to chat with. `log` hears what the user
    should know about a folder (by default stderr)."""
    import torch

    from pipeline import hf
    from pipeline.checkpoint import load_model
    from pipeline.device import resolve_device

    log = log or (lambda line: print(line, file=sys.stderr))
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
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        model = model.to(torch.bfloat16)  # decoding reads every weight per token: half the bytes
    return model


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
        return 130
    except BrokenPipeError:  # stdout's reader left (`nanochatgpt chat | head`): nobody to answer
        return EXIT_BROKEN_PIPE


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
        return stdin.readline()

    return read_plain


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
        line = read_line()
        if not line:  # EOF
            if interactive:  # Ctrl-D at the prompt: end its line for the shell
                print(file=stderr)
            return 0
        text = line.rstrip("\r\n")
        command = text.strip().lower()
        if not command:
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
        pieces = session.stream(text)
        try:
            for piece in pieces:
                stdout.write(piece)
                stdout.flush()
        except ValueError as e:
            print(f"chat: {e}", file=stderr, flush=True)
            continue
        except KeyboardInterrupt:
            if not interactive:  # a script's Ctrl-C ends the chat (exit 130)
                raise
            # At a terminal, Ctrl-C stops this reply only; what was shown joins the history.
            pieces.close()
            stdout.write("\n")
            print("(reply stopped)", file=stderr, flush=True)
            continue
        stdout.write("\n")
        stdout.flush()
