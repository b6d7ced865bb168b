"""Edge cases of the build and tokenize stages found by an adversarial review: empty variants,
empty splits, params a user might mistype, corrupt inputs and what a killed build leaves behind.
Each mistake must be one line naming the key or file, never a traceback; each empty result must
still be a well-formed dataset, card and shard set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from pipeline.build import build_variant
from pipeline.buildinputs import BuildConfig, BuildError
from pipeline.datasetformat import CONVERSATION_SCHEMA
from pipeline.encode import tokenize_dataset, tokenize_settings
from pipeline.schema import TURN_SCHEMA
from pipeline.shards import TokenShards, verify_variant

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = {
    "good": {"kind": "package", "licence": "MIT", "commercial": True, "location": "good_pkg"},
    "nc": {"kind": "url", "licence": "CC-BY-NC-4.0", "commercial": False, "location": "https://x.org/nc"},
    "contrib": {"kind": "contrib", "licence": "per-file", "commercial": False, "location": "data/contrib"},
}


def rows(
    cid: str, texts: list[str], source: str, licence: str = "MIT", commercial: bool = True
) -> list[dict]:
    return [
        {
            "conversation_id": cid,
            "turn": t,
            "role": "human" if t % 2 == 0 else "bot",
            "text": x,
            "source": source,
            "licence": licence,
            "commercial": commercial,
            "context": None,
        }
        for t, x in enumerate(texts)
    ]


def many(source: str, n: int, **terms) -> list[dict]:
    return [
        r
        for i in range(n)
        for r in rows(f"{source}:{i}", [f"{source} hi {i}", f"reply {i}"], source, **terms)
    ]


def write_tables(root: Path, tables: dict[str, list[dict]]) -> None:
    d = root / "data" / "normalized"
    d.mkdir(parents=True, exist_ok=True)
    for name, r in tables.items():
        pl.DataFrame(r, schema=TURN_SCHEMA).write_parquet(d / f"{name}.parquet")


def build(root: Path, names: list[str], variant: str = "full", **cfg):
    cfg.setdefault("val_fraction", 0.2)
    return build_variant(root, names, REGISTRY, BuildConfig(variant=variant, **cfg))


def card_header(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8").split("---\n")[1])


# ----------------------------------------------------------------------------- empty variants


def test_commercial_variant_of_only_non_commercial_sources_is_empty_not_a_crash(tmp_path, capsys):
    """Enabling only NC sources is legal: build@commercial must still succeed (dvc repro builds both
    variants), write empty splits with the schema, a card saying what was left out, and tokenize."""
    write_tables(tmp_path, {"nc": many("nc", 6, licence="CC-BY-NC-4.0", commercial=False)})
    stats = build(tmp_path, ["nc"], variant="commercial").stats
    d = tmp_path / "data/dataset/commercial"
    for split in ("train", "val"):
        frame = pl.read_parquet(d / f"{split}.parquet")
        assert frame.height == 0 and dict(frame.schema) == CONVERSATION_SCHEMA
    assert not (d / "_scratch").exists()
    s = stats["sources"]["nc"]
    assert s["reconciles"] and s["rows_filtered"]["not_commercial"] == s["rows_read"] == 12
    assert "holds no conversations" in capsys.readouterr().err
    card = (d / "README.md").read_text(encoding="utf-8")
    assert "nc (CC-BY-NC-4.0; its licence forbids commercial use)" in card
    assert "holds no conversations" in card
    meta = tokenize_dataset(d, tmp_path / "tokens", shard_tokens=1000, workers=0, batch_conversations=4)
    assert meta["splits"]["train"]["n_conversations"] == 0
    assert verify_variant(tmp_path / "tokens") == meta
    assert TokenShards(tmp_path / "tokens" / "train").n_tokens == 0


def test_empty_or_fully_quarantined_turn_table_builds_an_empty_variant(tmp_path):
    write_tables(tmp_path, {"good": []})
    assert build(tmp_path, ["good"]).stats["totals"]["rows_read"] == 0
    write_tables(tmp_path, {"good": rows("good:1", [" padded", "x"], "good")})  # text_stripped
    stats = build(tmp_path, ["good"]).stats
    assert stats["totals"]["rows_quarantined"] == 2 and stats["sources"]["good"]["reconciles"]
    assert pl.read_parquet(tmp_path / "data/dataset/full/quarantine.parquet").height == 2


# ----------------------------------------------------------------------------- the card vs datasets


@pytest.mark.parametrize("val_fraction", [0.0, 0.2])
def test_card_names_only_the_splits_that_hold_rows_so_load_dataset_works(tmp_path, monkeypatch, val_fraction):
    """`val_fraction: 0` is legal, and the card must not then send `load_dataset` to an empty split
    (datasets refuses the whole dataset: 'Instruction "validation" corresponds to no data')."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    write_tables(tmp_path, {"good": many("good", 12)})
    stats = build(tmp_path, ["good"], val_fraction=val_fraction).stats
    conv = stats["totals"]["conversations"]
    d = tmp_path / "data/dataset/full"
    files = card_header(d / "README.md")["configs"][0]["data_files"]
    expected = {"train": conv["train"], "validation": conv["val"]}
    assert [f["split"] for f in files] == [k for k, n in expected.items() if n]
    ds = datasets.load_dataset(str(d), cache_dir=str(tmp_path / "hf-cache"))
    assert {k: ds[k].num_rows for k in ds} == {k: n for k, n in expected.items() if n}


