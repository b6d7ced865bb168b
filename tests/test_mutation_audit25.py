"""Mutation audit 25: the tokenize stage's data path (pipeline/shards.py, split.py, encode.py,
report.py, schema.py). Each test names the mutation it kills; tiny inputs, no training, no subprocess."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline import encode
from pipeline.encode import to_batch
from pipeline.report import sample_exchange
from pipeline.shards import ShardWriter, TokenShards
from pipeline.tokenizer import BOT_ID, ENDOFTEXT_ID, HUMAN_ID

MESSAGES = pl.List(pl.Struct({"role": pl.String(), "content": pl.String()}))
FRAME_SCHEMA = {
    "conversation_id": pl.String(),
    "messages": MESSAGES,
    "context": pl.String(),
    "source": pl.String(),
}


def _frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=FRAME_SCHEMA)


def _row(cid: str, contents: list[str | None], source: str | None = "s") -> dict:
    messages = [{"role": ("human", "bot")[t % 2], "content": c} for t, c in enumerate(contents)]
    return {"conversation_id": cid, "messages": messages, "context": None, "source": source}


# ---------------------------------------------------------------- shards


def test_a_shard_of_one_token_is_refused(tmp_path: Path) -> None:
    """Kills shards.ShardWriter.__init__ `shard_tokens < 2` -> `< 1`: a one-token shard cannot hold
    the shortest conversation (<|endoftext|> and one more token), so the writer refuses it up front."""
    with pytest.raises(ValueError, match="shard_tokens must be >= 2, got 1"):
        ShardWriter(tmp_path / "split", 1)
    assert not (tmp_path / "split").exists()


def test_starts_of_another_integer_type_are_refused(tmp_path: Path) -> None:
    """Kills shards._open_shard's `starts.dtype != STARTS_DTYPE` check dropped: the format's starts are
    int64 (docs/shards.md); a hand-made int32 .npy was read as if it were the format's."""
    writer = ShardWriter(tmp_path, 64)
    writer.add(np.array([ENDOFTEXT_ID, HUMAN_ID, 20, BOT_ID, 21]), np.array([0, 0, 0, 0, 1]), np.array([5]))
    writer.close()
    assert TokenShards(tmp_path).n_conversations == 1
    np.save(tmp_path / "starts-00000.npy", np.array([0], dtype=np.int32))
    with pytest.raises(ValueError, match="starts-00000.npy must be a non-empty 1-d int64 array"):
        TokenShards(tmp_path)


def test_a_repeated_conversation_start_is_refused(tmp_path: Path) -> None:
    """Kills shards._open_shard `np.diff(starts) <= 0` -> `< 0`: a start given twice is an empty
    conversation, and the reader took it (a conversation draw then gave a window at the wrong place)."""
    writer = ShardWriter(tmp_path, 64)
    writer.add(np.array([ENDOFTEXT_ID, HUMAN_ID, 20, BOT_ID, 21]), np.array([0, 0, 0, 0, 1]), np.array([5]))
    writer.close()
    np.save(tmp_path / "starts-00000.npy", np.array([0, 2, 2], dtype=np.int64))
    with pytest.raises(ValueError, match="offsets must increase from 0"):
        TokenShards(tmp_path)


def test_a_shard_that_does_not_open_a_conversation_is_refused(tmp_path: Path) -> None:
    """Kills shards._open_shard's `tokens[0] != ENDOFTEXT_ID` check dropped: a shard whose first token
    is not <|endoftext|> starts mid-conversation, and its first window would too."""
    writer = ShardWriter(tmp_path, 64)
    writer.add(np.array([HUMAN_ID, 20, BOT_ID, 21]), np.array([0, 0, 0, 1]), np.array([4]))
    writer.close()
    with pytest.raises(ValueError, match="a shard must begin with <\\|endoftext\\|>"):
        TokenShards(tmp_path)


