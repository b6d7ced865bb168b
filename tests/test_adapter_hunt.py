"""Adapter defects found by a bug hunt on the upstream formats: a lost utterance that silently
joined the speaker's turns on either side of it (ubuntu, EmpatheticDialogues), an unusable oasst1
message that cut its tree's good thread away, and an oasst1 NaN rank that beat the best reply.

Each case is counted: rows_read reconciles with kept + quarantined + filtered.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.sources.adapters import get_adapter
from pipeline.sources.normalize import NormalizeResult, normalize_rows
from pipeline.sources.registry import SourceSpec

ED_HEADER = b"conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"


def _run(adapter: str, folder: Path) -> NormalizeResult:
    spec = SourceSpec(adapter, "hf_dataset", "x/y", adapter, "MIT", True)
    return normalize_rows(get_adapter(adapter)(folder, spec, {}))


def _reconciles(report: dict) -> bool:
    return report["rows_read"] == report["rows_kept"] + report["rows_quarantined"] + sum(
        report["rows_filtered"].values()
    )


def _turns(result: NormalizeResult) -> list[tuple[str, str, str]]:
    return result.turns.select("conversation_id", "role", "text").rows()


# --- a lost utterance of a one-row-per-utterance CSV ----------------------------------------------


@pytest.mark.parametrize(
    ("bob", "check"),
    [(b"try \xff restarting", "utf8"), (b"x" * 300, "csv_parse")],
    ids=["bad-bytes", "too-long"],
)
def test_ubuntu_unreadable_utterance_cuts_its_dialogue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bob: bytes, check: str
) -> None:
    """bob's reply holds invalid UTF-8, or is too long to be read: it was quarantined without its
    dialogue, so alice's two utterances around it merged into one human turn ("my wifi is
    down\nthanks it works"). A record lost for its size has no fields: it cuts the dialogue of the
    record before it."""
    from pipeline.sources import readers

    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 200)
    (tmp_path / "dialogueText.csv").write_bytes(
        b"folder,dialogueID,date,from,to,text\n"
        b"3,1.tsv,d,alice,,my wifi is down\n"
        b"3,1.tsv,d,bob,alice," + bob + b"\n"
        b"3,1.tsv,d,alice,bob,thanks it works\n"
        b"3,1.tsv,d,bob,alice,np\n"
        b"3,2.tsv,d,carol,,hi\n"
        b"3,2.tsv,d,dave,carol,hello\n"
    )
    result = _run("ubuntu", tmp_path)
    assert _turns(result) == [("ubuntu:3/2.tsv", "human", "hi"), ("ubuntu:3/2.tsv", "bot", "hello")]
    q = result.quarantine
    assert q.select("origin", "check").rows() == [
        ("dialogueText.csv:2", "conversation_broken"),
        ("dialogueText.csv:3", check),
        ("dialogueText.csv:4", "conversation_broken"),
        ("dialogueText.csv:5", "conversation_broken"),
    ]
    assert q["conversation_id"][1] == "ubuntu:3/1.tsv"
    assert _reconciles(result.report)


def test_empathetic_dialogues_unreadable_line_cuts_its_conversation(tmp_path: Path) -> None:
    """A line with invalid UTF-8 or the wrong number of fields is the listener's reply: quarantined
    without its conv_id, the speaker's lines before and after it merged into one human turn."""
    (tmp_path / "train.csv").write_bytes(
        ED_HEADER
        + b"hit:1,1,sad,p,1,I lost my dog,,\n"
        + b"hit:1,2,sad,p,2,Oh \xff no,,\n"
        + b"hit:1,3,sad,p,1,Thanks,,\n"
        + b"hit:1,4,sad,p,2,Welcome,,\n"
        + b"hit:2,1,sad,p,1,I lost my cat,,\n"
        + b"hit:2,2,sad,p,2,Oh no,,,,,,\n"
        + b"hit:2,3,sad,p,1,Thanks,,\n"
        + b"hit:2,4,sad,p,2,Welcome,,\n"
        + b"hit:3,1,sad,p,1,Good news,,\n"
        + b"hit:3,2,sad,p,2,Great,,\n"
    )
    result = _run("empathetic_dialogues", tmp_path)
    conv = "empathetic_dialogues:hit:3"
    assert _turns(result) == [(conv, "human", "Good news"), (conv, "bot", "Great")]
    checks = result.quarantine.select("origin", "check").rows()
    assert ("train.csv:3", "utf8") in checks and ("train.csv:7", "csv_fields") in checks
    assert result.report["quarantined_by_check"] == {"conversation_broken": 6, "csv_fields": 1, "utf8": 1}
    assert _reconciles(result.report)