def test_card_names_contributed_files_left_out_of_a_variant(tmp_path):
    """A contributed file with no rows in the variant (NC terms in the commercial one) is named in the
    card's 'left out' line, like a registry source would be."""
    contrib = many("contrib/ok", 3, licence="CC-BY-4.0") + many("contrib/nc", 3, licence="CC-BY-NC-4.0")
    for r in contrib:
        r["source"] = r["conversation_id"].split(":")[0]
    contrib = [{**r, "commercial": r["licence"] == "CC-BY-4.0"} for r in contrib]
    write_tables(tmp_path, {"good": many("good", 4), "contrib": contrib})
    stats = build(tmp_path, ["good", "contrib"], variant="commercial").stats
    parts = stats["sources"]["contrib"]["parts"]
    assert parts["contrib/nc"]["conversations"] == {"train": 0, "val": 0}
    assert parts["contrib/nc"]["licence"] == "CC-BY-NC-4.0" and parts["contrib/nc"]["commercial"] is False
    card = (tmp_path / "data/dataset/commercial/README.md").read_text(encoding="utf-8")
    assert "contrib/nc (CC-BY-NC-4.0; its licence forbids commercial use)" in card
    assert "| contrib/ok | CC-BY-4.0 | yes |" in card and "| contrib/nc |" not in card
    assert card_header(tmp_path / "data/dataset/commercial/README.md")["license"] == ["cc-by-4.0", "mit"]


