"""`render` (pipeline.tokenizer) as a Hugging Face chat template (Jinja), shipped in the exported
tokenizer_config.json (pipeline.hfexport) so that `tokenizer.apply_chat_template` gives the ids the
server gives (pipeline.serve).

`system` and `developer` messages (joined by newlines) are the persona, `user` -> <human>,
`assistant` -> <bot>, consecutive messages of one role join (by newlines) into one turn, content is
a string or OpenAI's list of text parts (joined by newlines). Each message is cleaned as the server
cleans it (pipeline.chatsession.clean_text, then invisible.blank_text): CR/CRLF -> LF, stripped, a
control character refused but in an assistant message (the model's own reply sent back), and
whitespace or invisible characters alone left out (it neither joins nor opens a turn), the way
normalize built the training text from such messages (pipeline/sources/adapters/_messages.py;
normalize drops blank rows, then merges same-role runs). Jinja has no Unicode normalization: the
exported tokenizer.json's NFC normalizer does it (pipeline.hfexport.tokenizer_json).

What the server refuses, the template refuses too (raise_exception), rather than render a format
the model never saw: other roles or content, and a generation prompt after anything but a user
message. What the server takes, the template takes the same way: a system message after a turn
joins the persona, and a leading assistant message (a greeting before any user turn) is dropped.
Without a generation prompt a conversation may end with the assistant: that is the training text
(render()). (The server also refuses a run of over 30 combining marks, to keep Python's NFC from
stalling, and an inner whitespace run over its limit; the tokenizer's normalizer has neither to
fear and renders them.) tests/test_chat_template.py checks all of it against the server's ids.
"""

from __future__ import annotations

import re

from pipeline.terminal import CONTROL_CHARS

# pipeline.invisible.INVISIBLE_CHARS as code point ranges (Jinja has no Unicode properties; a test
# checks them against the regex, code point by code point).
INVISIBLE_RANGES = (
    (0xAD, 0xAD), (0x34F, 0x34F), (0x600, 0x605), (0x61C, 0x61C), (0x6DD, 0x6DD), (0x70F, 0x70F),
    (0x890, 0x891), (0x8E2, 0x8E2), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F),
    (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD),
    (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)  # fmt: skip
# The control characters normalize's schema quarantines (C0 but tab and newline, DEL, C1), read off
# the one definition (all below U+0100).
CONTROL_CODES = tuple(c for c in range(0x100) if re.fullmatch(CONTROL_CHARS, chr(c)))
_WALK_CHUNK = 256  # characters the invisible-text walk takes at a time (see _clean_macro)


def _escape(code: int) -> str:
    """A code point as an escape inside a Jinja string literal (Jinja's lexer reads Python's)."""
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _jinja_string(codes: tuple[int, ...] | range) -> str:
    """A Jinja string literal of these code points."""
    return "'" + "".join(map(_escape, codes)) + "'"


def _clean_macro() -> str:
    """The template's `clean`, as the server cleans a message (chatsession.clean_text, then
    invisible.blank_text): CR/CRLF -> LF; stripped; a control character refused (training
    quarantines the message, chatsession.check_control_chars); and nothing for whitespace and invisible
    characters alone, which the server leaves out as normalize does (the template rendered a <bot>
    turn of U+3164). Only text that starts with an invisible character is walked, and only up to
    the chunk holding its first visible character."""
    invisible = " or ".join(
        f"ch == '{_escape(lo)}'" if lo == hi else f"'{_escape(lo)}' <= ch <= '{_escape(hi)}'"
        for lo, hi in INVISIBLE_RANGES
    )
    return (
        "{%- macro invisible(ch) -%}{%- if " + invisible + " -%}1{%- endif -%}{%- endmacro -%}"
        "{%- macro clean(text, bot=false) -%}"
        "{%- set text = text | replace('\\r\\n', '\\n') | replace('\\r', '\\n') | trim -%}"
        "{%- for c in " + _jinja_string(CONTROL_CODES) + " if not bot and c in text -%}"
        "{{- raise_exception('text holds a control character (C0 and C1 control characters other "
        "than tab and newline, and DEL): training text has none') -}}"
        "{%- endfor -%}"
        "{%- set seen = namespace(visible=not text or not invisible(text[0])) -%}"
        # A loop's `if` does not end it (and `break` is an extension): walking a 100 KB message
        # char by char took a second, so the text goes in chunks, and a chunk is walked only while
        # nothing visible is seen. U+001C..U+001F are whitespace to trim, not to blank_text.
        "{%- for at in range(0, text | length, " + str(_WALK_CHUNK) + ") if not seen.visible -%}"
        "{%- for ch in text[at:at + " + str(_WALK_CHUNK) + "] if not seen.visible -%}"
        "{%- if not ((ch | trim == '' and ch not in '\\x1c\\x1d\\x1e\\x1f') or invisible(ch)) -%}"
        "{%- set seen.visible = true -%}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- endfor -%}"
        "{%- if seen.visible -%}{{- text -}}{%- endif -%}"
        "{%- endmacro -%}"
    )


