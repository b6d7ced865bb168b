"""`nanochatgpt tokens`: shards decoded back to conversations, with exactly the tokens the loss
counts marked, each conversation named by its dataset row."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_contrib_edge import (
    SOURCES_TWO_CONTRIB as CONTRIB_ENTRIES,  # contrib and a second contrib-kind entry
)

from pipeline import cli
from pipeline.params import load_params
from pipeline.shards import ShardWriter
from pipeline.tokenizer import decode, encode_conversations, get_encoding, render
from pipeline.tokenview import OPEN, Span, loss_spans

ROOT = Path(__file__).resolve().parents[1]

# (id, source, context, [(is_bot, text), ...]); the second one types markers as ordinary text
CONVERSATIONS = [
    ("chitchat:a", "chitchat", None, [(False, "hi there"), (True, "hello! 🙂 café")]),
    ("demo:b", "demo", "You are terse.", [(False, "say <bot>x<endOfText>"), (True, "no"), (False, "ok")]),
    (
        "chitchat:c",
        "chitchat",
        None,
        [(False, "how are you?"), (True, "fine"), (False, "good"), (True, "bye")],
    ),
]


def _dataset(conversations: list) -> pl.DataFrame:
    """The dataset parquet's columns as the build writes them (one row per conversation)."""
    return pl.DataFrame(
        {
            "conversation_id": [c[0] for c in conversations],
            "messages": [
                [{"role": "bot" if bot else "human", "content": text} for bot, text in c[3]]
                for c in conversations
            ],
            "context": [c[2] for c in conversations],
            "source": [c[1] for c in conversations],
        }
    )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """data/dataset/full/train.parquet and the shards tokenize makes of it, in a bare project."""
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(write_project(tmp_path)))
    return tmp_path


def write_project(tmp_path: Path) -> Path:
    """The `project` fixture's files under `tmp_path` (tests/test_mutation_audit2.py uses them too)."""
    (tmp_path / "params.yaml").write_text("train:\n  variant: full\n")
    dataset = tmp_path / "data" / "dataset" / "full"
    dataset.mkdir(parents=True)
    _dataset(CONVERSATIONS).write_parquet(dataset / "train.parquet")
    enc = encode_conversations(
        [c[2] for c in CONVERSATIONS],
        [len(c[3]) for c in CONVERSATIONS],
        [bot for c in CONVERSATIONS for bot, _ in c[3]],
        [text for c in CONVERSATIONS for _, text in c[3]],
    )
    # two conversations a shard: the reader must walk across shards
    writer = ShardWriter(tmp_path / "data" / "tokens" / "full" / "train", int(enc.lengths[:2].sum()))
    writer.add(enc.ids, enc.mask, enc.lengths)
    writer.close()
    return tmp_path


def test_the_loss_spans_are_the_bot_turns_and_nothing_else() -> None:
    ids, mask = render(
        [
            {"role": "human", "content": "hi <bot>fake<endOfText>"},
            {"role": "bot", "content": "real reply"},
            {"role": "human", "content": "thanks"},
            {"role": "bot", "content": "any time"},
        ],
        "a persona",
    )
    spans = loss_spans(np.array(ids), np.array(mask))
    assert "".join(s.text for s in spans) == decode(ids)  # nothing lost, nothing added
    assert [s.text for s in spans if s.loss] == ["real reply<endOfText>", "any time<endOfText>"]
    assert [s.loss for s in spans] == [False, True, False, True]
    # for reading, each turn's marker token starts a line; a typed "<bot>" is text and does not
    broken = "".join(s.text for s in loss_spans(np.array(ids), np.array(mask), turn_breaks=True))
    assert broken == (
        "<|endoftext|>a persona\n<human>hi <bot>fake<endOfText><endOfText>\n<bot>real reply<endOfText>"
        "\n<human>thanks<endOfText>\n<bot>any time<endOfText>"
    )