def test_a_contributed_file_that_normalize_emptied_is_still_listed(tmp_path):
    """A contributed file none of whose rows survived normalize had no row to carry its terms, so
    stats.json's `parts` and the card's 'left out' line (docs/contracts.md: every contributed file)
    left it out; its terms now travel in the normalize report."""
    from pipeline.sources.adapters import contrib as contrib_adapter
    from pipeline.sources.normalize import normalize_rows
    from pipeline.sources.registry import SourceSpec

    folder = tmp_path / "files"
    folder.mkdir()
    blank = [{"role": "user", "content": "  "}, {"role": "assistant", "content": ""}]
    good = [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "hi!"}]
    for stem, messages, licence in (("blank", blank, "CC-BY-SA-4.0"), ("good", good, "MIT")):
        (folder / f"{stem}.jsonl").write_text(json.dumps({"messages": messages}) + "\n")
        (folder / f"{stem}.yaml").write_text(f"licence: {licence}\ncommercial: true\ndescription: t\n")
    spec = SourceSpec("contrib", "contrib", "data/contrib", "contrib", "per-file", False)
    result = normalize_rows(contrib_adapter.read(folder, spec, {}))
    assert result.report["by_source"]["contrib/blank"]["rows_kept"] == 0
    write_tables(tmp_path, {"good": many("good", 4), "contrib": result.turns.to_dicts()})
    report = tmp_path / "data/normalized/contrib.report.json"
    report.write_text(json.dumps(result.report))
    stats = build(tmp_path, ["good", "contrib"]).stats
    parts = stats["sources"]["contrib"]["parts"]
    assert parts["contrib/blank"] == {
        "licence": "CC-BY-SA-4.0",
        "commercial": True,
        **{k: {"train": 0, "val": 0} for k in parts["contrib/good"] if k not in ("licence", "commercial")},
    }
    assert sum(parts["contrib/good"]["conversations"].values()) == 1
    assert "contrib/blank (CC-BY-SA-4.0; no conversation kept" in (
        tmp_path / "data/dataset/full/README.md"
    ).read_text(encoding="utf-8")


def test_a_licence_the_hub_lacks_gets_a_licence_file_beside_the_card(tmp_path):
    """A contributed file under terms the Hub has no id for: the card says `license: other` with a
    name and LICENSE.md as the link, and LICENSE.md is written; a variant without it has none."""
    contrib = many("contrib/forum", 3, licence="Forum-Terms-1.0", commercial=False)
    for r in contrib:
        r["source"] = "contrib/forum"
    write_tables(tmp_path, {"good": many("good", 4), "contrib": contrib})
    build(tmp_path, ["good", "contrib"], variant="full")
    build(tmp_path, ["good", "contrib"], variant="commercial")
    full = tmp_path / "data/dataset/full"
    header = card_header(full / "README.md")
    assert header["license"] == ["mit", "other"]
    assert (header["license_name"], header["license_link"]) == ("forum-terms-1.0", "LICENSE.md")
    assert "| contrib/forum | Forum-Terms-1.0 | no |" in (full / "LICENSE.md").read_text(encoding="utf-8")
    commercial = tmp_path / "data/dataset/commercial"
    assert "license_link" not in card_header(commercial / "README.md")
    assert not (commercial / "LICENSE.md").exists()


def test_every_file_the_build_writes_is_kept_by_dvc_or_by_git(tmp_path):
    """What the build writes beside the splits must reach a fresh clone: a DVC output (cached, or
    `cache: false` and then in git) or a file git tracks. LICENSE.md, written only when a licence
    needs it (so it cannot be a DVC output), was once ignored by git and so lost: the card's
    `license_link` pointed at nothing after a clone."""
    contrib = many("contrib/forum", 3, licence="Forum-Terms-1.0", commercial=False)
    for r in contrib:
        r["source"] = "contrib/forum"
    write_tables(tmp_path, {"good": many("good", 4), "contrib": contrib})
    out = build(tmp_path, ["good", "contrib"], variant="full").out_dir
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["build"]["do"]
    declared = {
        (next(iter(o)) if isinstance(o, dict) else o).replace("${item}", "full")
        for kind in ("outs", "metrics", "plots")
        for o in stage.get(kind, [])
    }
    written = sorted(f"data/dataset/full/{p.name}" for p in out.iterdir())
    assert "data/dataset/full/LICENSE.md" in written
    undeclared = [name for name in written if name not in declared]
    assert undeclared == ["data/dataset/full/LICENSE.md"]
    # A checkout owned by another user than the one running the tests (a CI runner, a container's
    # root) is "dubious ownership" to git, which then exits 128 without answering: trusted here.
    git = ["git", "-c", f"safe.directory={ROOT}", "-C", str(ROOT)]
    ignored = subprocess.run(
        [*git, "check-ignore", "--no-index", *undeclared], capture_output=True, text=True
    )
    assert ignored.returncode in (0, 1), ignored.stderr  # 0: ignored, 1: not ignored, else git failed
    assert ignored.returncode == 1, f"git ignores what no DVC output keeps: {ignored.stdout.split()}"


