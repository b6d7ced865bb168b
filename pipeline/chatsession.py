"""A chat session: the persona and recent turns in, one bot reply out per user message.

Used by `nanochatgpt chat` (pipeline/chat.py), `serve` (pipeline/chatapi.py) and the evaluate
stage. The model's input is always the tokenizer's rendering (pipeline.tokenizer.render): every
piece of user text is encoded as ordinary text, so typing `<bot>...<endOfText><human>` cannot forge
a turn. Text is cleaned as the training text was (clean_text, as pipeline.sources.normalize does:
CRLF/CR -> LF, Unicode NFC, stripped), so a trailing space or a decomposed accent does not reach
the model as tokens it never saw. The persona (--context) is always kept; older turns are dropped
whole (a human turn with the bot's reply), oldest first, so that the prompt fits block_size minus
the reply budget. torch is imported only inside functions: the CLI imports this module to build its
argument parser, and `nanochatgpt sources` should not pay for torch.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from pipeline.invisible import blank_text
from pipeline.stops import check_stop_strings
from pipeline.terminal import CONTROL_CHARS

if TYPE_CHECKING:
    from pipeline.engine import Engine, Generation

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

# A lone UTF-16 surrogate (a JSON "\ud800" without its pair, an argument's undecodable byte): no
# Unicode character, so no UTF-8 text; tiktoken reads it as U+FFFD. Chat and serve refuse it.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def not_utf8_text(text: str, where: str, *, escaped_bytes: bool = False) -> str | None:
    """The error message refusing `text` (None: it is UTF-8 text), naming `where` (the field or
    option) and its first lone surrogate: tiktoken would read it as U+FFFD, so the model would see
    other text than sent, and a stop string holding one could never match. The one check chat's
    arguments and serve's fields share. `escaped_bytes`: text that Python decoded with
    surrogateescape (a command-line argument), whose U+DC80..U+DCFF are bytes that were not UTF-8
    and are named as such."""
    if text.isascii():  # most text: no surrogate, at no cost
        return None
    found = LONE_SURROGATE.search(text)  # json.loads joins a valid pair into one character
    if found is None:
        return None
    code, at = ord(found.group()), found.start() + 1
    if escaped_bytes and 0xDC80 <= code <= 0xDCFF:
        return f"{where} is not UTF-8 text: byte 0x{code - 0xDC00:02X} at character {at}"
    return (
        f"{where} is not UTF-8 text: a lone surrogate (U+{code:04X}) at character {at}"
        " (half a UTF-16 surrogate pair: a pair's halves must come together)"
    )


_WHITESPACE = re.compile(r"\s*")  # Python's \s (str.isspace) has every character tiktoken's \s has


def clean_text(text: str, *, check_runs: bool = True, bot: bool = False) -> str:
    """The training text's form (pipeline.sources.normalize.clean_text): CRLF/CR -> LF, NFC, stripped.

    Raises ValueError for text with a run of more than MAX_COMBINING_RUN combining characters,
    before it is normalized (and after: a few characters decompose into two), an inner run of
    more than MAX_WHITESPACE_RUN whitespace characters (the tokenizer panics near a million), or a
    control character (check_control_chars) unless `bot`. `check_runs=False` is for the model's own
    replies: bounded by max_new_tokens, they cannot stall NFC nor reach the tokenizer's limit, and a
    reply must join the history whatever the model wrote. `bot`: a bot turn, which may be such a
    reply sent back (serve's assistant messages): the model does write control characters (the
    evaluate transcripts escape them), and chat keeps its reply as written, so serve must too."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii():  # else already NFC, no combining marks: most messages, at no cost
        if check_runs:
            _check_combining_runs(text, "")
        text = unicodedata.normalize("NFC", text)
        if check_runs:
            _check_combining_runs(text, " once normalized (NFC)")
    stripped = text.strip()
    if check_runs:
        offset = len(text) - len(text.lstrip())
        if not bot:
            check_control_chars(stripped, offset)
        _check_whitespace_runs(stripped, offset)
    return stripped


_CONTROL_CHAR = re.compile(CONTROL_CHARS)


def check_control_chars(text: str, offset: int = 0) -> None:
    """ValueError for a control character (C0 but tab and newline, DEL, C1) in `text` (stripped
    text, which started `offset` characters into the message): training quarantines a message
    holding one (pipeline.schema's text_no_control_chars, and its conversation from there on), so
    the model never read one, and serve took "a\\x1bb" as text the model never saw in any turn. (A
    vertical tab, form feed or NEL at an edge is whitespace, stripped here as in training; U+001C..
    U+001F at an edge, which str.strip strips, training stripped from a system message and
    quarantined in a turn: here they go, and the model reads the text it would have read.)"""
    found = _CONTROL_CHAR.search(text)
    if found is not None:
        raise ValueError(
            f"text holds a control character (U+{ord(found.group()):04X}) at character "
            f"{offset + found.start() + 1}; training text has none (C0 and C1 control characters other "
            "than tab and newline, and DEL)"
        )


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


# The shortest prompt a reply can follow: <|endoftext|>, <human>, a one-token message, <endOfText>,
# <bot>. A reply budget over block_size minus this leaves no room for any conversation.
MIN_PROMPT_TOKENS = 5


def max_reply_budget(block_size: int) -> int:
    """The largest reply budget a `block_size`-token model can chat with (a persona needs less)."""
    return block_size - MIN_PROMPT_TOKENS


def reply_budget_range(block_size: int) -> str:
    """The reply budgets a `block_size`-token model takes, and why, for the errors that refuse one."""
    return (
        f"1..{max_reply_budget(block_size)} (the model's block_size is {block_size}, and the shortest "
        f"conversation takes {MIN_PROMPT_TOKENS} tokens)"
    )


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
    """A reply budget outside 1..max_reply_budget(block_size). Like NoRoomError, it carries the
    figure so that each caller names the setting as its users type it (the CLI's --max-new-tokens):
    see describe(). (The bound was block_size - 1, and every budget above block_size - 5 that it let
    through then failed as leaving no room: the stated limit was one no value near it could meet.)"""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        super().__init__(self.describe("max_new_tokens"))

    def describe(self, budget: str) -> str:
        return f"{budget} must be in {reply_budget_range(self.block_size)}"


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
        cleaned = clean_text(context or "")
        self.context = None if blank_text(cleaned) else cleaned  # as normalize drops a blank context
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
        if not 1 <= max_new_tokens <= max_reply_budget(engine.block_size):
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
        text = clean_text(text, check_runs=not generated, bot=role == "bot")
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
