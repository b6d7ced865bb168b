"""Tests from mutation audit 19 (sources.readers, evaluate, tokenview): each kills a hand-made mutant
that the suite let through; its docstring names the mutation."""

from __future__ import annotations

from pathlib import Path

import pytest

# ---------------------------------------------------------------- sources.readers


def test_a_broken_json_file_is_quarantined_at_the_line_where_it_breaks(tmp_path: Path) -> None:
    """Mutation readers.iter_json_records: `Record(e.lineno, ...)` -> `Record(1, ...)` for a .json file
    that does not parse. The quarantine pointed at line 1 of a file broken on line 3, where the
    reason and an editor both say line 3."""
    from pipeline.sources.readers import iter_json_records

    path = tmp_path / "t.json"
    path.write_text('[\n{"a": 1},\n{"a": 2,,}\n]\n', encoding="utf-8")
    (only,) = list(iter_json_records(path))
    assert (only.line, only.check) == (3, "json_parse")
    assert only.reason == "broken JSON (Expecting property name enclosed in double quotes at line 3)"


def test_a_broken_json_line_names_the_column_where_it_breaks(tmp_path: Path) -> None:
    """Mutation readers.iter_jsonl: the reason's `at column {e.colno}` dropped. A record line holds a
    whole conversation, often thousands of characters: the column is what finds the damage in it."""
    from pipeline.sources.readers import iter_jsonl

    path = tmp_path / "t.jsonl"
    path.write_text('{"a": 1}\n{"a": 1,}\n{"b": 2}\n', encoding="utf-8")
    got = [(r.line, r.check, r.reason) for r in iter_jsonl(path)]
    assert got == [
        (1, None, None),
        (2, "json_parse", "broken JSON line (Expecting property name enclosed in double quotes at column 9)"),
        (3, None, None),
    ]


def test_a_line_of_invalid_utf8_holds_no_value(tmp_path: Path) -> None:
    """Mutation readers.iter_lines: `text if err is None else None` -> `text`. A line refused for its
    bytes (check `utf8`) carried its U+FFFD-replaced text as its value, which a reader taking
    `value` without `ok` would keep as data; `raw` is where that text is shown."""
    from pipeline.sources.readers import iter_lines

    path = tmp_path / "t.txt"
    path.write_bytes(b"fine\nbad \xff byte\nfine too\n")
    got = [(r.line, r.value, r.raw, r.check) for r in iter_lines(path)]
    assert got == [
        (1, "fine", "fine", None),
        (2, None, "bad \ufffd byte", "utf8"),
        (3, "fine too", "fine too", None),
    ]


# ---------------------------------------------------------------- evaluate


@pytest.fixture(scope="module")
def val_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve rendered conversations in token shards (several shards, every window scored)."""
    import numpy as np

    from pipeline.shards import ShardWriter
    from pipeline.tokenizer import render

    ids: list[int] = []
    mask: list[int] = []
    lengths: list[int] = []
    for n in range(12):
        turns = [
            {"role": "human", "content": f"question {n} " * (n + 1)},
            {"role": "bot", "content": "an answer " * 5},
        ]
        i, m = render(turns)
        ids += i
        mask += m
        lengths.append(len(i))
    split = tmp_path_factory.mktemp("tokens") / "val"
    writer = ShardWriter(split, shard_tokens=100)
    writer.add(np.array(ids), np.array(mask), np.array(lengths))
    writer.close()
    return split


def _tiny_model(block_size: int):  # noqa: ANN202 (torch imported lazily)
    import torch

    from pipeline.model import GPT, GPTConfig

    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=block_size, n_layer=1, n_head=2, n_embd=16)).eval()


def test_the_loss_report_counts_windows_not_batches(val_dir: Path) -> None:
    """Mutation evaluate.bot_token_loss: `windows += x.shape[0]` -> `windows += 1` (batches counted as
    windows). LossReport.windows says how many block-sized windows were scored."""
    from pipeline.evaluate import bot_token_loss
    from pipeline.shards import TokenShards

    shards = TokenShards(val_dir)
    expected = sum(x.shape[0] for x, _, _ in shards.iter_eval_batches(3, 32))
    assert expected > shards.n_eval_batches(3, 32)  # several windows a batch: the two counts differ
    report = bot_token_loss(_tiny_model(32), val_dir, batch_size=3)
    assert report.windows == expected
    assert report.tokens == report.split_tokens == shards.loss_tokens()  # every window: the whole split


# ---------------------------------------------------------------- tokenview


def test_every_window_of_step_ones_global_batch_is_marked_as_step_one(tmp_path: Path) -> None:
    """Mutation tokenview.training_windows: `r < cfg.batch_size * cfg.grad_accum` -> `r < cfg.batch_size`.
    The trainer draws step 1's whole global batch (batch_size * grad_accum windows) in one draw
    (train.GlobalBatches), so with grad_accum 2 the rows past the first micro-batch are step 1's too;
    they were labelled as rows of a plain seeded draw."""
    from test_tokenview import ROOT, write_project

    from pipeline.tokenview import training_windows

    root = write_project(tmp_path)
    params = (ROOT / "params.yaml").read_text(encoding="utf-8")  # the real cpu-tiny profile, accum 2
    accum = params.replace("batch_size: 12\n    grad_accum: 1\n", "batch_size: 2\n    grad_accum: 2\n", 1)
    assert accum != params
    (root / "params.yaml").write_text(accum, encoding="utf-8")
    _, shown = training_windows(root, None, 5, None)
    assert [w.first_step for w in shown] == [True, True, True, True, False]
    _, seeded = training_windows(root, None, 2, 7)  # an explicit seed is no run's step 1
    assert [w.first_step for w in seeded] == [False, False]