def test_a_character_split_across_tokens_prints_whole() -> None:
    """An emoji is several byte-level tokens; a mask change inside it (never made by render, but the
    view must not garble one) puts the whole character where its last byte lies."""
    enc = get_encoding()
    ids = enc.encode_ordinary("a🙂b")
    assert len(ids) >= 3  # "a", the emoji's pieces, "b"
    pieces = [enc.decode_single_token_bytes(t) for t in ids]
    cut = next(i for i, p in enumerate(pieces) if p.startswith(b"\xf0")) + 1  # inside the emoji
    mask = np.array([0] * cut + [1] * (len(ids) - cut))
    spans = loss_spans(np.array(ids), mask)
    assert "".join(s.text for s in spans) == "a🙂b"
    assert "\ufffd" not in "".join(s.text for s in spans)
    assert spans == [Span("a", False), Span("🙂b", True)]


def test_the_command_names_each_conversation_and_marks_the_loss(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["tokens", "--count", "3"]) == 0
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if line.startswith("== ")]
    assert [h.split(" (")[1].split(")")[0] for h in heads] == ["chitchat:a", "demo:b", "chitchat:c"]
    assert heads[0].startswith("== data/tokens/full/train conversation 0 of 3 (chitchat:a): ")
    assert f"⟪<bot>⟫{OPEN}hello! 🙂 café⟪<endOfText>⟫⟧" in out
    # typed markers stay in the human turn, and are not marked as the real ones are
    assert "⟪<human>⟫say <bot>x<endOfText>⟪<endOfText>⟫\n⟪<bot>⟫" in out
    # the header's counts are the shard's
    enc = encode_conversations([None], [2], [False, True], ["hi there", "hello! 🙂 café"])
    assert f": {len(enc.ids)} tokens, {int(enc.mask.sum())} in the loss" in heads[0]


