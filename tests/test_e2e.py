"""End to end: `dvc repro` of the whole graph in a temporary git repository, tiny params.

This is the user's first contact (Quick start), shrunk: same stages, same commands, a tiny
model and short budgets. It asserts on what the user would look at: files, schema, counts,
metrics, an idle second repro, and the commercial variant's purity.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from toy_project import copy_project, run

# The toy project holds tests/fixtures/e2e/contrib (toy_project.E2E_CONTRIB): a non-commercial file
# (CC-BY-NC-4.0, `commercial: false`) whose rows the full variant holds and the commercial variant must drop.
NC_LICENCE = "CC-BY-NC-4.0"
NC_CONVERSATIONS = 3  # in fixtures/e2e/contrib/nc-sample.txt
NC_TURNS = 8
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, toy_repro: tuple[Path, dict[str, str]]
) -> tuple[Path, dict[str, str]]:
    """This module's copy of the session's toy project (conftest.py): its tests re-run stages in it."""
    built, env = toy_repro
    repo = tmp_path_factory.mktemp("repo") / "project"
    copy_project(built, repo)
    return repo, env


def test_every_stage_wrote_its_outputs(project: tuple[Path, dict]) -> None:
    repo, _ = project
    for source in ("chatterbot", "contrib"):
        manifest = json.loads((repo / f"data/raw/{source}/manifest.json").read_text())
        assert manifest["files"], f"{source}: empty manifest"
        assert (repo / f"data/normalized/{source}.parquet").exists()
        assert (repo / f"data/quarantine/{source}.parquet").exists()
    for variant in ("full", "commercial"):
        for split in ("train", "val"):
            assert (repo / f"data/dataset/{variant}/{split}.parquet").exists()
            assert list((repo / f"data/tokens/{variant}/{split}").glob("tokens-*.bin"))
    assert (repo / "model/ckpt/model.safetensors").exists()
    assert (repo / "model/hf/config.json").exists()
    assert "**bot:**" in (repo / "model/eval/transcripts.md").read_text()


def test_turn_tables_are_valid_and_counts_reconcile(project: tuple[Path, dict]) -> None:
    from pipeline.schema import validate

    repo, _ = project
    for source in ("chatterbot", "contrib"):
        turns = pl.read_parquet(repo / f"data/normalized/{source}.parquet")
        validate(turns)
        report = json.loads((repo / f"data/normalized/{source}.report.json").read_text())
        filtered = sum(report["rows_filtered"].values())
        assert report["rows_read"] == report["rows_kept"] + report["rows_quarantined"] + filtered
        assert report["rows_kept"] == turns.height > 0


def _dataset(repo: Path, variant: str) -> pl.DataFrame:
    return pl.concat(
        [
            pl.read_parquet(repo / f"data/dataset/{variant}/{split}.parquet").with_columns(
                split=pl.lit(split)
            )
            for split in ("train", "val")
        ]
    )


def _content_keys(df: pl.DataFrame) -> pl.Series:
    """Each conversation's turns as the dedup key sees them (roles and folded text), one string each."""
    from pipeline.dedup import fold_text

    turns = (
        df.select("conversation_id", "messages")
        .explode("messages")
        .unnest("messages")
        .with_columns(line=pl.concat_str("role", pl.lit(": "), fold_text(pl.col("content"))))
    )
    return turns.group_by("conversation_id", maintain_order=True).agg(pl.col("line").str.join("\n"))["line"]


def test_commercial_variant_holds_only_commercial_sources(project: tuple[Path, dict]) -> None:
    """The non-commercial contributed file is in the full variant and nowhere in the commercial one
    (by id and by content), which holds every other conversation of the full variant."""
    repo, _ = project
    full, commercial = _dataset(repo, "full"), _dataset(repo, "commercial")
    nc = full.filter(pl.col("licence") == NC_LICENCE)
    assert nc.height == NC_CONVERSATIONS and not nc["commercial"].any()
    assert commercial["commercial"].all()
    assert not {"unknown", NC_LICENCE} & set(commercial["licence"].to_list())
    assert not set(nc["conversation_id"]) & set(commercial["conversation_id"])
    assert not set(_content_keys(nc)) & set(_content_keys(commercial))
    assert sorted(commercial["conversation_id"]) == sorted(
        set(full["conversation_id"]) - set(nc["conversation_id"])
    )
    stats = json.loads((repo / "data/dataset/commercial/stats.json").read_text())
    assert stats["sources"]["contrib"]["rows_filtered"]["not_commercial"] == NC_TURNS


def test_train_and_val_share_no_conversation(project: tuple[Path, dict]) -> None:
    """No dialogue sits in both splits, nor twice in one: compared by content (the folded turns the
    dedup key hashes), on a corpus where duplicates abound (chatterbot repeats many dialogues)."""
    repo, _ = project
    full = _dataset(repo, "full")
    train, val = full.filter(pl.col("split") == "train"), full.filter(pl.col("split") == "val")
    assert val.height > 0 and train.height > 0
    assert not set(train["conversation_id"]) & set(val["conversation_id"])
    train_keys, val_keys = _content_keys(train), _content_keys(val)
    assert not set(train_keys) & set(val_keys)
    assert train_keys.n_unique() + val_keys.n_unique() == full.height
    stats = json.loads((repo / "data/dataset/full/stats.json").read_text())
    assert stats["totals"]["duplicates_removed"]["conversations"] > 0  # the input did hold duplicates


