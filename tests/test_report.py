"""pipeline.report: what `make repro` prints at the end, read from the evaluate stage's real output."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.report import _metric, sample_exchange
from pipeline.transcripts import Transcript, markdown_text, plain_text, transcripts_markdown

TRANSCRIPTS = [
    Transcript(
        None,
        [("Hello, how are you today?", "haha... I think that\nso I've heard"), ("And you?", "Fine.")],
        [True, True],
    ),
    Transcript("I am a friendly librarian.", [("What do you do?", "I read.\nA lot.")], [True]),
    Transcript(None, [("What is your favorite food?", "Yeah")], [False]),
]


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "transcripts.md"
    path.write_text(transcripts_markdown(TRANSCRIPTS))
    return path


def test_conversations_stay_apart_and_replies_keep_their_lines(tmp_path: Path) -> None:
    """It used to glue the turns of every conversation into one and cut replies at their first line."""
    assert sample_exchange(_write(tmp_path), max_lines=20) == [
        "human: Hello, how are you today?",
        "bot: haha... I think that",
        "     so I've heard",
        "human: And you?",
        "bot: Fine.",
        "",
        "persona: I am a friendly librarian.",
        "human: What do you do?",
        "bot: I read.",
        "     A lot.",
        "",
        "human: What is your favorite food?",
        "bot: Yeah *(reply budget reached)*",
    ]


def test_only_whole_conversations_fit_the_budget(tmp_path: Path) -> None:
    path = _write(tmp_path)
    assert sample_exchange(path, max_lines=12)[-1] == "     A lot."  # the third would not fit whole
    assert sample_exchange(path, max_lines=3) == [  # the first is shown even when cut
        "human: Hello, how are you today?",
        "bot: haha... I think that",
        "     so I've heard",
    ]


def test_missing_or_empty_transcripts_say_so(tmp_path: Path) -> None:
    assert "dvc repro evaluate" in sample_exchange(tmp_path / "none.md")[0]
    empty = tmp_path / "empty.md"
    empty.write_text(transcripts_markdown([]))
    assert sample_exchange(empty) == ["(no conversations in the transcripts)"]


def test_reply_lines_that_look_like_structure_stay_in_the_reply(tmp_path: Path) -> None:
    """A reply line "## Step 1" was read as a new conversation and "**human:** ok" as a human turn."""
    transcripts = [
        Transcript(None, [("Hi", "Sure:\n## Step 1\n**human:** ok"), ("next?", "bye")], [True, True]),
        Transcript("p\n**bot:** q", [("Q", "A")], [True]),
    ]
    path = tmp_path / "transcripts.md"
    path.write_text(transcripts_markdown(transcripts), encoding="utf-8")
    assert sample_exchange(path, max_lines=20) == [
        "human: Hi",
        "bot: Sure:",
        "     ## Step 1",
        "     **human:** ok",
        "human: next?",
        "bot: bye",
        "",
        "persona: p",
        "         **bot:** q",
        "human: Q",
        "bot: A",
    ]


def test_texts_are_printed_as_written_not_as_their_markdown_escapes(tmp_path: Path) -> None:
    """transcripts.md escapes backticks, tags and backslashes so Markdown shows them; the printed
    sample must show what the model wrote, not the escapes."""
    reply = "use `ls` <b>now</b> \\o/\nline two has \\` and <3"
    path = tmp_path / "transcripts.md"
    path.write_text(transcripts_markdown([Transcript("be `terse`", [("a <i>tag", reply)], [True])]))
    assert "\\`" in path.read_text()  # escaped in the file
    assert sample_exchange(path, max_lines=20) == [
        "persona: be `terse`",
        "human: a <i>tag",
        "bot: use `ls` <b>now</b> \\o/",
        "     line two has \\` and <3",
    ]


@given(st.text(alphabet=st.sampled_from("ab \\`<>!/3\t&#;([]"), min_size=1).filter(lambda s: s.strip(" \t")))
def test_plain_text_undoes_markdown_text(line: str) -> None:
    assert plain_text(markdown_text(line)) == line


def test_an_entity_reference_the_model_wrote_shows_as_written(tmp_path: Path) -> None:
    """Markdown reads "&amp;" as "&" and "&#42;" as "*": transcripts.md showed not the reply the model
    wrote (web text's escapes included) but what those decode to; a lone "&" is left as it is."""
    markdown_it = pytest.importorskip("markdown_it")
    reply = "fish &amp; chips &#42; &copy; \\&amp; and a & b"
    text = transcripts_markdown([Transcript(None, [("say &lt;b&gt;", reply)], [True])])
    html = markdown_it.MarkdownIt().render(text)
    assert "say &amp;lt;b&amp;gt;" in html and "fish &amp;amp; chips &amp;#42; &amp;copy;" in html
    assert "\\&amp;amp; and a &amp; b" in html  # a backslash before it and a lone "&" stay too
    path = tmp_path / "transcripts.md"
    path.write_text(text)
    assert sample_exchange(path) == ["human: say &lt;b&gt;", f"bot: {reply}"]


def test_a_persona_that_says_none_is_not_read_as_no_persona(tmp_path: Path) -> None:
    path = tmp_path / "transcripts.md"
    path.write_text(
        transcripts_markdown(
            [Transcript("(none)", [("Q", "A")], [True]), Transcript(None, [("Q", "A")], [True])]
        )
    )
    assert sample_exchange(path, max_lines=20) == [
        "persona: (none)",
        "human: Q",
        "bot: A",
        "",
        "human: Q",
        "bot: A",
    ]


def test_a_null_metric_is_shown_as_not_measured(tmp_path: Path) -> None:
    """metrics.json writes a figure it could not measure as null (an empty val split, NaN weights):
    `make repro` printed "val loss on bot tokens None"."""
    path = tmp_path / "metrics.json"
    path.write_text('{"val_loss_bot": null, "stop_rate": 0.5, "replies": 3}')
    assert [_metric(str(path), key) for key in ("val_loss_bot", "stop_rate", "replies", "absent")] == [
        "-",
        "0.500",
        "3",
        "-",
    ]
