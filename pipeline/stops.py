"""Token ids -> text that is safe to show, one token at a time.

Two things make streaming text harder than decoding at the end:
- a character can be split across tokens (GPT-2 BPE works on bytes), so bytes are buffered
  until they form whole UTF-8 characters;
- a stop string can span tokens, and must not be shown at all (OpenAI semantics: the output ends
  just before the first stop string). So any tail of the text that could still grow into a stop
  string is held back until the next token says whether it does.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence

import tiktoken

MAX_STOP_STRINGS = 4
# OpenAI documents no length for a stop string; AWS Bedrock's stopSequences take up to 1,000
# characters each. A cap is needed: streaming holds back up to a stop string's length of text, and
# checking the held tail costs up to the square of that length at a token that breaks a near-match
# (four 10,000-character stops: 29 ms for that token, a 1 MiB request's could take seconds). At
# 1,000 that token costs ~1 ms, and no reply a chat model writes needs a longer marker.
MAX_STOP_CHARS = 1000


def check_stop_strings(stop: Sequence[str] | str | None) -> tuple[str, ...]:
    """Normalise `stop` to a tuple; at most four non-empty strings (as the OpenAI API), each of at
    most MAX_STOP_CHARS characters."""
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = (stop,)
    stop = tuple(stop)
    if len(stop) > MAX_STOP_STRINGS:
        raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings, got {len(stop)}")
    for s in stop:
        if not isinstance(s, str) or not s:
            raise ValueError(f"stop strings must be non-empty strings, got {s!r}")
        if len(s) > MAX_STOP_CHARS:
            raise ValueError(
                f"a stop string may have at most {MAX_STOP_CHARS} characters, got one of {len(s)}"
                f" starting {s[:20]!r}"
            )
    return stop


class StopStringDecoder:
    """Decodes one row's tokens incrementally; `feed` returns the text that became safe to show.

    After a stop string is found, `stopped` is True, the text before it has been returned,
    and everything after it is discarded.
    """

    def __init__(self, enc: tiktoken.Encoding, stop: Sequence[str] | str | None = ()) -> None:
        self.enc = enc
        self.stop = check_stop_strings(stop)
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""  # decoded text not yet shown: it may be the start of a stop string
        self.stopped = False

    def feed(self, token_id: int) -> str:
        if self.stopped:
            return ""
        self._pending += self._utf8.decode(self.enc.decode_single_token_bytes(token_id))
        return self._release()

    def flush(self) -> str:
        """End of generation: show what was held back, unless the end makes it a stop string
        (then `stopped` is True, as after `feed`)."""
        if self.stopped:
            return ""
        # The end can still complete a stop string: a character cut short decodes to U+FFFD now.
        self._pending += self._utf8.decode(b"", final=True)
        out = self._release()
        if not self.stopped:
            out += self._pending
            self._pending = ""
        return out

    def _release(self) -> str:
        if not self.stop:
            out, self._pending = self._pending, ""
            return out
        # The stop that completes first ends the reply (then the one that starts first): what the
        # token-by-token check does across tokens, so that where tokens split the text cannot
        # change the reply ("bc" inside "abcd" ends "abcd" at "a" however it was tokenized).
        hits = [(i + len(s), i) for s in self.stop if (i := self._pending.find(s)) >= 0]
        if hits:
            self.stopped = True
            out = self._pending[: min(hits)[1]]
            self._pending = ""
            return out
        hold = self._held_tail(self._pending)
        out = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(out) :]
        return out

    def _held_tail(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
        best = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best
