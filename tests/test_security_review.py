"""Security review: gaps tests/test_security.py left open. Each test plays the attacker (a checkpoint
or Hugging Face folder from someone else) and checks what reaches the user's terminal."""

from __future__ import annotations

import io
import re
from pathlib import Path

from test_engine_support import ScriptedGPT

from pipeline.chat import chat_loop
from pipeline.chatsession import ChatSession
from pipeline.engine import Engine
from pipeline.report import sample_exchange
from pipeline.terminal import inert
from pipeline.tokenizer import END_OF_TURN_ID, get_encoding
from pipeline.transcripts import Transcript, transcripts_markdown

# OSC 52 (writes the clipboard: here `rm -rf ~` in base64), OSC 0 (the window title), CSI 2J (clears
# the screen), a CR that writes over the line, BEL, and the 8-bit CSI (U+009B) some terminals obey.
HOSTILE = "\x1b]52;c;cm0gLXJmIH4K\x07\x1b]0;pwned\x07\x1b[2Jsafe\rtext\x9b31m\tend\nnext"
# What a terminal would act on: C0 controls but LF and TAB, DEL, C1 controls.
_ACTIVE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def test_inert_escapes_controls_and_keeps_line_breaks_and_tabs() -> None:
    assert inert(HOSTILE) == (
        r"\x1b]52;c;cm0gLXJmIH4K\x07\x1b]0;pwned\x07\x1b[2Jsafe\rtext\x9b31m" + "\tend\nnext"
    )
    assert inert("plain text, ünïcödé, 表 <bot>\n") == "plain text, ünïcödé, 表 <bot>\n"


def test_chat_reply_escape_codes_are_shown_not_run() -> None:
    """A model emits any bytes it is made to (GPT-2's BPE has a token for each): a checkpoint from
    someone else that replied with OSC 52 set the user's clipboard through `nanochatgpt chat`,
    which wrote each reply piece to the terminal as it came."""
    enc = get_encoding()
    engine = Engine(ScriptedGPT([enc.encode_ordinary(HOSTILE) + [END_OF_TURN_ID]]), enc=enc)
    session = ChatSession(engine, temperature=0.0, max_new_tokens=100)
    out = io.StringIO()
    assert chat_loop(session, io.StringIO("hello\n"), out, io.StringIO()) == 0
    shown = out.getvalue()
    assert not _ACTIVE.search(shown), repr(shown)
    assert shown == inert(HOSTILE) + "\n"


def test_sample_exchange_escape_codes_are_shown_not_run(tmp_path: Path) -> None:
    """`make repro` prints a sample of model/eval/transcripts.md: the model's replies, raw."""
    path = tmp_path / "transcripts.md"
    path.write_text(transcripts_markdown([Transcript(None, [("hi", HOSTILE)], [True])]), encoding="utf-8")
    lines = sample_exchange(path, max_lines=20)
    assert not any(_ACTIVE.search(line) for line in lines), lines
    assert lines[1].startswith(r"bot: \x1b]52;c;cm0gLXJmIH4K\x07")


def test_the_terminal_escapes_what_normalize_quarantines_and_the_bidi_controls() -> None:
    """terminal.inert escapes every character normalize quarantines (one pattern, CONTROL_CHARS), and
    the bidi embeddings, overrides and isolates too, which normalize keeps: right-to-left text uses
    them, and only showing them raw misleads."""
    from pipeline import schema, terminal

    assert schema._CONTROL_CHARS == terminal.CONTROL_CHARS
    quarantined = re.compile(schema._CONTROL_CHARS)
    for code in range(0x3000):
        char = chr(code)
        if quarantined.fullmatch(char):
            assert inert(char) == repr(char)[1:-1], hex(code)
    for char in BIDI_CONTROLS:
        assert not quarantined.search(char), hex(ord(char))


# The explicit bidi embeddings, overrides and isolates: LRE RLE PDF LRO RLO, LRI RLI FSI PDI.
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_inert_escapes_bidi_controls_and_keeps_right_to_left_text() -> None:
    """An RLO in a reply showed the rest of its line reversed where the terminal lays out bidi text:
    `inert` wrote it raw (it is not a control character, so the control set missed it)."""
    for char in BIDI_CONTROLS:
        assert inert(f"a{char}b") == f"a\\u{ord(char):04x}b"
    # Letters written right to left, and the one-character marks (LRM, RLM, ALM), which reorder
    # nothing past their neighbours, stay as they are.
    rtl = "שלום \u200fعالم\u200e \u061c!"
    assert inert(rtl) == rtl


def test_chat_reply_bidi_override_is_shown_as_its_escape() -> None:
    """`nanochatgpt chat` writes a reply piece by piece: the override, alone in its piece or not, is
    shown as `\\u202e` and the text around it in the order it was written."""
    enc = get_encoding()
    reply = "pay \u202eusd 001\u202c to alice"
    engine = Engine(ScriptedGPT([enc.encode_ordinary(reply) + [END_OF_TURN_ID]]), enc=enc)
    session = ChatSession(engine, temperature=0.0, max_new_tokens=100)
    out = io.StringIO()
    assert chat_loop(session, io.StringIO("hello\n"), out, io.StringIO()) == 0
    shown = out.getvalue()
    assert not any(char in shown for char in BIDI_CONTROLS), repr(shown)
    assert "pay \\u202eusd 001\\u202c to alice" in shown


def test_transcripts_md_holds_no_control_character_a_reply_wrote(tmp_path: Path) -> None:
    """model/eval/transcripts.md wrote the reply's ESC sequences raw: `cat` of the file ran them."""
    path = tmp_path / "transcripts.md"
    path.write_text(transcripts_markdown([Transcript(None, [("hi", HOSTILE)], [True])]))
    written = path.read_text()
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", written)
    assert "\\x1b]52" in written.replace("\\\\", "\\")  # shown as its escape (Markdown-escaped backslash)