# --- oasst1 trees ---------------------------------------------------------------------------------


def _msg(mid: str, parent: str | None, role: str, text: object, **extra: object) -> str:
    record = {"message_id": mid, "parent_id": parent, "message_tree_id": "t1", "role": role, "text": text}
    return json.dumps({**record, "lang": "en", **extra}) + "\n"


def test_oasst1_unusable_message_off_the_thread_keeps_the_thread(tmp_path: Path) -> None:
    """A lower-ranked reply without text (or a duplicated message id) was quarantined under its
    tree's key before the thread was written, so the whole good thread went as conversation_broken."""
    (tmp_path / "m.messages.jsonl").write_text(
        _msg("p", None, "prompter", "Q?")
        + _msg("a1", "p", "assistant", "best", rank=0)
        + _msg("a2", "p", "assistant", None, rank=1)
        + _msg("q2", "a1", "prompter", "more?")
        + _msg("a3", "q2", "assistant", "yes", rank=0)
        + _msg("a3", "q2", "assistant", "again", rank=1)
    )
    result = _run("oasst1", tmp_path)
    assert [text for _, _, text in _turns(result)] == ["Q?", "best", "more?", "yes"]
    assert result.quarantine.select("origin", "check", "conversation_id").rows() == [
        ("m.messages.jsonl:3", "missing_field", "oasst1:t1"),
        ("m.messages.jsonl:6", "duplicate_id", "oasst1:t1"),
    ]
    assert _reconciles(result.report)


def test_oasst1_nan_rank_is_unranked(tmp_path: Path) -> None:
    """A NaN rank (a pandas-written null) compares false both ways, so `min` kept the unranked reply
    that came first over the best-ranked one."""
    pl.DataFrame(
        {
            "message_id": ["p", "a2", "a1"],
            "parent_id": [None, "p", "p"],
            "message_tree_id": ["t1"] * 3,
            "role": ["prompter", "assistant", "assistant"],
            "text": ["Q?", "unranked", "best"],
            "rank": [None, float("nan"), 0.0],
        }
    ).write_parquet(tmp_path / "train.parquet")
    result = _run("oasst1", tmp_path)
    assert [text for _, _, text in _turns(result)] == ["Q?", "best"]
    assert result.report["rows_filtered"] == {"oasst_not_selected": 1} and _reconciles(result.report)


def test_empathetic_dialogues_parquet_numeric_conv_id_with_a_missing_utterance(tmp_path: Path) -> None:
    """A parquet export with conv_id as a number: its readable rows were keyed str(conv_id), but a row
    without utterance passed the number itself as conv_key, and polars refused the whole source
    with a TypeError traceback. A conv_id of 0 is a conversation like any other (not "missing")."""
    pl.DataFrame(
        {
            "conv_id": [7, 7, 7, 0, 0],
            "utterance_idx": [1, 2, 3, 1, 2],
            "speaker_idx": [1, 0, 1, 1, 0],
            "utterance": ["hi", None, "x", "hello", "hey"],
        }
    ).write_parquet(tmp_path / "train.parquet")
    result = _run("empathetic_dialogues", tmp_path)
    conv = "empathetic_dialogues:0"
    assert _turns(result) == [(conv, "human", "hello"), (conv, "bot", "hey")]
    assert result.quarantine.select("conversation_id", "check").rows() == [
        ("empathetic_dialogues:7", "conversation_broken"),
        ("empathetic_dialogues:7", "missing_field"),
        ("empathetic_dialogues:7", "conversation_broken"),
    ]
    assert _reconciles(result.report)


# --- line-per-utterance text ------------------------------------------------------------------------