def test_source_index_and_json_pick_conversations(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["tokens", "--source", "chitchat", "--index", "1", "--json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)
    assert (shown["index"], shown["conversation_id"]) == (2, "chitchat:c")  # the next chitchat one from 1
    loss = [(s["text"], s["special"]) for s in shown["spans"] if s["loss"]]
    assert loss == [("fine", False), ("<endOfText>", True), ("bye", False), ("<endOfText>", True)]
    assert cli.main(["tokens", "--source", "demo", "--index", "2"]) == 1
    assert "no conversation from demo at or after 2 in data/tokens/full/train" in capsys.readouterr().err
    assert cli.main(["tokens", "--index", "3"]) == 1
    assert cli.main(["tokens", "--count", "0"]) == 2


def test_shards_without_their_dataset_rows_are_shown_unnamed(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dataset rebuilt since the shards were made no longer names them: said, not guessed."""
    path = project / "data" / "dataset" / "full" / "train.parquet"
    pl.read_parquet(path).head(2).write_parquet(path)
    assert cli.main(["tokens"]) == 0
    captured = capsys.readouterr()
    assert "data/dataset/full/train.parquet does not hold the 3 conversations" in captured.err
    assert "conversation 0 of 3: " in captured.out
    assert cli.main(["tokens", "--source", "chitchat"]) == 1
    path.write_bytes(path.read_bytes()[:100])  # cut short: unreadable, the shards still show
    assert cli.main(["tokens"]) == 0
    assert "train.parquet does not hold the 3 conversations" in capsys.readouterr().err
    assert cli.main(["tokens", "--variant", "commercial"]) == 1
    err = capsys.readouterr().err
    assert (
        "tokens: data/tokens/commercial/train: no token split here: run `dvc repro tokenize@commercial`"
        in err
    )
    assert str(project) not in err  # paths as the user types them


def test_a_source_the_split_does_not_hold_names_those_it_does(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--source contrib` (the registry's name; the rows say contrib/<file stem>) must not read as
    "contrib has no conversation": the split's sources are listed."""
    assert cli.main(["tokens", "--source", "contrib"]) == 1
    err = capsys.readouterr().err
    assert (
        "no conversation from contrib in data/dataset/full/train.parquet (its sources: chitchat, demo)" in err
    )
    with pytest.raises(SystemExit):  # a misspelt variant is refused, not sent to `dvc repro tokenize`
        cli.main(["tokens", "--variant", "comercial"])


def test_a_source_held_only_by_the_other_split_or_variant_says_where(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A contributed file of one or two conversations can land wholly in the val split (and a
    non-commercial one only in the full variant): "no conversation from contrib/tiny" alone reads as
    "your file is not in the dataset", so the split and variant that hold it are named."""
    tiny = [("contrib/tiny:1", "contrib/tiny", None, [(False, "hi"), (True, "yo")])]
    _dataset(tiny).write_parquet(project / "data" / "dataset" / "full" / "val.parquet")
    assert cli.main(["tokens", "--source", "contrib/tiny"]) == 1
    err = capsys.readouterr().err
    assert "no conversation from contrib/tiny in data/dataset/full/train.parquet" in err
    assert "it has 1 in full's val split (--split val)" in err
    shutil.copytree(project / "data" / "tokens" / "full", project / "data" / "tokens" / "commercial")
    shutil.copytree(project / "data" / "dataset" / "full", project / "data" / "dataset" / "commercial")
    (project / "data" / "dataset" / "commercial" / "val.parquet").unlink()
    assert cli.main(["tokens", "--variant", "commercial", "--source", "contrib/tiny"]) == 1
    assert "it has 1 in full's val split (--variant full --split val)" in capsys.readouterr().err
    assert cli.main(["tokens", "--source", "contrib/none"]) == 1
    assert "; it has" not in capsys.readouterr().err  # held nowhere: no hint


def test_a_source_normalized_after_the_build_says_to_rebuild(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CONTRIBUTING's step 3 runs `dvc repro normalize@contrib` alone; `tokens --source
    contrib/support` then said only "no conversation from contrib/support", as if the file were
    dropped, where the dataset was built before it."""
    normalized = project / "data" / "normalized"
    normalized.mkdir(parents=True)
    report = {"source": "contrib", "rows_kept": 8, "by_source": {"contrib/support": {"rows_kept": 8}}}
    (normalized / "contrib.report.json").write_text(json.dumps(report))
    stats = {"sources": {"contrib": {"normalize": {"by_source": {"contrib/old": {"rows_kept": 2}}}}}}
    stats_path = project / "data" / "dataset" / "full" / "stats.json"
    stats_path.write_text(json.dumps(stats))
    params = project / "params.yaml"
    params.write_text("train:\n  variant: full\nsources: [chitchat, demo, contrib]\n")
    (project / "sources.yaml").write_text(CONTRIB_ENTRIES)
    contributed = project / "data" / "contrib" / "support.jsonl"
    contributed.parent.mkdir(parents=True)
    contributed.write_text("{}\n")
    assert cli.main(["tokens", "--source", "contrib/support"]) == 1
    err = capsys.readouterr().err
    assert (
        "no conversation from contrib/support in data/dataset/full/train.parquet (its sources: chitchat, demo); "
        "data/normalized/contrib.report.json keeps 8 of its rows, but the full dataset was built before "
        "them (`dvc repro tokenize@full` builds them in)"
    ) in err, err
    # a rebuild would not take it in: the file deleted since, or contrib no longer enabled
    contributed.rename(contributed.with_suffix(".yaml"))
    assert cli.main(["tokens", "--source", "contrib/support"]) == 1
    assert "built before" not in capsys.readouterr().err
    contributed.with_suffix(".yaml").rename(contributed)
    params.write_text("train:\n  variant: full\nsources: [chitchat, demo]\n")
    assert cli.main(["tokens", "--source", "contrib/support"]) == 1
    assert "built before" not in capsys.readouterr().err
    params.write_text("train:\n  variant: full\nsources: [chitchat, demo, contrib]\n")
    # the commercial build takes a file only under its own `commercial: true`
    shutil.copytree(project / "data" / "tokens" / "full", project / "data" / "tokens" / "commercial")
    shutil.copytree(project / "data" / "dataset" / "full", project / "data" / "dataset" / "commercial")
    assert cli.main(["tokens", "--variant", "commercial", "--source", "contrib/support"]) == 1
    assert "built before" not in capsys.readouterr().err
    report["by_source"]["contrib/support"]["commercial"] = True
    (normalized / "contrib.report.json").write_text(json.dumps(report))
    assert cli.main(["tokens", "--variant", "commercial", "--source", "contrib/support"]) == 1
    assert "(`dvc repro tokenize@commercial` builds them in)" in capsys.readouterr().err
    # a build that saw the file (its rows all removed as duplicates, say): no such hint
    stats["sources"]["contrib"]["normalize"]["by_source"]["contrib/support"] = {"rows_kept": 8}
    stats_path.write_text(json.dumps(stats))
    assert cli.main(["tokens", "--source", "contrib/support"]) == 1
    assert "built before" not in capsys.readouterr().err


def test_the_rebuild_hint_looks_in_the_files_own_folder(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A contrib-kind entry other than `contrib` reads its own folder (`local_path:`): the hint looked
    in data/contrib/ for every entry's file, and by glob (`a[1].*` matches `a1.jsonl`, not itself)."""
    normalized = project / "data" / "normalized"
    normalized.mkdir(parents=True)
    report = {"source": "team", "rows_kept": 3, "by_source": {"team/a[1]": {"rows_kept": 3}}}
    (normalized / "team.report.json").write_text(json.dumps(report))
    (project / "data" / "dataset" / "full" / "stats.json").write_text(json.dumps({"sources": {}}))
    (project / "params.yaml").write_text("train:\n  variant: full\nsources: [chitchat, demo, team]\n")
    (project / "sources.yaml").write_text(CONTRIB_ENTRIES)
    folder = project / "upstream" / "team"
    folder.mkdir(parents=True)
    (folder / "a1.jsonl").write_text("{}\n")  # what the glob `a[1].*` matched
    assert cli.main(["tokens", "--source", "team/a[1]"]) == 1
    assert "built before" not in capsys.readouterr().err
    (folder / "a[1].jsonl").write_text("{}\n")
    assert cli.main(["tokens", "--source", "team/a[1]"]) == 1
    assert "data/normalized/team.report.json keeps 3 of its rows" in capsys.readouterr().err


def test_an_empty_split_says_so(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """build.val_fraction: 0 leaves data/tokens/<variant>/val without a shard."""
    ShardWriter(project / "data" / "tokens" / "full" / "val", 1000).close()
    assert cli.main(["tokens", "--split", "val"]) == 1
    err = capsys.readouterr().err
    assert "data/tokens/full/val holds no conversation (params.yaml build.val_fraction is 0?)" in err


def test_a_dataset_rebuilt_with_as_many_rows_does_not_name_the_shards(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rebuild can keep the row count and change the order (another build.seed): the rows shown are
    checked against the shards' tokens, not only counted."""
    path = project / "data" / "dataset" / "full" / "train.parquet"
    pl.read_parquet(path).reverse().write_parquet(path)
    assert cli.main(["tokens"]) == 0
    captured = capsys.readouterr()
    assert (
        "row 0 of data/dataset/full/train.parquet is not the conversation the shards hold there"
        in captured.err
    )
    assert "dvc repro tokenize@full" in captured.err
    assert "conversation 0 of 3: " in captured.out and "chitchat:c" not in captured.out
    assert cli.main(["tokens", "--source", "chitchat", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "--source needs the dataset rows: row 0 of" in captured.err


def test_an_id_holding_terminal_escapes_is_shown_inert(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A conversation id is the upstream record's id: ESC there must not reach the terminal (here it
    would erase the header line), while --json keeps the id exact."""
    evil = "demo:x\x1b[2K\x1b]0;title\x07\u202e\n"
    path = project / "data" / "dataset" / "full" / "train.parquet"
    pl.read_parquet(path).with_columns(
        pl.when(pl.col("source") == "demo")
        .then(pl.lit(evil))
        .otherwise(pl.col("conversation_id"))
        .alias("conversation_id")
    ).write_parquet(path)
    assert cli.main(["tokens", "--index", "1", "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out
    assert "(demo:x\\x1b[2K\\x1b]0;title\\x07\\u202e\\n): " in out.splitlines()[1]
    assert cli.main(["tokens", "--index", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["conversation_id"] == evil


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("no_color", "flag", "green"), [("", [], True), ("1", [], False), ("1", ["--color", "always"], True)]
)
def test_colour_at_a_terminal_unless_no_color_says_otherwise(
    project: Path, monkeypatch: pytest.MonkeyPatch, no_color: str, flag: list[str], green: bool
) -> None:
    out = _Terminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setenv("NO_COLOR", no_color)
    monkeypatch.setenv("TERM", "xterm")  # not the runner's own: TERM=dumb asks for no colour
    assert cli.main(["tokens", *flag]) == 0
    assert ("\x1b[32m" in out.getvalue()) is green
    assert (OPEN in out.getvalue()) is not green


def test_windows_are_the_rows_the_run_trains_on_first(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--windows` with no --seed draws as the trainer's own sampler does at step 1 (same seed,
    sampler, block_size and window_align): its rows are the first rows the run trained on."""
    from types import SimpleNamespace

    import torch

    from pipeline.train import GlobalBatches
    from pipeline.trainconfig import TrainConfig

    shutil.copy(ROOT / "params.yaml", project / "params.yaml")  # the real profile and seed
    params = load_params(project / "params.yaml")
    cfg = TrainConfig.from_params(params["train"], params["train_profiles"])
    runtime = SimpleNamespace(dist=SimpleNamespace(world_size=1, rank=0), device=torch.device("cpu"))
    micro, _ = GlobalBatches(project / "data" / "tokens" / "full" / "train", cfg, runtime, cfg.seed).next()
    x, y, m = (a.numpy() for a in micro[0])
    assert cli.main(["tokens", "--windows", "2", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert len(shown) == 2
    for r, window in enumerate(shown):
        assert window["first_step"] and window["block_size"] == cfg.block_size
        assert [Span(**s) for s in window["spans"]] == loss_spans(
            np.concatenate([x[r, :1], y[r]]), np.concatenate([[0], m[r]]), specials=True
        )
        assert window["loss_tokens"] == int(m[r].sum()) > 0
    assert cli.main(["tokens", "--windows", "1", "--seed", "5"]) == 0
    assert "training window (seed 5, row 0; block_size " in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--windows", "0"],
        ["--windows", "1", "--split", "val"],
        ["--windows", "1", "--source", "x"],
        ["--seed", "1"],
    ],
)
def test_window_options_that_cannot_go_together_are_refused(project: Path, argv: list[str]) -> None:
    assert cli.main(["tokens", *argv]) == 2


def test_run_outside_the_root_says_where_paths_are_read_from(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A review: from data/, `tokens` said "[Errno 2] No such file or directory: 'params.yaml'" and
    `tokens --variant full` said to run tokenize, for shards that were there; the other commands
    name the folder the paths were read from and the project's root."""
    (project / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.delenv("NANOCHATGPT_ROOT")
    monkeypatch.chdir(project / "data")
    here = (
        f"tokens: paths are read from {project / 'data'}, not the project's root: run the command from "
        f"the project's root, {project} ("
    )
    for argv, said in [
        (["tokens"], "(params.yaml: no such file)"),
        (["tokens", "--windows", "1"], "(params.yaml: no such file)"),
        (["tokens", "--variant", "full"], "(data/tokens/full/train: no token split here"),
    ]:
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith(here) and said in err, err  # the cause first, the symptom after
        assert "Errno" not in err


def test_a_missing_split_names_its_stage_and_a_pull_when_dvc_lock_records_it(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """TokenShards' "run `dvc repro tokenize`" names no stage of the foreach, and shards dvc.lock
    records are in DVC's cache: a pull, not a re-tokenization (as quarantine's advice says)."""
    assert cli.main(["tokens", "--variant", "commercial"]) == 1
    err = capsys.readouterr().err
    assert (
        err
        == "tokens: data/tokens/commercial/train: no token split here: run `dvc repro tokenize@commercial`\n"
    )
    shutil.copy(ROOT / "params.yaml", project / "params.yaml")  # --windows reads the train profile
    (project / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  tokenize@commercial:\n    cmd: python -m stages.tokenize commercial\n"
        "    outs:\n    - path: data/tokens/commercial/train\n      md5: 0123.dir\n"
    )
    for argv in (
        ["tokens", "--variant", "commercial"],
        ["tokens", "--variant", "commercial", "--windows", "1"],
    ):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("tokens: data/tokens/commercial/train: no token split here (dvc.lock records")
        assert err.rstrip().endswith("run `dvc pull tokenize@commercial` or `dvc repro tokenize@commercial`")


def test_text_holding_terminal_controls_prints_inert_and_json_keeps_it_exact(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug hunt: the conversation's text was printed raw. Normalize keeps bidi overrides (an RLO
    showed the rest of its line reversed, the loss's ⟦ ⟧ included) and shards made another way may
    hold ESC (clear the screen, set the title); --json escaped ESC but wrote the C1 CSI (U+009B) and
    the RLO raw."""
    evil = "hi \x1b[2J\x1b]0;title\x07 \x9b2J \u202eesrever"
    persona = "terse \u202e"
    rows = [("demo:e", "demo", persona, [(False, evil), (True, f"ok {evil}")])]
    path = project / "data" / "dataset" / "full" / "train.parquet"
    _dataset(rows).write_parquet(path)
    split = project / "data" / "tokens" / "full" / "train"
    shutil.rmtree(split)
    enc = encode_conversations([persona], [2], [False, True], [evil, f"ok {evil}"])
    writer = ShardWriter(split, 1000)
    writer.add(enc.ids, enc.mask, enc.lengths)
    writer.close()
    assert cli.main(["tokens", "--color", "never"]) == 0
    out = capsys.readouterr().out
    for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert raw not in out, repr(raw)
    shown = "hi \\x1b[2J\\x1b]0;title\\x07 \\x9b2J \\u202eesrever"
    assert f"⟪<|endoftext|>⟫terse \\u202e\n⟪<human>⟫{shown}⟪<endOfText>⟫\n⟪<bot>⟫{OPEN}ok {shown}" in out
    assert cli.main(["tokens", "--json"]) == 0
    text = capsys.readouterr().out
    assert "\x9b" not in text and "\u202e" not in text
    spans = json.loads(text)[0]["spans"]
    assert "".join(s["text"] for s in spans) == decode(enc.ids)


def test_damaged_shards_are_one_line_naming_the_split(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug hunt: an id past the vocabulary was a KeyError traceback, and an empty shard file said
    only numpy's "cannot mmap an empty file"."""
    split = project / "data" / "tokens" / "full" / "train"
    tokens = split / "tokens-00000.bin"
    ids = np.fromfile(tokens, dtype="<u2")
    ids[2] = 60000
    ids.tofile(tokens)
    assert cli.main(["tokens", "--color", "never"]) == 1
    err = capsys.readouterr().err
    assert (
        err == "tokens: data/tokens/full/train conversation 0: token id 60000 lies outside the vocabulary "
        "(0..50259)\n"
    )
    tokens.write_bytes(b"")
    (split / "mask-00000.bin").write_bytes(b"")
    assert cli.main(["tokens"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "tokens: data/tokens/full/train/tokens-00000.bin: not a readable shard file "
        "(cannot mmap an empty file)\n"
    )


def test_a_negative_seed_or_an_index_past_any_count_is_said_plainly(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug hunt: `--seed -1` said numpy's "expected non-negative integer" naming no option, and an
    --index past sys.maxsize said "Indices for islice() must be None or an integer"."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(["tokens", "--windows", "1", "--seed", "-1"])
    assert exit_.value.code == 2
    assert "argument --seed: must be 0 or more, got -1" in capsys.readouterr().err
    assert cli.main(["tokens", "--index", str(10**30)]) == 1
    assert f"no conversation at or after {10**30} in data/tokens/full/train" in capsys.readouterr().err