# ----------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    ("build_params", "message"),
    [
        ({"seed": -1}, r"build\.seed: expected an integer in \[0, 2\*\*64\), got -1"),
        ({"seed": 2**64}, r"build\.seed: expected an integer in \[0, 2\*\*64\)"),
        ({"seed": 1.5}, r"build\.seed: expected an integer"),
        ({"seed": "x"}, r"build\.seed: expected an integer"),
        ({"seed": True}, r"build\.seed: expected an integer"),
        ({"seed": None}, r"build\.seed: expected an integer"),
        ({"val_fraction": None}, r"build\.val_fraction: expected a number in \[0, 1\), got None"),
        ({"val_fraction": "abc"}, r"build\.val_fraction: expected a number in \[0, 1\), got 'abc'"),
        ({"val_fraction": True}, r"build\.val_fraction: expected a number"),
        ({"val_fraction": 1}, r"build\.val_fraction: expected a number in \[0, 1\), got 1"),
        ({"val_fraction": -0.1}, r"build\.val_fraction: expected a number in \[0, 1\)"),
        ({"val_fraction": float("nan")}, r"build\.val_fraction: expected a number in \[0, 1\)"),
        ({"caps": ["good"]}, r"build\.caps: expected a mapping of source name -> characters"),
        ({"caps": {"good": -5}}, r"build\.caps\.good: expected a number of characters >= 0"),
        ({"caps": {"good": "big"}}, r"build\.caps\.good: expected a number of characters"),
        ({"caps": {"good": True}}, r"build\.caps\.good: expected a number of characters"),
        ({"split_opening_chars": -1}, r"build\.split_opening_chars: expected a number of characters >= 0"),
        ({"split_opening_chars": 1.5}, r"build\.split_opening_chars: expected a number of characters"),
        ({"export_text": "false"}, r"build\.export_text: expected true or false, got 'false'"),
        ({"export_text": None}, r"build\.export_text: expected true or false"),
        (
            {"val_fracton": 0.5},
            r"build\.val_fracton: unknown setting \(known: val_fraction, seed, split_opening_chars, caps",
        ),
    ],
)
def test_build_params_mistakes_name_the_key(build_params, message):
    with pytest.raises(BuildError, match=r"^params\.yaml " + message):
        BuildConfig.from_params("full", {"build": build_params})


def test_build_params_accept_what_yaml_and_dvc_write():
    cfg = BuildConfig.from_params(
        "full", {"build": {"val_fraction": "5e-2", "seed": 2**64 - 1, "caps": {"good": 1e6, "nc": None}}}
    )
    assert (cfg.val_fraction, cfg.seed, dict(cfg.caps)) == (0.05, 2**64 - 1, {"good": 1_000_000})
    assert BuildConfig.from_params("full", {"build": {"caps": None, "val_fraction": 0}}).val_fraction == 0.0
    with pytest.raises(BuildError, match=r"^params\.yaml build\.caps\.good: expected a number of characters"):
        BuildConfig.from_params("full", {"build": {"caps": {"good": 1.5}}})