def test_babylm_stray_cr_does_not_shift_the_speakers(tmp_path: Path) -> None:
    """A CR inside an LF line ended a line: "to the shop ,\\rthe one ..." became two utterances, so
    every later unlabeled line changed speaker (the question "what for ?" was read as the bot's)
    and named the wrong line. An old Mac file (CRs only) is still read by CR."""
    (tmp_path / "bnc_spoken.txt").write_bytes(
        b"where are you going ?\nto the shop ,\rthe one by the station .\nwhat for ?\nbread .\n"
    )
    result = _run("babylm", tmp_path)
    conv = "babylm:bnc_spoken.txt:1"
    assert _turns(result) == [
        (conv, "human", "where are you going ?"),
        (conv, "bot", "to the shop ,\nthe one by the station ."),
        (conv, "human", "what for ?"),
        (conv, "bot", "bread ."),
    ]
    assert result.report["rows_read"] == 4 and _reconciles(result.report)
    (tmp_path / "bnc_spoken.txt").write_bytes(b"hi\rhello\r\rnew one\ranswer\r")
    mac = _run("babylm", tmp_path)
    assert [text for _, _, text in _turns(mac)] == ["hi", "hello", "new one", "answer"]
    assert mac.turns["conversation_id"].n_unique() == 2


def test_nanochatgpt_stray_cr_is_text_not_a_line_end(tmp_path: Path) -> None:
    """The seed's own format read every lone CR as a line end: a CR inside an LF line shifted every
    later origin by a line, and two ("\\r\\r", a pasted Windows line end) made a blank line, which
    ends a conversation: the turn was quarantined as unclosed and the reply after it lost. As in the
    other text formats, only a file whose lines all end with a lone CR is read by CR."""
    (tmp_path / "chat.txt").write_bytes(
        b"<human> hi there\r\rhow are you? <endOfText>\n<bot> fine\rthanks <endOfText>\n\n"
        b"<human> next <endOfText>\n<bot> ok <endOfText>\n"
    )
    result = _run("nanochatgpt", tmp_path)
    assert _turns(result) == [
        ("nanochatgpt:chat:1", "human", "hi there\n\nhow are you?"),
        ("nanochatgpt:chat:1", "bot", "fine\nthanks"),
        ("nanochatgpt:chat:4", "human", "next"),
        ("nanochatgpt:chat:4", "bot", "ok"),
    ]
    assert result.quarantine.is_empty() and result.report["rows_read"] == 4
    # an old Mac file (lone CRs only) is still read by CR: its blank line ends a conversation
    (tmp_path / "chat.txt").write_bytes(
        b"<human> a <endOfText>\r<bot> b <endOfText>\r\r<human> c <endOfText>\r<bot> d <endOfText>\r"
    )
    mac = _run("nanochatgpt", tmp_path)
    assert [(c, t) for c, _, t in _turns(mac)] == [
        ("nanochatgpt:chat:1", "a"),
        ("nanochatgpt:chat:1", "b"),
        ("nanochatgpt:chat:4", "c"),
        ("nanochatgpt:chat:4", "d"),
    ]


# --- an empty utterance between two rows of one speaker ---------------------------------------------


def _normalize_utterances(utterances: list[tuple[str, str]], *, explicit: bool) -> NormalizeResult:
    from pipeline.sources.rows import RawRows

    rows = RawRows("s", "MIT", True)
    for n, (who, text) in enumerate(utterances, 1):
        rows.add("c", text, f"f:{n}", **({"role": who} if explicit else {"speaker": who}))
    return normalize_rows(rows.frame())


@pytest.mark.parametrize("explicit", [False, True], ids=["by-speaker", "by-role"])
@pytest.mark.parametrize("empty", ["", "  ", "\u3164"], ids=["empty", "spaces", "hangul-filler"])
def test_empty_reply_between_one_speakers_rows_lets_them_merge(explicit: bool, empty: str) -> None:
    """An empty reply (invisible characters alone count as empty) drops itself and cuts nothing: the
    other speaker's rows on either side merge into one turn, as serve and the chat template read an
    empty assistant message sent back (tests/test_chat_template.py), so training and serving agree.
    Cutting there instead (as a lost row does) quarantined 421 chitchat rows and broke that match."""
    a, b = ("human", "bot") if explicit else ("A", "B")
    seq = [(a, "hi"), (b, "hello"), (a, "how are you?"), (b, empty), (a, "hello?"), (b, "sorry")]
    result = _normalize_utterances(seq, explicit=explicit)
    assert _turns(result) == [
        ("s:c", "human", "hi"),
        ("s:c", "bot", "hello"),
        ("s:c", "human", "how are you?\nhello?"),
        ("s:c", "bot", "sorry"),
    ]
    assert result.quarantine.select("origin", "check").rows() == [("f:4", "text_present")]
    assert result.report["rows_read"] == 6 and _reconciles(result.report)


