"""model/eval/transcripts.md: the evaluation's chat transcripts as Markdown, and back.

A `## Conversation N` section per transcript with its persona and turns. Structure lines (headings,
`*persona:*`, `**human:**`, `**bot:**`) start at the margin and a text's later lines are indented,
so the file reads back unambiguously (pipeline.report prints a sample of it after `make repro`);
the texts are escaped (markdown_text) so nothing the model or a prompt writes renders as markup,
and plain_text undoes that escape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipeline.terminal import inert


@dataclass
class Transcript:
    context: str | None
    exchanges: list[tuple[str, str]]
    stopped: list[bool]  # per reply: ended at <endOfText> / a stop string (True), else False
    # per reply: ended at another special token (<human>, <bot>, <|endoftext|>): a turn left unclosed
    stray: list[bool] = field(default_factory=list)


# Every line of a transcript's text after its first is written indented by this much: a line the
# model wrote ("## Step 1", "**human:** ok") can then never read as the file's own structure, neither
# to pipeline.report (structure lines start at the margin) nor to a Markdown viewer (a heading or
# list item may be indented by 3 spaces at most, so 4 keep it plain text of the paragraph above).
TRANSCRIPT_INDENT = "    "


# What Markdown reads as markup even inside a paragraph line, and the model (or a prompt) may write:
# a backtick (a code span runs on over the line break, so "`" in the human text and another in the
# reply turned "**bot:**" into code), a "<" that starts a tag, comment or autolink (raw HTML goes
# through to the page; "<!--" hid the "**bot:**" after it), an "&" that starts an entity reference
# ("&amp;", "&#42;" showed as "&" and "*": the text the model wrote, web text's escapes included,
# was not what the page showed), a "[" that opens a link or an image ("[docs](http://x)" showed
# "docs" with its address hidden, "![a](http://x/p.png)" fetched and showed a picture), and a
# backslash before punctuation (it would cancel the escape that follows it). Each gets a backslash,
# which Markdown shows as the character itself; "<3", "a\b", "a & b" and everything else stay as
# written. Emphasis (`*`, `_`) is left alone: it styles text but cannot hide or swallow a turn's
# marker. plain_text reads it back.
_MARKUP = re.compile(r"`|<(?=[A-Za-z/!?])|&(?=#?[0-9A-Za-z]+;)|\[|\\(?=[!-/:-@\[-`{-~])")


# A blank line would end the paragraph, and the text's later lines (indented) would then render as
# a code block; a line holding only a no-break space is not blank to Markdown, looks empty, and
# pipeline.report (which strips it) still leaves it out.
BLANK_TEXT_LINE = "\u00a0"


def markdown_text(line: str) -> str:
    """One line of a transcript's text as Markdown that shows it as written (see _MARKUP), its
    control characters as escapes (terminal.inert): a reply from a checkpoint made to write ESC
    sequences must not drive the terminal of whoever runs `cat model/eval/transcripts.md`."""
    return _MARKUP.sub(lambda m: "\\" + m.group(), inert(line)) if line.strip(" \t") else BLANK_TEXT_LINE


# "(none)" marks a transcript without a persona; a persona that says just that is written "\(none)"
# (Markdown shows it as "(none)"), so neither reads back as the other.
NO_PERSONA = "(none)"


_ESCAPED = re.compile(r"\\([\\`<&(\[])")


def plain_text(line: str) -> str:
    """A line of a transcript's text as the model or prompt wrote it: markdown_text undone."""
    return _ESCAPED.sub(r"\1", line)


def said_nothing(reply: str) -> bool:
    """A reply of whitespace at most: a bot turn no training text holds (normalize drops empty
    turns), so a turn closed so is no clean stop (evaluate's empty_reply_rate)."""
    return not reply.strip()


def _text_lines(head: str, text: str, end: str = "") -> list[str]:
    """`head` and `text` as Markdown lines: later lines indented, each line but the last ending in a
    hard line break (two spaces), `end` after the last. Split as str.splitlines splits (which
    pipeline.report reads with), so no line break inside the text escapes the indent; the text is
    escaped (markdown_text), so nothing in it starts a code span, HTML or a code block."""
    first, *rest = text.splitlines() or [""]
    lines = [
        f"{head} {markdown_text(first)}".rstrip(),
        *(TRANSCRIPT_INDENT + markdown_text(line) for line in rest),
    ]
    return [line + "  " for line in lines[:-1]] + [lines[-1] + end]


def transcripts_markdown(transcripts: list[Transcript]) -> str:
    """model/eval/transcripts.md: a `## Conversation N` section per transcript with its persona and
    turns. Structure lines (headings, `*persona:*`, `**human:**`, `**bot:**`) start at the margin;
    a text's later lines are indented (TRANSCRIPT_INDENT), so the file reads back unambiguously."""
    lines = ["# Evaluation transcripts", ""]
    for i, t in enumerate(transcripts, 1):
        lines.append(f"## Conversation {i}")
        if t.context == NO_PERSONA:  # a persona saying just that: escaped, or it would read as none
            lines.append(f"*persona:* \\{NO_PERSONA}")
        else:
            lines += _text_lines("*persona:*", t.context) if t.context else [f"*persona:* {NO_PERSONA}"]
        lines.append("")
        stray = t.stray or [False] * len(t.stopped)
        for (human, bot), stopped, strayed in zip(t.exchanges, t.stopped, stray, strict=True):
            lines += _text_lines("**human:**", human, end="  ")  # a hard break before the bot's line
            # Why an unclosed reply ended: a stray special token says the model has not learnt to
            # close its turn (stray_stop_rate); the budget, that max_new_tokens cut it. A turn closed
            # having said nothing is said too (empty_reply_rate): a blank line reads as lost text.
            why = (
                (" *(empty reply)*" if said_nothing(bot) else "")
                if stopped
                else " *(ended by a stray special token)*"
                if strayed
                else " *(reply budget reached)*"
            )
            lines += _text_lines("**bot:**", bot, end=why)
            lines.append("")
    return "\n".join(lines)