def test_metrics_and_second_repro_is_a_no_op(project: tuple[Path, dict]) -> None:
    repo, env = project
    train_metrics = json.loads((repo / "model/metrics.json").read_text())
    eval_metrics = json.loads((repo / "model/eval/metrics.json").read_text())
    assert eval_metrics["val_loss_bot"] > 0
    assert train_metrics
    shown = run([sys.executable, "-m", "dvc", "metrics", "show"], repo, env).stdout
    assert "val_loss_bot" in shown
    again = run([sys.executable, "-m", "dvc", "repro"], repo, env).stdout
    # only the registry runs (always_changed: it hashes files no dep can name), and it changes nothing
    assert re.findall(r"Running stage '([^']+)'", again) == ["registry"]
    assert "Stage 'evaluate' didn't change, skipping" in again
    dag = run([sys.executable, "-m", "dvc", "dag"], repo, env).stdout
    assert "train" in dag and "normalize@contrib" in dag
    # Declared plots render (training curves, tokens per source, conversation lengths with the
    # project's own template: its bins in file order) without touching the network.
    plots = run([sys.executable, "-m", "dvc", "plots", "show", "--json"], repo, env).stdout
    assert "data/tokens/full/sources.csv" in plots and "model/live/plots/metrics" in plots
    (lengths,) = json.loads(plots)["data"]["data/tokens/full/lengths.csv"]
    assert lengths["content"]["encoding"]["y"] == {
        "field": "length",
        "type": "nominal",
        "title": "length in tokens",  # dvc.yaml's y_label
        "sort": None,
    }
    assert [d["length"] for d in lengths["content"]["data"]["values"]][:2] == ["1-32", "33-64"]


@pytest.fixture
def own_project(tmp_path: Path, toy_repro: tuple[Path, dict[str, str]]) -> tuple[Path, dict[str, str]]:
    """A copy of the session's toy project for one test that edits the registry and re-runs stages:
    thrown away after it, so nothing has to be put back (nor re-run) for the tests after it."""
    built, env = toy_repro
    copy_project(built, tmp_path / "project")
    return tmp_path / "project", env


def test_a_flipped_flag_or_a_new_contrib_file_reruns_only_what_it_changes(
    own_project: tuple[Path, dict],
) -> None:
    """docs/contracts.md: flipping a commercial flag is a re-mix, never a re-download or re-normalize; a file
    dropped into data/contrib/ re-runs only the contrib chain."""
    repo, env = own_project
    registry = repo / "sources.yaml"
    added = repo / "data/contrib/extra.txt"
    entries = yaml.safe_load(registry.read_text())
    entries["chatterbot"]["commercial"] = False
    registry.write_text(yaml.safe_dump(entries, sort_keys=False))
    added.write_text("<human> Is this new? <endOfText>\n<bot> Brand new. <endOfText>\n")
    added.with_suffix(".yaml").write_text("licence: CC0-1.0\ncommercial: true\ndescription: test\n")
    out = run(
        [sys.executable, "-m", "dvc", "repro", "normalize@chatterbot", "normalize@contrib"], repo, env
    ).stdout
    assert "Running stage 'registry'" in out
    assert "Stage 'download@chatterbot' didn't change, skipping" in out
    assert "Stage 'normalize@chatterbot' didn't change, skipping" in out
    assert "Running stage 'download@contrib'" in out and "Running stage 'normalize@contrib'" in out


def test_an_edited_file_under_local_path_reruns_its_download(own_project: tuple[Path, dict]) -> None:
    """DVC cannot name files under a `local_path:` as deps; the registry stage hashes them instead."""
    import chatterbot_corpus

    repo, env = own_project
    registry = repo / "sources.yaml"
    mine = repo / "mine"
    shutil.copytree(Path(chatterbot_corpus.__file__).parent / "data", mine / "data")
    stages = ["normalize@chatterbot"]
    entries = yaml.safe_load(registry.read_text())
    entries["chatterbot"]["local_path"] = "mine"
    registry.write_text(yaml.safe_dump(entries, sort_keys=False))
    out = run([sys.executable, "-m", "dvc", "repro", *stages], repo, env).stdout
    assert "Running stage 'download@chatterbot'" in out
    (mine / "README.md").write_text("not one of `files:`\n")
    out = run([sys.executable, "-m", "dvc", "repro", *stages], repo, env).stdout
    assert "Stage 'download@chatterbot' didn't change, skipping" in out
    greetings = mine / "data/english/greetings.yml"
    greetings.write_text(greetings.read_text() + "- - Is this file watched?\n  - It is now.\n")
    out = run([sys.executable, "-m", "dvc", "repro", *stages], repo, env).stdout
    assert "Running stage 'download@chatterbot'" in out and "Running stage 'normalize@chatterbot'" in out
    turns = pl.read_parquet(repo / "data/normalized/chatterbot.parquet")
    assert "It is now." in turns["text"].to_list()
