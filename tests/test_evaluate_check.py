"""An independent check of evaluate's reply figures at their edges (pipeline.evaluate.run_transcripts):
an empty reply, a reply cut by the budget, and a reply that writes a marker as text.

Every reply of these runs is scripted (test_engine_support.ScriptedGPT), so each figure is exact.
"""

from __future__ import annotations

import pytest
from test_engine_support import ScriptedGPT

from pipeline.evaluate import run_transcripts
from pipeline.tokenizer import END_OF_TURN_ID, get_encoding
from pipeline.transcripts import transcripts_markdown

CFG = {"max_new_tokens": 8, "temperature": 0.0, "top_k": None, "top_p": None, "seed": 0}
PROMPTS = [{"context": None, "turns": ["hi", "and you?"]}, {"context": "A persona.", "turns": ["yo"]}]


def _figures(script: list[int]) -> tuple[list, dict]:
    return run_transcripts(ScriptedGPT([script]), PROMPTS, CFG)


def test_an_empty_reply_is_not_a_clean_stop() -> None:
    """A model that closes its turn before saying anything wrote a bot turn no training text holds
    (normalize drops empty turns): it counted as a clean stop, so a model answering every message
    with nothing had stop_rate 1.0, the best figure there is."""
    transcripts, figures = _figures([END_OF_TURN_ID])
    assert [text for t in transcripts for _, text in t.exchanges] == ["", "", ""]
    assert figures["stop_rate"] == 0.0  # was 1.0
    assert figures["empty_reply_rate"] == 1.0
    assert figures["stray_stop_rate"] == 0.0 and figures["mean_reply_tokens"] == 0
    # the transcript still says how the reply ended: at <endOfText>, not the budget
    assert all(t.stopped == [True] * len(t.exchanges) for t in transcripts)
    markdown = transcripts_markdown(transcripts)
    assert "reply budget reached" not in markdown
    # and transcripts.md says the reply was empty: a bare `**bot:**` line read as lost text
    assert markdown.count("**bot:** *(empty reply)*") == 3


def test_whitespace_alone_is_an_empty_reply() -> None:
    newline = get_encoding().encode_ordinary("\n")
    _, figures = _figures([*newline, END_OF_TURN_ID])
    assert figures["stop_rate"] == 0.0  # was 1.0
    assert figures["empty_reply_rate"] == 1.0


@pytest.mark.parametrize(
    ("text", "stop_rate", "empty_rate"),
    [
        ("fine thanks", 1.0, 0.0),  # said something, then closed its turn
        # the marker written as text is ordinary tokens: no stop, and the budget (8) cuts the reply
        ("ok <endOfText> and then some more words", 0.0, 0.0),
    ],
)
def test_replies_that_say_something(text: str, stop_rate: float, empty_rate: float) -> None:
    ids = get_encoding().encode_ordinary(text)
    transcripts, figures = _figures([*ids, END_OF_TURN_ID])
    assert figures["stop_rate"] == stop_rate and figures["empty_reply_rate"] == empty_rate
    assert figures["stray_stop_rate"] == 0.0
    if not stop_rate:  # the budget, not a stop: 8 tokens of text and no <endOfText> reached
        assert figures["mean_reply_tokens"] == CFG["max_new_tokens"] < len(ids)
        assert transcripts_markdown(transcripts).count("*(reply budget reached)*") == 3