@pytest.mark.parametrize(
    ("seq", "texts"),
    [
        # the speaker's own empty row: its rows would have merged anyway
        (
            [("A", "hi"), ("B", "yo"), ("A", "so"), ("A", ""), ("A", "then"), ("B", "ok")],
            ["hi", "yo", "so\nthen", "ok"],
        ),
        # an empty row before its speaker's next row joins nothing
        ([("A", "hi"), ("B", ""), ("B", "yo"), ("A", "so"), ("B", "ok")], ["hi", "yo", "so", "ok"]),
        # at either end there is nothing to join: a leading empty row does not make its speaker the human
        ([("B", ""), ("A", "hi"), ("B", "yo"), ("A", "")], ["hi", "yo"]),
    ],
    ids=["own-speaker", "before-own-speaker", "ends"],
)
def test_empty_row_that_joins_nothing_breaks_nothing(seq: list[tuple[str, str]], texts: list[str]) -> None:
    result = _normalize_utterances(seq, explicit=False)
    assert [text for _, _, text in _turns(result)] == texts
    assert set(result.quarantine["check"]) == {"text_present"}
    assert result.report["rows_read"] == len(seq) and _reconciles(result.report)


def test_chitchat_invisible_utterance_is_an_empty_one(tmp_path: Path) -> None:
    """As read from an upstream file: a chitchat reply of only Hangul fillers (invisible) is empty,
    quarantined as `text_present`, where it was kept as a turn no one can read."""
    messages = [
        [{"text": "hi", "sender": "a", "timestamp": 1}],
        [{"text": "hello", "sender": "b", "timestamp": 2}],
        [{"text": "how are you?", "sender": "a", "timestamp": 3}],
        [{"text": "\u3164\u3164", "sender": "b", "timestamp": 4}],
        [{"text": "hello?", "sender": "a", "timestamp": 5}],
        [{"text": "sorry", "sender": "b", "timestamp": 6}],
    ]
    (tmp_path / "dataset.json").write_text(json.dumps({"u1": {"messages": messages}}))
    result = _run("chitchat", tmp_path)
    assert [text for _, _, text in _turns(result)] == ["hi", "hello", "how are you?\nhello?", "sorry"]
    assert result.report["quarantined_by_check"] == {"text_present": 1}
    assert _reconciles(result.report)


def test_chitchat_id_repeated_in_another_file_is_not_merged(tmp_path: Path) -> None:
    """chitchat ids carry no file prefix: a source of two files holding one uuid read both
    conversations as one (`chitchat:u1`, four turns, nothing quarantined). The later one is now a
    `duplicate_id`, as a repeat within one file is, and counted."""

    def conversation(first: str, reply: str) -> dict:
        return {"messages": [[{"text": first, "sender": "a"}], [{"text": reply, "sender": "b"}]]}

    (tmp_path / "a.json").write_text(json.dumps({"u1": conversation("hi", "hello")}))
    (tmp_path / "b.json").write_text(
        json.dumps({"u1": conversation("yo", "sup"), "u2": conversation("q", "a")})
    )
    result = _run("chitchat", tmp_path)
    assert _turns(result) == [
        ("chitchat:u1", "human", "hi"),
        ("chitchat:u1", "bot", "hello"),
        ("chitchat:u2", "human", "q"),
        ("chitchat:u2", "bot", "a"),
    ]
    [(origin, check, reason)] = result.quarantine.select("origin", "check", "reason").rows()
    assert (origin, check) == ("b.json:u1", "duplicate_id")
    assert reason == "conversation id u1 appears twice in the source (first in a.json); the first is read"
    assert _reconciles(result.report)


def test_a_cut_that_leaves_too_few_turns_says_so() -> None:
    """The rows before a bad row that were too few to keep were quarantined with "...; 1 turn(s)
    left", which read as if the quarantined row were the turn left (a walkthrough's finding)."""
    seq = [("A", "hi"), ("B", "\x07bell"), ("A", "so"), ("B", "ok")]
    result = _normalize_utterances(seq, explicit=False)
    assert result.quarantine.select("origin", "check").rows() == [
        ("f:1", "conversation_broken"),
        ("f:2", "text_no_control_chars"),
        ("f:3", "conversation_broken"),
        ("f:4", "conversation_broken"),
    ]
    before = result.quarantine.filter(pl.col("origin") == "f:1")["reason"][0]
    assert before == (
        "row f:2 (text_no_control_chars) of conversation s:c was quarantined, and the 1 turn(s) before it are "
        "too few to keep (at least 2: a human turn and a bot turn)"
    )
    assert _reconciles(result.report)
