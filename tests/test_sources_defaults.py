"""The default sources (chitchat, chatterbot, contrib) end to end from the installed packages:
`python -m stages.download` + `python -m stages.normalize` + `nanochatgpt sources`."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from pipeline import cli
from pipeline.schema import QUARANTINE_SCHEMA, validate
from pipeline.sources.adapters.chitchat import UPSTREAM_CUT
from pipeline.sources.normalize import output_paths
from stages import download as download_stage
from stages import normalize as normalize_stage

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = ["chitchat", "chatterbot", "contrib"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("project")
    for name in ("sources.yaml", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "data" / "contrib", root / "data" / "contrib")
    shutil.copytree(REPO / "data" / "licences", root / "data" / "licences")  # `licence_text:` files
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHATGPT_ROOT", str(root))
        for name in DEFAULTS:
            assert download_stage.main([name]) == 0
            assert normalize_stage.main([name]) == 0
        yield root


def _package_file(module: str, rel: str) -> Path:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / rel


def test_downloads_hold_exact_upstream_bytes(built: Path) -> None:
    raw = built / "data" / "raw"
    assert (raw / "chitchat" / "dataset.json").read_bytes() == _package_file(
        "chitchat_dataset", "dataset.json"
    ).read_bytes()
    manifest = json.loads((raw / "chitchat" / "manifest.json").read_text())
    assert {k: manifest[k] for k in ("source", "kind", "location", "licence")} == {
        "source": "chitchat",
        "kind": "package",
        "location": "chitchat_dataset",
        "licence": "MIT",
    }
    assert "commercial" not in manifest  # the build's business: a flipped flag must not re-normalize
    assert manifest["revision"] == "chitchat-dataset==0.9.0"
    assert (raw / "contrib" / "nanochatgpt-sample.yaml").exists()


@pytest.mark.parametrize("name", DEFAULTS)
def test_outputs_are_valid_and_reconcile(built: Path, name: str) -> None:
    paths = output_paths(name, built)
    turns = validate(pl.read_parquet(paths["turns"]))
    quarantine = pl.read_parquet(paths["quarantine"])
    assert quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)
    report = json.loads(paths["report"].read_text())
    assert report["source"] == name
    assert report["rows_read"] == report["rows_kept"] + report["rows_quarantined"] + sum(
        report["rows_filtered"].values()
    )
    assert report["turns_kept"] == turns.height and report["rows_quarantined"] == quarantine.height
    assert report["conversations_kept"] == turns["conversation_id"].n_unique() > 0


def test_chitchat_conversations(built: Path) -> None:
    data = json.loads(_package_file("chitchat_dataset", "dataset.json").read_bytes())
    assert len(data) == 7168
    paths = output_paths("chitchat", built)
    turns, quarantine = pl.read_parquet(paths["turns"]), pl.read_parquet(paths["quarantine"])
    report = json.loads(paths["report"].read_text())
    # every utterance is a row, but a message the app cut at UPSTREAM_CUT characters and the next
    # utterance of its turn, which carries it on, are one; every conversation is kept or (with its
    # reason) quarantined
    utterances = [turn for conv in data.values() for turn in conv["messages"]]
    carried_on = sum(
        len(before["text"]) == UPSTREAM_CUT
        for turn in utterances
        for before, after in zip(turn, turn[1:], strict=False)
        if before["sender"] == after["sender"]
    )
    assert carried_on > 1000
    assert report["rows_read"] == sum(len(turn) for turn in utterances) - carried_on
    # the cut and its rest are joined with a space, not split by a line break
    lines = turns["text"].str.split("\n").to_list()
    assert not [t for t in lines if any(len(line) == UPSTREAM_CUT for line in t[:-1])]
    seen = set(turns["conversation_id"]) | set(quarantine["conversation_id"].drop_nulls())
    assert seen == {f"chitchat:{k}" for k in data}
    # one chat-room conversation each turn of which is a list of utterances by one sender
    first = turns.filter(pl.col("conversation_id") == "chitchat:a07edb12-6b91-4138-b11e-02421888d699")
    assert first["role"].to_list()[:3] == ["human", "bot", "human"]
    assert first["text"].to_list()[:2] == [
        "Hello\nHow are you doing today?",
        "whats up MD\nim doing good\nhow are you doing?",
    ]
    assert set(turns["licence"]) == {"MIT"} and set(turns["commercial"]) == {True}
    # single-message conversations have no reply: quarantined as has_bot_turn, not dropped
    assert report["quarantined_by_check"]["has_bot_turn"] > 3000


def test_chatterbot_and_contrib(built: Path) -> None:
    bot = pl.read_parquet(output_paths("chatterbot", built)["turns"])
    ai = bot.filter(pl.col("conversation_id") == "chatterbot:data/english/ai:0")
    assert ai["text"].to_list() == [
        "What is AI?",
        "Artificial Intelligence is the branch of engineering and science devoted to constructing machines that think.",
    ]
    contrib = pl.read_parquet(output_paths("contrib", built)["turns"])
    assert set(contrib["source"]) == {"contrib/nanochatgpt-sample"}
    assert set(contrib["licence"]) == {"CC0-1.0"} and set(contrib["commercial"]) == {True}
    assert contrib["conversation_id"].n_unique() == 3
    assert contrib["text"][0] == "Hi there! Who are you?"


def test_sources_table(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHATGPT_ROOT", str(built))
        assert cli.main(["sources"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "kind", "licence", "commercial", "enabled", "rows"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    chitchat_kept = json.loads(output_paths("chitchat", built)["report"].read_text())["rows_kept"]
    assert rows["chitchat"][-3:] == ["yes", "yes", str(chitchat_kept)]
    assert rows["contrib/nanochatgpt-sample"][-4:] == ["CC0-1.0", "yes", "yes", "18"]
    assert rows["oasst1"][1:] == ["hf_dataset", "Apache-2.0", "yes", "no", "-"]
    assert rows["ubuntu"][1:] == ["hf_dataset", "unknown", "no", "no", "-"]
    assert rows["empathetic_dialogues"][1:] == ["url", "CC-BY-NC-4.0", "no", "no", "-"]