@pytest.mark.parametrize(
    ("names", "message"),
    [("good", r"`sources` must be a list of source names"), ([None], r"`sources` must be a list")],
)
def test_sources_that_are_not_a_list_of_names_are_one_error(tmp_path, names, message):
    write_tables(tmp_path, {"good": many("good", 2)})
    with pytest.raises(BuildError, match=message):
        build_variant(tmp_path, names, REGISTRY, BuildConfig(variant="full"))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"workers": 0, "batch_conversations": 1}, r"tokenize\.shard_tokens: missing"),
        ({"shard_tokens": "x", "workers": 0, "batch_conversations": 1}, r"tokenize\.shard_tokens: expected"),
        ({"shard_tokens": 1, "workers": 0, "batch_conversations": 1}, r"tokenize\.shard_tokens: .*>= 2"),
        ({"shard_tokens": 100, "workers": -1, "batch_conversations": 1}, r"tokenize\.workers: .*>= 0"),
        ({"shard_tokens": 100, "workers": 1.5, "batch_conversations": 1}, r"tokenize\.workers: expected"),
        ({"shard_tokens": 100, "workers": 0, "batch_conversations": 0}, r"tokenize\.batch_conversations: "),
        ({"shard_tokens": 100, "workers": True, "batch_conversations": 1}, r"tokenize\.workers: expected"),
        (["shard_tokens"], r"tokenize: expected a mapping"),
        (
            {"shard_tokens": 100, "workers": 0, "batch_conversations": 1, "worker": 2},
            r"tokenize\.worker: unknown setting",
        ),
    ],
)
def test_tokenize_params_mistakes_name_the_key(params, message):
    with pytest.raises(ValueError, match=r"^params\.yaml " + message):
        tokenize_settings(params)


def test_tokenize_params_accept_what_yaml_writes():
    got = tokenize_settings({"shard_tokens": "1e6", "workers": 2, "batch_conversations": 512.0})
    assert got == {"shard_tokens": 1_000_000, "workers": 2, "batch_conversations": 512}


# ----------------------------------------------------------------------------- stage errors