def test_a_gap_in_the_shard_numbers_is_refused(tmp_path: Path) -> None:
    """Kills TokenShards.__init__'s `indices != list(range(len(indices)))` check dropped: a split whose
    shard 00000 is missing (a partial copy) was read as whole, its conversations silently fewer."""
    writer = ShardWriter(tmp_path, 5)
    ids = [ENDOFTEXT_ID, HUMAN_ID, 20, BOT_ID, 21] * 2
    writer.add(np.array(ids), np.array([0, 0, 0, 0, 1] * 2), np.array([5, 5]))
    assert len(writer.close()) == 2
    for name in ("tokens-00000.bin", "mask-00000.bin", "starts-00000.npy"):
        (tmp_path / name).unlink()
    with pytest.raises(ValueError, match=r"shard numbers \[1\] are not 0\.\.0"):
        TokenShards(tmp_path)


# ---------------------------------------------------------------- encode


def test_a_reader_that_loses_rows_fails_the_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills encode.tokenize_split's `done != rows` check dropped: a reader that skipped a slice of
    the file wrote a short split and the stage passed; it must fail, naming both counts."""
    path = tmp_path / "train.parquet"
    _frame([_row(f"c{i}", ["hi", "yo"]) for i in range(4)]).write_parquet(path)
    real = encode._batches

    def first_batch_only(*args, **kwargs):
        yield next(real(*args, **kwargs))

    monkeypatch.setattr(encode, "_batches", first_batch_only)
    with pytest.raises(RuntimeError, match="read 2 conversations but the file has 4"):
        encode.tokenize_split(
            path, tmp_path / "out", shard_tokens=64, batch_conversations=2, executor=None, max_in_flight=2
        )


def test_a_null_source_is_refused() -> None:
    """Kills encode.to_batch's `source is null` rule dropped: metrics.json and sources.csv count per
    source, and a null one would be a row with no name."""
    with pytest.raises(ValueError, match=r"row 1 \(conversation_id 'b'\): source is null"):
        to_batch(_frame([_row("a", ["hi", "yo"]), _row("b", ["hi", "yo"], source=None)]))


# ---------------------------------------------------------------- report


def _transcripts(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "transcripts.md"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_conversation_that_fills_the_budget_exactly_is_shown(tmp_path: Path) -> None:
    """Kills report.sample_exchange `len(shown) + len(block) > max_lines` -> `>=`: a second
    conversation that ends on the last line of the budget was left out."""
    text = "## Conversation 1\n**human:** a\n**bot:** b\n\n## Conversation 2\n**human:** c\n**bot:** d\n"
    path = _transcripts(tmp_path, text)
    assert sample_exchange(path, max_lines=5) == ["human: a", "bot: b", "", "human: c", "bot: d"]
    assert sample_exchange(path, max_lines=4) == ["human: a", "bot: b"]


def test_a_blank_indented_line_adds_no_line(tmp_path: Path) -> None:
    """Kills report.sample_exchange's `line.strip()` test dropped: a line of spaces inside a reply
    became a line of indentation alone in the sample."""
    text = "## Conversation 1\n*persona:* (none)\n\n**human:** hi\n**bot:** one\n    \n    two\n"
    assert sample_exchange(_transcripts(tmp_path, text), max_lines=20) == [
        "human: hi",
        "bot: one",
        "     two",
    ]


def test_escape_codes_in_a_hand_written_transcript_are_written_out(tmp_path: Path) -> None:
    """Kills report.sample_exchange's `inert(line)` -> `line`: transcripts_markdown already writes the
    model's escape codes out, but the file is read back as found (an older run's, one edited or
    swapped in): a raw ESC in it cleared the user's screen at the end of `make repro`."""
    text = "## Conversation 1\n**human:** hi\n**bot:** \x1b[2Jgone\n"
    assert sample_exchange(_transcripts(tmp_path, text), max_lines=20) == ["human: hi", "bot: \\x1b[2Jgone"]
