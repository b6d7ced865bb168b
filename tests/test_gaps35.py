"""Four small gaps of session 35: a resume's plot trim on a torn or garbage row, a BOM's bytes in a
line's invalid-UTF-8 offset, the build's control-character reason, and the thread tuner on replies of
a few decode steps. All fast: tiny inputs, a fake clock."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from test_build import conversation_rows, run_build, write_corpus
from test_threadtuner import BUSY, FakeCPU, run

from pipeline.runlog import trim_plots
from pipeline.sources.readers import BOM, iter_jsonl, iter_lines

# ---------------------------------------------------------------- trim_plots


def _tsv(tmp_path: Path, body: bytes) -> Path:
    tsv = tmp_path / "plots" / "metrics" / "train" / "loss.tsv"
    tsv.parent.mkdir(parents=True, exist_ok=True)
    tsv.write_bytes(b"step\tloss\n" + body)
    return tsv


def test_a_torn_or_garbage_last_row_is_dropped_on_resume(tmp_path: Path) -> None:
    """A power loss can leave NUL bytes at a plot file's end, a kill or a full disk a cut row: int()
    of its step raised, and the resume crashed. Such a row is dropped, as a row after the step is."""
    good = b"1\t1.0\n2\t0.5\n3\t0.25\n"
    for tail in (b"\x00\x00\x00\x00", b"\x00\x00\n", b"4\t0.1", b"\xff\xfe garbage\n"):
        tsv = _tsv(tmp_path, good + tail)
        trim_plots(tmp_path, 3)
        assert tsv.read_bytes() == b"step\tloss\n" + good, tail


def test_a_cut_row_whose_step_prefix_parses_is_not_kept(tmp_path: Path) -> None:
    """A row "12\\t0.3\\n" cut after its "1" read as one of step 1, kept by a resume at step 11, and
    dvclive's next row then followed it on its line ("1" + "12\\t..." = "112\\t...")."""
    tsv = _tsv(tmp_path, b"10\t0.5\n11\t0.4\n1")
    trim_plots(tmp_path, 11)
    assert tsv.read_bytes() == b"step\tloss\n10\t0.5\n11\t0.4\n"


def test_a_header_cut_before_its_line_end_is_removed(tmp_path: Path) -> None:
    """dvclive writes a header only into a file it creates: left, its rows would follow the header on
    its line. Removed, as an empty file is (tests/test_resume34.py)."""
    tsv = _tsv(tmp_path, b"")
    tsv.write_bytes(b"step\tlo")
    trim_plots(tmp_path, 3)
    assert not tsv.exists()


def test_an_unreadable_row_before_a_kept_one_stays_and_good_rows_are_never_dropped(tmp_path: Path) -> None:
    """A row that cannot be read in the middle was not left by a cut write (rows were appended after
    it): it lies in the checkpoint's history, and trimming keeps it as it is; rows after the step go."""
    body = b"1\t1.0\n\x00\x00\n2\t0.5\nnot a row\n3\t0.25\n4\t0.2\n5\t0.1\n"
    tsv = _tsv(tmp_path, body)
    trim_plots(tmp_path, 3)
    assert tsv.read_bytes() == b"step\tloss\n1\t1.0\n\x00\x00\n2\t0.5\nnot a row\n3\t0.25\n"
    before = tsv.read_bytes()
    trim_plots(tmp_path, 3)  # nothing after the step: the file is left as it is
    assert tsv.read_bytes() == before


# ---------------------------------------------------------------- a BOM and a line's byte offset


def test_an_invalid_byte_after_a_bom_is_counted_from_the_lines_first_byte(tmp_path: Path) -> None:
    """The reason counts from the line's start, a byte-order mark's 3 bytes included (as decode_whole
    counts a whole file's): the 0xFF of BOM + "ab" + 0xFF is byte 5, where `xxd` shows it; it said 2."""
    path = tmp_path / "a.jsonl"
    path.write_bytes(BOM + b"ab\xffcd\n" + BOM + b"\xff\n")  # the second: a file joined by `cat`
    assert [r.reason for r in iter_jsonl(path)] == [
        "invalid UTF-8 at byte 5 of the line",
        "invalid UTF-8 at byte 3 of the line",
    ]
    (tmp_path / "b.txt").write_bytes(BOM + b"ok\r\xffx\r")  # old Mac line ends: the mark is line 1's only
    reasons = [r.reason for r in iter_lines(tmp_path / "b.txt", lone_cr=True)]
    assert reasons == [None, "invalid UTF-8 at byte 0 of the line"]


# ---------------------------------------------------------------- the build's control characters


def test_the_builds_control_character_reason_names_the_character_and_where(tmp_path: Path) -> None:
    """normalize names the first control character and its position; the build (which checks turn
    tables again: a contributed table reaches it unchecked) said "text holds control characters"."""
    rows = conversation_rows("chitchat:ok", ["hi", "hello"], "chitchat", "MIT", True)
    rows += conversation_rows(
        "chitchat:bell", ["hi", "ok", "ri\x07ng", "say \x1b[1m"], "chitchat", "MIT", True
    )
    rows += conversation_rows("chitchat:ctx", ["hi", "ok"], "chitchat", "MIT", True, context="You\x85are")
    write_corpus(tmp_path, {"chitchat": rows})
    registry = {"chitchat": {"licence": "MIT", "commercial": True, "kind": "package"}}
    run_build(tmp_path, ["chitchat"], registry)
    q = pl.read_parquet(tmp_path / "data/dataset/full/quarantine.parquet")
    reasons = dict(q.select("conversation_id", "reason").unique().iter_rows())
    assert reasons == {
        "chitchat:bell": "turn 2: text holds control characters (the first, U+0007, at character 3)",
        "chitchat:ctx": "turn 0: context holds control characters (the first, U+0085, at character 4)",
    }
    assert q.height == 6  # every turn of both conversations, each with its conversation's reason


# ---------------------------------------------------------------- the thread tuner on short replies


def test_replies_of_four_decode_steps_still_give_the_other_counts_turns() -> None:
    """Each reply's prefill started a new stint, and the count in use needs MIN_TURN counted steps in
    its own since the last round: with 4 decode steps a reply (the first regroups: 3 counted) none
    came due, nor a load change, and the tuner kept torch's default count beside a busy process,
    where 1 thread is over twice as fast, however many replies came."""
    cpu = FakeCPU(dict(BUSY))
    tuner = cpu.tuner()
    counts: list[int] = []
    for _ in range(100):
        tuner.before_untimed()  # the reply's prefill, at the largest count
        counts += run(cpu, tuner, 4)
        cpu.wait(2.0)
    assert tuner.chosen == 1 and tuner.switches == 1
    assert counts[-40:] == [1] * 40