def _stage(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NANOCHATGPT_ROOT": str(root), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_tokenize_stage_reports_user_mistakes_in_one_line(tmp_path):
    write_tables(tmp_path, {"good": many("good", 6)})
    build(tmp_path, ["good"])
    params = {"tokenize": {"shard_tokens": 4, "workers": 0, "batch_conversations": 2}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    too_long = _stage(tmp_path, "stages.tokenize", "full")
    assert too_long.returncode == 1 and "Traceback" not in too_long.stderr
    last = too_long.stderr.strip().splitlines()[-1]  # the lines before it are the progress bar
    assert last.startswith("tokenize@full: ") and "data/dataset/full/train.parquet: row 0 (" in last
    assert "more than tokenize.shard_tokens=4" in last
    params["tokenize"]["workers"] = -1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    bad = _stage(tmp_path, "stages.tokenize", "full")
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "tokenize@full: params.yaml tokenize.workers: expected an integer >= 0, got -1"
    )
    params["tokenize"]["workers"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    missing = _stage(tmp_path, "stages.tokenize", "nightly")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "data/dataset/nightly/train.parquet: dataset split not found" in missing.stderr


def test_build_stage_reports_a_params_mistake_in_one_line(tmp_path):
    write_tables(tmp_path, {"good": many("good", 2)})
    (tmp_path / "sources.yaml").write_text(
        "good:\n  kind: package\n  location: good_pkg\n  files: [a.json]\n  adapter: chitchat\n"
        "  licence: MIT\n  commercial: true\n"
    )
    params = {"sources": ["good"], "build": {"val_fraction": 0.1, "seed": -1}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = _stage(tmp_path, "stages.build", "full")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "build@full: params.yaml build.seed: expected an integer in [0, 2**64), got -1"
    )


def test_corrupt_input_files_are_named(tmp_path):
    write_tables(tmp_path, {"good": many("good", 6)})
    build(tmp_path, ["good"])
    train = tmp_path / "data/dataset/full/train.parquet"
    train.write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"train\.parquet: not a readable parquet file"):
        tokenize_dataset(
            train.parent, tmp_path / "tokens", shard_tokens=100, workers=0, batch_conversations=2
        )
    table = tmp_path / "data/normalized/good.parquet"
    table.write_bytes(table.read_bytes()[:50])
    with pytest.raises(BuildError, match=r"^data/normalized/good\.parquet: not a readable parquet file"):
        build(tmp_path, ["good"])


# ----------------------------------------------------------------------------- atomicity


def test_a_build_removes_what_a_killed_build_of_its_variant_left(tmp_path):
    """A killed build leaves its whole temporary copy (`.full.XXXX.tmp`, as big as the dataset) and
    perhaps `.full.old`; the next build of that variant deletes them, the other variant's stay."""
    write_tables(tmp_path, {"good": many("good", 4)})
    data = tmp_path / "data/dataset"
    for stale in (".full.k1ll3d_x.tmp", ".full.old", ".commercial.run_tidy.tmp"):  # mkdtemp: 8 characters
        (data / stale / "_scratch").mkdir(parents=True)
        (data / stale / "train.parquet").write_bytes(b"x" * 10)
    build(tmp_path, ["good"])
    assert sorted(p.name for p in data.iterdir()) == [".commercial.run_tidy.tmp", "full"]
    assert json.loads((data / "full/stats.json").read_text())["totals"]["rows_read"] == 8


def test_the_published_variant_is_readable_like_any_file_the_user_writes(tmp_path):
    """The variant is built in a mkdtemp directory (mode 0700) and JSON written through mkstemp
    (0600): published as is, a dataset "ready to hand over" was unreadable to anyone else (another
    user, a container running as another uid). It gets the modes the umask gives a new file."""
    write_tables(tmp_path, {"good": many("good", 4)})
    build(tmp_path, ["good"])
    umask = os.umask(0)
    os.umask(umask)
    d = tmp_path / "data/dataset/full"
    modes = {p.name: p.stat().st_mode & 0o777 for p in [d, *d.rglob("*")]}
    for name, mode in modes.items():
        expected = 0o777 & ~umask if (d / name).is_dir() or name == "full" else 0o666 & ~umask
        assert mode == expected, (name, oct(mode))


@pytest.mark.parametrize("val_fraction", [0.5, 0.9, 0.99])
def test_a_tiny_corpus_keeps_a_training_conversation(tmp_path, val_fraction):
    """The hash share can put every conversation of a tiny corpus in val, as it can leave val empty:
    then the conversation with the largest split hash stays in train (training needs one)."""
    write_tables(tmp_path, {"good": many("good", 3)})
    conv = build(tmp_path, ["good"], val_fraction=val_fraction, seed=7).stats["totals"]["conversations"]
    assert conv["train"] >= 1 and conv["val"] >= 1 and conv["train"] + conv["val"] == 3


# ----------------------------------------------------------------------------- caps vs dedup

CAP_REGISTRY = {
    "a": {"kind": "url", "licence": "MIT", "commercial": True},
    "b": {"kind": "url", "licence": "MIT", "commercial": True},
    "nc": {"kind": "url", "licence": "CC-BY-NC-4.0", "commercial": False},
}


def dialogues(source: str, n: int, copy: str = "", **terms) -> list[dict]:
    """The same n dialogues in any source ("question i" / "answer i", 18-20 characters each)."""
    return [
        r
        for i in range(n)
        for r in rows(f"{source}:{copy}{i}", [f"question {i}", f"answer {i}"], source, **terms)
    ]


def capped_build(root: Path, names: list[str], caps: dict[str, int], variant: str = "full"):
    """Build, check that every source's rows reconcile, return (per-source stats, source -> dialogues)."""
    cfg = BuildConfig(variant=variant, val_fraction=0.2, caps=caps)
    stats = build_variant(root, names, CAP_REGISTRY, cfg).stats["sources"]
    for s in stats.values():
        accounted = s["rows_kept"] + s["rows_quarantined"] + sum(s["rows_filtered"].values())
        assert s["reconciles"] and s["rows_read"] == accounted + s["duplicate_rows_removed"]
    d = root / "data" / "dataset" / variant
    out = pl.concat([pl.read_parquet(d / f"{split}.parquet") for split in ("train", "val")])
    texts = [tuple(m["content"] for m in ms) for ms in out["messages"].to_list()]
    assert len(set(texts)) == len(texts)  # no dialogue twice
    by_source: dict[str, set] = {}
    for source, text in zip(out["source"].to_list(), texts, strict=True):
        by_source.setdefault(source, set()).add(text)
    return stats, by_source


def test_a_cap_drops_a_dialogue_only_from_its_source_not_from_the_dataset(tmp_path):
    """The review's repro: a (capped) and b hold the same 20 dialogues. Dedup used to run before the
    cap, so b's copies were duplicates of a's, then the cap dropped 15 of a's: 5 dialogues left
    and b's 'duplicates' counted rows that existed nowhere. Now a keeps what its cap allows and b
    the other 15; b's duplicates are exactly the dialogues a kept."""
    write_tables(tmp_path, {"a": dialogues("a", 20), "b": dialogues("b", 20)})
    stats, kept = capped_build(tmp_path, ["a", "b"], {"a": 100})
    assert len(kept["a"]) == 5 and sum(stats["a"]["characters"].values()) <= 100  # 5 x 18-20 chars
    assert len(kept["a"] | kept["b"]) == 20 and not kept["a"] & kept["b"]
    assert stats["a"]["rows_filtered"]["cap"] == 2 * 15 and stats["a"]["duplicate_rows_removed"] == 0
    assert stats["b"]["rows_filtered"]["cap"] == 0 and stats["b"]["duplicate_rows_removed"] == 2 * 5
    assert stats["b"]["duplicates_removed"] == {"conversations": 5, "within_source": 0, "cross_source": 5}
    # Both capped: b's cap is spent on dialogues a did not keep, not on copies of a's.
    stats, kept = capped_build(tmp_path, ["a", "b"], {"a": 100, "b": 100})
    assert len(kept["a"]) == len(kept["b"]) == 5 and not kept["a"] & kept["b"]
    assert stats["b"]["rows_filtered"]["cap"] == 2 * 10 and stats["b"]["duplicate_rows_removed"] == 2 * 5


def test_a_cap_counts_distinct_dialogues_and_drops_their_copies_with_them(tmp_path):
    """Within one source: a dialogue's copies do not spend the cap, and the copies of a dialogue the
    cap dropped are counted as capped (not as duplicates of a conversation that is nowhere)."""
    write_tables(tmp_path, {"a": dialogues("a", 20) + dialogues("a", 20, copy="c")})
    stats, kept = capped_build(tmp_path, ["a"], {"a": 100})
    assert len(kept["a"]) == 5
    assert stats["a"]["duplicates_removed"] == {"conversations": 5, "within_source": 5, "cross_source": 0}
    assert stats["a"]["rows_filtered"]["cap"] == 2 * 30  # 15 dialogues, twice each


def test_non_commercial_copies_neither_spend_a_cap_nor_shadow_a_commercial_copy(tmp_path):
    """An NC source ranked first: filtered out of the commercial variant before dedup and caps, so
    the commercial source keeps what its cap allows; the full variant keeps the NC copies instead."""
    write_tables(
        tmp_path,
        {"nc": dialogues("nc", 20, licence="CC-BY-NC-4.0", commercial=False), "a": dialogues("a", 20)},
    )
    stats, kept = capped_build(tmp_path, ["nc", "a"], {"a": 100}, variant="commercial")
    assert set(kept) == {"a"} and len(kept["a"]) == 5
    assert stats["nc"]["rows_filtered"]["not_commercial"] == 40 and stats["a"]["duplicate_rows_removed"] == 0
    stats, kept = capped_build(tmp_path, ["nc", "a"], {"a": 100}, variant="full")
    assert set(kept) == {"nc"} and len(kept["nc"]) == 20
    assert stats["a"]["rows_filtered"]["cap"] == 0 and stats["a"]["duplicate_rows_removed"] == 40


# ----------------------------------------------------------------------------- the variants agree


def _splits(root: Path, variant: str) -> dict[str, str]:
    d = root / "data/dataset" / variant
    return {
        cid: split
        for split in ("train", "val")
        for cid in pl.read_parquet(d / f"{split}.parquet")["conversation_id"].to_list()
    }


@pytest.mark.parametrize("n_good", [1, 2, 3, 5])
@pytest.mark.parametrize("caps", [{}, {"nc": 150}])
def test_a_conversation_in_both_variants_sits_in_the_same_split(tmp_path, n_good, caps):
    """A tiny commercial variant beside a larger full one: the split's fallback (a variant without val
    gets its smallest hash moved there; one conversation alone goes to train) moved conversations in
    the commercial variant alone, so that good:2 was the full variant's train and the commercial
    variant's val: a run trained on full and validated on commercial (or the reverse) had seen it."""
    write_tables(
        tmp_path,
        {"good": many("good", n_good), "nc": many("nc", 40, licence="CC-BY-NC-4.0", commercial=False)},
    )
    for seed in range(6):
        for variant in ("full", "commercial"):
            build(tmp_path, ["good", "nc"], variant, val_fraction=0.05, seed=seed, caps=caps)
        full, commercial = _splits(tmp_path, "full"), _splits(tmp_path, "commercial")
        assert set(commercial) == {f"good:{i}" for i in range(n_good)} <= set(full)
        assert {c: full[c] for c in commercial} == commercial, f"seed {seed}"
        assert "train" in commercial.values() and "val" in full.values()
        if n_good >= 2:  # and each variant still has both splits
            assert set(commercial.values()) == {"train", "val"}


def test_a_non_commercial_licence_never_enters_the_commercial_variant_whatever_its_flag(tmp_path):
    """sources.yaml and the sidecar check refuse `commercial: true` under CC-BY-NC-*, but the build
    only asked for a flag and a known licence: a turn table they never checked (written by hand, or
    by a normalize from before a sidecar was corrected) put such rows in the commercial variant, while
    the model card (datasetcard.stats_terms) called them non-commercial. An SPDX expression counts
    as a whole: `MIT AND CC-BY-NC-4.0` forbids it, `MIT OR CC-BY-NC-4.0` (MIT, at the recipient's
    choice) does not."""
    registry = {**REGISTRY, "flagged_nc": {"kind": "url", "licence": "cc-by-nc-4.0", "commercial": True}}
    contrib = (
        many("contrib/ok", 2, licence="CC-BY-4.0")
        + many("contrib/bad", 2, licence="MIT AND CC-BY-NC-4.0", commercial=True)
        + many("contrib/either", 2, licence="MIT OR CC-BY-NC-4.0", commercial=True)
    )
    write_tables(tmp_path, {"flagged_nc": many("flagged_nc", 3), "contrib": contrib})
    cfg = BuildConfig(variant="commercial", val_fraction=0.2)
    stats = build_variant(tmp_path, ["flagged_nc", "contrib"], registry, cfg).stats
    d = tmp_path / "data/dataset/commercial"
    held = pl.concat([pl.read_parquet(d / f"{s}.parquet") for s in ("train", "val")])
    assert sorted(set(held["source"])) == ["contrib/either", "contrib/ok"]
    assert stats["sources"]["flagged_nc"]["rows_filtered"]["not_commercial"] == 6
    assert stats["sources"]["contrib"]["rows_filtered"]["not_commercial"] == 4
    full = build_variant(tmp_path, ["flagged_nc", "contrib"], registry, BuildConfig(variant="full")).stats
    assert not full["sources"]["contrib"]["parts"]["contrib/bad"]["commercial"]