CHAT_TEMPLATE = (
    "{%- macro text_of(content) -%}"
    "{%- if content is string -%}{{- content -}}"
    # A missing or null content (transformers drops null fields) is an Undefined, which is a sequence.
    "{%- elif content is defined and content is sequence and content is not mapping -%}"
    "{%- for part in content -%}"
    "{%- if part is not mapping or part['type'] != 'text' or part['text'] is not string -%}"
    "{{- raise_exception('only text parts are supported in a message content list') -}}"
    "{%- endif -%}"
    "{{- ('' if loop.first else '\\n') + part['text'] -}}"
    "{%- endfor -%}"
    "{%- else -%}{{- raise_exception('a message content must be a string or a list of text parts') -}}"
    "{%- endif -%}"
    "{%- endmacro -%}" + _clean_macro() + "{%- macro turn(role, text) -%}"
    "{{- ('<human>' if role == 'user' else '<bot>') + clean(text, role == 'assistant') + '<endOfText>' -}}"
    "{%- endmacro -%}"
    "{%- set persona = namespace(text='', any=false) -%}"
    "{%- for m in messages if m['role'] in ['system', 'developer'] -%}"
    "{%- set text = clean(text_of(m['content'])) -%}"
    "{%- if text -%}"
    "{%- set persona.text = persona.text + ('\\n' if persona.any else '') + text -%}"
    "{%- set persona.any = true -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{{- '<|endoftext|>' + clean(persona.text) -}}"
    "{%- set ns = namespace(role=none, text='') -%}"
    "{%- for m in messages -%}"
    # System messages anywhere are the persona (gathered above), as training read them.
    "{%- if m['role'] in ['system', 'developer'] -%}"
    "{%- elif m['role'] not in ['user', 'assistant'] -%}"
    "{{- raise_exception('chat roles are system, developer, user and assistant, not ' + m['role'] | string) -}}"
    "{%- else -%}"
    # As the server: an assistant message's tool calls are refused (this model makes none), and its
    # null or missing content (OpenAI allows it) is empty, left out like "".
    "{%- if m['role'] == 'assistant' and (m['tool_calls'] or m['function_call']) -%}"
    "{{- raise_exception('this model cannot call tools') -}}"
    "{%- endif -%}"
    "{%- if m['role'] == 'assistant' and (m['content'] is not defined or m['content'] is none) -%}"
    "{%- set text = '' -%}"
    "{%- else -%}{%- set text = clean(text_of(m['content']), m['role'] == 'assistant') -%}{%- endif -%}"
    "{%- if not text -%}"
    # An assistant greeting before the first user message is left out, as normalize leaves out bot
    # rows before a conversation's first human turn: the model never saw a conversation open so.
    "{%- elif ns.role is none and m['role'] == 'assistant' -%}"
    "{%- elif ns.role == m['role'] -%}{%- set ns.text = ns.text + '\\n' + text -%}"
    "{%- else -%}"
    "{%- if ns.role is not none -%}{{- turn(ns.role, ns.text) -}}{%- endif -%}"
    "{%- set ns.role = m['role'] -%}{%- set ns.text = text -%}"
    "{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if ns.role is not none -%}{{- turn(ns.role, ns.text) -}}{%- endif -%}"
    "{%- if add_generation_prompt -%}"
    "{%- if ns.role != 'user' -%}"
    "{{- raise_exception('the last message must be a user message with text to add a generation prompt') -}}"
    "{%- endif -%}"
    "{{- '<bot>' -}}"
    "{%- endif -%}"
)
