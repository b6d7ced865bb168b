"""The commercial variant's promise, probed where it was broken (s31's audit):

1. A row of a turn table that names another source (`source_registered`: a stale or foreign table)
   has no established terms: the commercial variant's quarantine.parquet, which ships in the folder
   `hf upload` sends, held such rows, labelled as the non-commercial source they named.
2. A run extended (`init_from: resume`) after its training data changed must not be labelled fit for
   commercial use from the new data alone. The case: a contributed file's sidecar said
   `commercial: true`, the commercial variant was trained, then the flag was corrected and the variant
   rebuilt without the file. Extending the run continued weights that learned it; the model card,
   made from the current sources.csv and stats.json, said "Commercial use: allowed". The run now
   records that its data changed (metrics.json `data_changed`, kept through later extensions), and
   the card then claims nothing it cannot back.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from test_build import conversation_rows, run_build, write_corpus
from test_cards import facts_of, header_of, token_row
from test_hf import _export_inputs
from test_train import paths_in, tiny_config, write_tokens

from pipeline import cards, hfexport, modelcard, trainsetup
from pipeline.train import train

REGISTRY = {
    "mit": {"kind": "package", "licence": "MIT", "commercial": True},
    "nc": {"kind": "hf_dataset", "licence": "CC-BY-NC-4.0", "commercial": False},
    "contrib": {"kind": "contrib", "licence": "per-file", "commercial": False},
}


def test_a_row_naming_another_source_never_reaches_the_commercial_variant(tmp_path: Path) -> None:
    mit = conversation_rows("mit:1", ["hello there", "hi"], "mit", "MIT", True)
    mit += conversation_rows("mit:2", ["NC-ONLY question", "NC-ONLY answer"], "nc", "MIT", True)
    mit += conversation_rows("mit:3", ["NO-SOURCE question", "NO-SOURCE answer"], "", "MIT", True)
    contrib = conversation_rows("contrib/ok:1", ["contributed", "reply"], "contrib/ok", "CC0-1.0", True)
    contrib += conversation_rows("contrib/ok:2", ["NC-CLAIM question", "answer"], "nc", "CC0-1.0", True)
    nc = conversation_rows("nc:1", ["persona chat", "reply"], "nc", "CC-BY-NC-4.0", False)
    write_corpus(tmp_path, {"mit": mit, "nc": nc, "contrib": contrib})
    names = ["mit", "nc", "contrib"]
    full = run_build(tmp_path, names, REGISTRY, variant="full").stats
    q = pl.read_parquet(tmp_path / "data/dataset/full/quarantine.parquet")
    assert set(q["conversation_id"]) == {"mit:2", "mit:3", "contrib/ok:2"}  # full: quarantined, named
    assert not q["commercial"].any()  # no established terms: not commercial
    assert full["sources"]["mit"]["rows_quarantined"] == 4
    stats = run_build(tmp_path, names, REGISTRY, variant="commercial").stats
    folder = tmp_path / "data/dataset/commercial"
    q = pl.read_parquet(folder / "quarantine.parquet")
    assert q.height == 0, q.select("conversation_id", "source", "check").rows()
    text = "".join(p.read_text(encoding="utf-8") for p in (folder / "text").iterdir())
    assert "NC-ONLY" not in text and "NO-SOURCE" not in text and "NC-CLAIM" not in text
    # every row accounted for: left out of the commercial variant as not commercial
    assert stats["sources"]["mit"]["rows_filtered"]["not_commercial"] == 4
    assert stats["sources"]["contrib"]["rows_filtered"]["not_commercial"] == 2
    assert stats["sources"]["mit"]["rows_quarantined"] == 0 and stats["sources"]["mit"]["reconciles"]


SHORT = dict(max_iters=2, ckpt_interval=2, eval_interval=2, eval_iters=1)


def test_an_extension_on_changed_data_is_recorded_and_stays_recorded(tmp_path: Path) -> None:
    data = write_tokens(tmp_path / "tokens" / "commercial")
    paths = paths_in(tmp_path, data)
    assert train(tiny_config(**SHORT), paths)["data_changed"] is False
    # extended on the same data: nothing changed
    assert train(tiny_config(**{**SHORT, "max_iters": 3}, init_from="resume"), paths)["data_changed"] is False
    # the variant is rebuilt (a file left out), then the run is extended on it
    write_tokens(data, seed=1)
    assert train(tiny_config(**{**SHORT, "max_iters": 4}, init_from="resume"), paths)["data_changed"] is True
    # a later extension on the (now unchanged) data still carries weights of the earlier data
    summary = train(tiny_config(**{**SHORT, "max_iters": 5}, init_from="resume"), paths)
    assert summary["data_changed"] is True
    assert json.loads(paths.metrics_file.read_text())["data_changed"] is True
    # a fresh run on the data starts clean
    assert train(tiny_config(**{**SHORT, "max_iters": 1}), paths)["data_changed"] is False


def test_the_model_card_does_not_call_weights_of_changed_data_commercial() -> None:
    rows = [token_row("chitchat"), token_row("contrib/ok")]
    terms = {
        "chitchat": cards.CardSource("chitchat", "MIT", True),
        "contrib/ok": cards.CardSource("contrib/ok", "MIT", True),
    }
    clean = modelcard.model_card(facts_of(), rows, terms)
    assert "**Commercial use: allowed.**" in clean and header_of(clean)["license"] == "mit"
    card = modelcard.model_card(facts_of(earlier_data=True), rows, terms)
    assert "Commercial use: allowed" not in card and "may be used commercially" not in card
    assert "**Commercial use: not established.**" in card and "earlier build of the data" in card
    assert header_of(card)["license"] == "unknown"  # the earlier data's licences are not recorded
    # a non-commercial source among the current ones: still plainly not allowed
    nc = {**terms, "contrib/ok": cards.CardSource("contrib/ok", "CC-BY-NC-4.0", False)}
    assert "**Commercial use: not allowed.**" in modelcard.model_card(facts_of(earlier_data=True), rows, nc)


def test_the_export_reads_data_changed_from_the_run(tmp_path: Path) -> None:
    tokens = _export_inputs(tmp_path, "scratch", {"a": ({"licence": "MIT", "commercial": True}, "10,4,1")})
    metrics_file = tmp_path / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics_file.write_text(json.dumps({**metrics, "data_changed": True}))
    out = tmp_path / "hf"
    hfexport.export_run(tmp_path / "ckpt", out, metrics_file, tokens, tmp_path / "stats.json")
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "**Commercial use: not established.**" in card and "allowed." not in card
    # train writes a bool: anything else is refused, naming the file and the key
    metrics_file.write_text(json.dumps({**metrics, "data_changed": "no"}))
    with pytest.raises(ValueError, match=r"metrics\.json: data_changed \"no\" is not what train writes"):
        hfexport.export_run(tmp_path / "ckpt", out, metrics_file, tokens, tmp_path / "stats.json")


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("train: warning:")]


def test_an_extension_names_what_changed_in_one_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An extension on rebuilt data logged two warnings (\"the data or the code changed\" and the
    data's own); one on new code alone named the data too. Now one line names what moved."""
    data = write_tokens(tmp_path / "tokens" / "commercial")
    paths = paths_in(tmp_path, data)
    train(tiny_config(**SHORT), paths)
    capsys.readouterr()
    write_tokens(data, seed=1)  # the variant is rebuilt
    train(tiny_config(**{**SHORT, "max_iters": 3}, init_from="resume"), paths)
    (line,) = _warnings(capsys.readouterr().err)
    assert "the training data changed" in line and "code" not in line
    # the same data, other code: the fingerprint moves while the data's sha does not
    real = trainsetup.TrainConfig.fingerprint
    monkeypatch.setattr(trainsetup.TrainConfig, "fingerprint", lambda self, d: real(self, d) + "-new-code")
    summary = train(tiny_config(**{**SHORT, "max_iters": 4}, init_from="resume"), paths)
    (line,) = _warnings(capsys.readouterr().err)
    assert line == "train: warning: the code changed since this run's checkpoint; extending it anyway"
    assert summary["data_changed"] is True  # still the earlier extension's record
    # a state saved before data_sha was recorded (and the code moved back): the fingerprint alone
    # cannot tell the data from the code
    monkeypatch.undo()
    load = trainsetup._load_state
    monkeypatch.setattr(
        trainsetup, "_load_state", lambda ckpt: {k: v for k, v in load(ckpt).items() if k != "data_sha"}
    )
    train(tiny_config(**{**SHORT, "max_iters": 5}, init_from="resume"), paths)
    (line,) = _warnings(capsys.readouterr().err)
    assert "the data or the code changed" in line and "saved before runs recorded their data" in line
