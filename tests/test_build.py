"""build@<variant> (pipeline/build.py): reconciliation, quarantine, commercial purity and
refusal, dedup, a leak-free deterministic split, and the two output formats."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import polars as pl
import pytest
import yaml

from pipeline import build as build_mod
from pipeline.build import assert_commercial_pure, build_variant
from pipeline.buildinputs import BuildConfig, BuildError, CommercialLeakError, resolve_sources
from pipeline.datasetformat import CONVERSATION_SCHEMA, parse_text
from pipeline.dedup import fold_text
from pipeline.schema import QUARANTINE_SCHEMA, TURN_SCHEMA, licence_known

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "build" / "mixed.yaml"
# polars 2.1.0 (pinned): the dedup key and split/order hashes of one fixed conversation (since the
# key drops a turn's final punctuation mark, "Hello!" is keyed as "hello").
GOLDEN_KEY = (315385603720216532, 4056788547700140566)
GOLDEN_HASHES = (11791401036103636407, 13934879213652581675)
TURN_LINE = re.compile(r"^<(human|bot)> .+ <endOfText>$")


# ----------------------------------------------------------------------------- fixture helpers


def conversation_rows(cid, texts, source, licence, commercial, context=None, roles=None, turns=None):
    roles = roles or ["human" if i % 2 == 0 else "bot" for i in range(len(texts))]
    turns = list(range(len(texts))) if turns is None else turns
    return [
        {
            "conversation_id": cid,
            "turn": t,
            "role": r,
            "text": x,
            "source": source,
            "licence": licence,
            "commercial": commercial,
            "context": context,
        }
        for t, r, x in zip(turns, roles, texts, strict=True)
    ]


def fixture_rows(fixture: dict) -> dict[str, list[dict]]:
    """Turn-table rows per source, as normalize would have written them."""
    out = {}
    for name, spec in fixture["sources"].items():
        reg = fixture["registry"][name]
        terms = {"licence": reg["licence"], "commercial": reg["commercial"], **(spec.get("row_terms") or {})}
        rows = []
        for i in range(spec.get("generate", 0)):
            rows += conversation_rows(
                f"{name}:g{i}", [f"{name} question {i}", f"{name} answer {i}"], name, **terms
            )
        for conv in spec.get("conversations", []):
            rows += conversation_rows(
                conv["id"],
                conv["turns"],
                conv.get("source", name),
                conv.get("licence", terms["licence"]),
                conv.get("commercial", terms["commercial"]),
                context=conv.get("context"),
            )
        out[name] = rows
    return out


def write_corpus(root: Path, rows: dict[str, list[dict]]) -> None:
    normalized = root / "data" / "normalized"
    normalized.mkdir(parents=True, exist_ok=True)
    for name, source_rows in rows.items():
        pl.DataFrame(source_rows, schema=TURN_SCHEMA).write_parquet(normalized / f"{name}.parquet")
        n = len(source_rows)
        report = {
            "source": name,
            "rows_read": n + 3,
            "rows_kept": n,
            "turns_kept": n,
            "rows_quarantined": 2,
            "rows_filtered": {"empty_text": 1},
            "quarantined_by_check": {"role_valid": 2},
            "conversations_kept": len({r["conversation_id"] for r in source_rows}),
        }
        (normalized / f"{name}.report.json").write_text(json.dumps(report))


@pytest.fixture
def fixture() -> dict:
    return yaml.safe_load(FIXTURE.read_text())


@pytest.fixture
def corpus(tmp_path, fixture):
    """(root, source names, registry) of the mixed fixture written as turn tables."""
    write_corpus(tmp_path, fixture_rows(fixture))
    return tmp_path, list(fixture["sources"]), fixture["registry"]


def run_build(root, names, registry, variant="full", **cfg):
    cfg.setdefault("val_fraction", 0.2)
    return build_variant(root, names, registry, BuildConfig(variant=variant, **cfg))


def read_dataset(root: Path, variant: str) -> pl.DataFrame:
    d = root / "data" / "dataset" / variant
    return pl.concat(
        [
            pl.read_parquet(d / f"{s}.parquet", glob=False).with_columns(split=pl.lit(s))
            for s in ("train", "val")
        ]
    )


def py_fold(text: str) -> str:
    """An independent (pure Python) statement of the dedup key's text folding. (Python's Unicode
    tables can be older than polars' regex ones: a code point newer than Python's, an emoji of
    Unicode 15 say, is a mark to polars and unassigned here, so the samples leave those out.)"""

    def is_mark(ch: str) -> bool:
        return unicodedata.category(ch)[0] in "PS"

    s = " ".join(text.lower().split())
    out: list[str] = []
    i = 0
    while i < len(s):
        if is_mark(s[i]):
            if out and out[-1] == " ":
                out.pop()
            out.append(s[i])
            i += 1
            while i < len(s) and (s[i] == " " or is_mark(s[i])):
                i += 1
        else:
            out.append(s[i])
            i += 1
    if out and unicodedata.category(out[-1])[0] == "P":  # a turn's final punctuation mark
        out.pop()
    return "".join(out)


def conversation_key(messages) -> tuple:
    return tuple((m["role"], py_fold(m["content"])) for m in messages)


# ----------------------------------------------------------------------------- reconciliation


BROKEN = [  # (check, conversation_id, rows) added to chitchat (contrib rows for their own terms)
    ("conversation_id_present", "", dict(texts=["a", "b"])),
    ("turn_valid", "chitchat:b_turn", dict(texts=["a", "b"], turns=[0, -1])),
    ("role_valid", "chitchat:b_role", dict(texts=["a", "b"], roles=["human", "system"])),
    ("text_present", "chitchat:b_empty", dict(texts=["a", "  "])),
    ("text_length", "chitchat:b_long", dict(texts=["a", "x" * 81])),
    ("text_no_control_chars", "chitchat:b_ctrl", dict(texts=["a", "b\x00"])),
    ("text_stripped", "chitchat:b_strip", dict(texts=[" a", "b"])),
    ("text_nfc", "chitchat:b_nfc", dict(texts=["cafe\u0301", "b"])),
    ("source_present", "chitchat:b_nosrc", dict(texts=["a", "b"], source="")),
    ("source_registered", "chitchat:b_src", dict(texts=["a", "b"], source="persona")),
    ("turn_unique", "chitchat:b_dupturn", dict(texts=["a", "b", "c"], turns=[0, 1, 1])),
    ("turns_contiguous", "chitchat:b_gap", dict(texts=["a", "b"], turns=[0, 2])),
    ("first_turn_human", "chitchat:b_botfirst", dict(texts=["a", "b"], roles=["bot", "human"])),
    ("roles_alternate", "chitchat:b_alt", dict(texts=["a", "b", "c"], roles=["human", "human", "bot"])),
    ("has_bot_turn", "chitchat:b_nobot", dict(texts=["a"])),
    ("conversation_consistent", "chitchat:b_ctx", dict(texts=["a", "b"], context="varies")),
]
BROKEN_CONTRIB = [
    ("licence_present", "contrib/x:b_lic", dict(texts=["a", "b"], licence=None)),
    ("commercial_present", "contrib/x:b_com", dict(texts=["a", "b"], commercial=None)),
    ("source_registered", "contrib/x:b_src", dict(texts=["a", "b"], source="persona")),
]


def broken_rows() -> tuple[list[dict], list[dict]]:
    chitchat, contrib = [], []
    for _check, cid, spec in BROKEN:
        spec = dict(spec)
        source = spec.pop("source", "chitchat")
        rows = conversation_rows(cid, spec.pop("texts"), source, "MIT", True, **spec)
        if cid == "chitchat:b_ctx":
            rows[0]["context"] = None  # context set on turn 1 only
        chitchat += rows
    for _check, cid, spec in BROKEN_CONTRIB:
        spec = dict(spec)
        terms = {"licence": spec.pop("licence", "CC-BY-4.0"), "commercial": spec.pop("commercial", True)}
        contrib += conversation_rows(cid, spec.pop("texts"), spec.pop("source", "contrib/x"), **terms, **spec)
    return chitchat, contrib


@pytest.fixture
def broken_corpus(tmp_path, fixture):
    rows = fixture_rows(fixture)
    chitchat, contrib = broken_rows()
    rows["chitchat"] += chitchat
    rows["contrib"] += contrib
    write_corpus(tmp_path, rows)
    return tmp_path, list(fixture["sources"]), fixture["registry"]


def test_every_broken_conversation_is_quarantined_whole_with_its_check(broken_corpus):
    root, names, registry = broken_corpus
    run_build(root, names, registry, max_turn_chars=80)
    q = pl.read_parquet(root / "data/dataset/full/quarantine.parquet")
    assert dict(q.schema) == QUARANTINE_SCHEMA
    got = dict(q.group_by("conversation_id").agg(pl.col("check").unique()).iter_rows())
    expected = {cid: [check] for check, cid, _ in BROKEN + BROKEN_CONTRIB}
    assert got == expected
    assert q["reason"].str.len_chars().min() > 5
    assert (
        q.filter(pl.col("conversation_id") == "chitchat:b_empty")["reason"][0]
        == "turn 1: text is empty (or only invisible characters)"
    )
    assert q["origin"].str.contains(r"^data/normalized/(chitchat|contrib)\.parquet:row \d+$").all()
    out = read_dataset(root, "full")
    assert not set(out["conversation_id"]) & set(expected)


def test_counts_reconcile_per_source_against_the_files(broken_corpus):
    root, names, registry = broken_corpus
    for variant in ("full", "commercial"):
        # Small parts: the write pass routes rows through several of them.
        stats = run_build(root, names, registry, variant=variant, max_turn_chars=80, part_chars=300).stats
        d = root / "data" / "dataset" / variant
        assert json.loads((d / "stats.json").read_text()) == stats
        out = read_dataset(root, variant)
        q = pl.read_parquet(d / "quarantine.parquet")
        for name in names:
            s = stats["sources"][name]
            in_file = pl.read_parquet(root / "data/normalized" / f"{name}.parquet").height
            mine = out.filter((pl.col("source") == name) | pl.col("source").str.starts_with(f"{name}/"))
            my_q = q.filter(pl.col("origin").str.starts_with(f"data/normalized/{name}.parquet:"))
            assert s["rows_read"] == in_file
            assert s["rows_kept"] == mine["messages"].list.len().sum() == sum(s["turns"].values())
            assert s["conversations"] == {
                k: mine.filter(pl.col("split") == k).height for k in ("train", "val")
            }
            assert s["rows_quarantined"] == my_q.height
            assert s["quarantined_by_check"] == dict(my_q.group_by("check").len().iter_rows())
            accounted = (
                s["rows_kept"]
                + s["rows_quarantined"]
                + sum(s["rows_filtered"].values())
                + s["duplicate_rows_removed"]
            )
            assert s["rows_read"] == accounted
            assert s["reconciles"] is True
            assert s["normalize"]["rows_read"] == in_file + 3  # the report is folded in
            assert s["matches_normalize_report"] is True
            assert s["licence"] == registry[name]["licence"]
            if "parts" in s:  # contributed files: the source is what its files that gave rows are
                giving = [p for p in s["parts"].values() if sum(p["conversations"].values())]
                assert giving and s["commercial"] == all(p["commercial"] for p in giving)
            else:
                assert s["commercial"] == registry[name]["commercial"]
        t = stats["totals"]
        assert t["rows_read"] == sum(s["rows_read"] for s in stats["sources"].values())
        assert t["conversations"]["train"] + t["conversations"]["val"] == out.height
        # metrics.json (the DVC metric) is the totals, flat enough to read, and they reconcile too.
        m = json.loads((d / "metrics.json").read_text())
        assert m["conversations"] == t["conversations"] and m["rows_read"] == t["rows_read"]
        filtered, dups = m["rows_filtered"], m["duplicate_rows_removed"]
        assert m["rows_read"] == m["rows_kept"] + m["rows_quarantined"] + filtered + dups
        assert m["sources"] == out["source"].str.split("/").list.first().n_unique()
    full = json.loads((root / "data/dataset/full/stats.json").read_text())
    assert full["sources"]["chitchat"]["rows_quarantined"] > 0
    assert full["totals"]["rows_filtered"]["not_commercial"] == 0
    assert stats["totals"]["rows_filtered"]["not_commercial"] > 0  # commercial variant


def test_input_table_with_a_missing_column_is_one_clear_error(corpus):
    root, names, registry = corpus
    path = root / "data/normalized/ubuntu.parquet"
    pl.read_parquet(path).drop("role").write_parquet(path)
    with pytest.raises(BuildError, match=r"data/normalized/ubuntu\.parquet: column 'role' is missing"):
        run_build(root, names, registry)
    assert not (root / "data/dataset/full").exists()


def test_a_conversation_id_used_by_two_sources_is_quarantined(corpus):
    root, names, registry = corpus
    path = root / "data/normalized/ubuntu.parquet"
    clash = pl.DataFrame(
        conversation_rows("persona:g0", ["u1", "u2"], "ubuntu", "unknown", False), schema=TURN_SCHEMA
    )
    pl.concat([pl.read_parquet(path), clash]).write_parquet(path)
    run_build(root, names, registry)
    q = pl.read_parquet(root / "data/dataset/full/quarantine.parquet")
    assert set(q.filter(pl.col("conversation_id") == "persona:g0")["check"]) == {"conversation_id_unique"}
    assert q.filter(pl.col("conversation_id") == "persona:g0").height == 4  # both sources' rows


# ----------------------------------------------------------------------------- commercial


COMMERCIAL_OK = {"chitchat", "contrib/ok"}


def test_commercial_variant_holds_only_commercial_known_licence_rows(corpus, capsys):
    root, names, registry = corpus
    run_build(root, names, registry, variant="full")
    stats = run_build(root, names, registry, variant="commercial").stats
    err = capsys.readouterr().err
    assert "arith: licence 'unknown' is not known" in err
    assert "contrib/unk: licence unknown, so it stays out" in err  # a contributed file is told too
    full, com = read_dataset(root, "full"), read_dataset(root, "commercial")
    assert {"persona", "ubuntu", "contrib/nc", "contrib/unk"} <= set(full["source"])  # the mix is mixed
    # `commercial` in the datasets is what the commercial variant does with the row: flagged
    # sources under an unknown licence say false in the full variant too.
    flagged_unknown = full.filter(pl.col("source").is_in(["arith", "contrib/unk"]))
    assert flagged_unknown.height > 0 and not flagged_unknown["commercial"].any()
    assert full.filter(pl.col("source").is_in(list(COMMERCIAL_OK)))["commercial"].all()
    assert set(com["source"]) == COMMERCIAL_OK
    assert com["commercial"].all()
    assert com.select(licence_known())["licence"].all()  # not even arith's commercial_reason override
    text = "".join((root / "data/dataset/commercial/text" / f).read_text() for f in ("train.txt", "val.txt"))
    for banned in (
        "persona question",
        "ubuntu question",
        "arith question",
        "non-commercial",
        "unknown licence",
    ):
        assert banned not in text
    # A commercial conversation whose non-commercial twin wins dedup in `full` is kept here.
    assert "chitchat:1" not in set(full["conversation_id"]) and "chitchat:1" in set(com["conversation_id"])
    assert "contrib/ok:2" not in set(full["conversation_id"]) and "contrib/ok:2" in set(
        com["conversation_id"]
    )
    s = stats["sources"]
    assert s["persona"]["rows_filtered"]["not_commercial"] == s["persona"]["rows_read"]
    # Every contributed file is listed (the card names those left out); only contrib/ok holds rows.
    parts = s["contrib"]["parts"]
    assert parts.keys() == {"contrib/ok", "contrib/nc", "contrib/unk"}
    assert {k for k, p in parts.items() if sum(p["conversations"].values())} == {"contrib/ok"}
    assert not parts["contrib/nc"]["commercial"] and not parts["contrib/unk"]["commercial"]


def test_commercial_build_refuses_to_write_impure_data(corpus, monkeypatch):
    root, names, registry = corpus
    run_build(root, names, registry, variant="commercial")
    out = root / "data/dataset/commercial"
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # Break the variant filter: the guard, which re-derives purity from the registry, must refuse.
    monkeypatch.setattr(build_mod, "eligible_expr", lambda variant, column="eligible": pl.lit(True))
    with pytest.raises(CommercialLeakError, match="refusing to write the commercial variant"):
        run_build(root, names, registry, variant="commercial")
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dir left
    fresh = root / "fresh"  # no earlier build: the refusal leaves no dataset at all
    shutil.copytree(root / "data/normalized", fresh / "data/normalized")
    with pytest.raises(CommercialLeakError):
        run_build(fresh, names, registry, variant="commercial")
    assert not (fresh / "data/dataset/commercial").exists()


@pytest.mark.parametrize(
    ("source", "licence", "commercial"),
    [
        ("persona", "MIT", True),
        ("contrib/unk", "unknown", True),
        ("contrib/nc", "CC-BY-NC-4.0", False),
        ("chitchat", "MIT", False),
        ("stranger", "MIT", True),
        ("arith", "unknown", True),
    ],
)
def test_commercial_guard_rejects_each_kind_of_row(corpus, source, licence, commercial):
    root, names, registry = corpus
    sources = resolve_sources(root, names, registry)
    good = pl.DataFrame(
        {
            "conversation_id": ["a", "b"],
            "source": ["chitchat", "contrib/ok"],
            "licence": ["MIT", "CC-BY-4.0"],
            "commercial": [True, True],
        }
    )
    assert_commercial_pure(good, sources)
    bad = pl.concat(
        [
            good,
            pl.DataFrame(
                {
                    "conversation_id": ["x"],
                    "source": [source],
                    "licence": [licence],
                    "commercial": [commercial],
                }
            ),
        ]
    )
    with pytest.raises(CommercialLeakError, match=re.escape(repr(source))):
        assert_commercial_pure(bad, sources)


def test_registry_is_authoritative_and_a_flip_only_rebuilds(corpus):
    root, names, registry = corpus
    tables = sorted((root / "data/normalized").iterdir())
    mtimes = [p.stat().st_mtime_ns for p in tables]
    run_build(root, names, registry, variant="commercial")
    com = read_dataset(root, "commercial")
    chitchat = com.filter(pl.col("source") == "chitchat")
    assert chitchat.height > 0 and set(chitchat["licence"]) == {"MIT"}  # rows said unknown/false
    assert "persona" not in set(com["source"])
    flipped = {**registry, "persona": {"kind": "hf_dataset", "licence": "CC-BY-4.0", "commercial": True}}
    run_build(root, names, flipped, variant="commercial")
    com = read_dataset(root, "commercial")
    assert set(com.filter(pl.col("source") == "persona")["licence"]) == {"CC-BY-4.0"}
    assert [p.stat().st_mtime_ns for p in tables] == mtimes


# ----------------------------------------------------------------------------- dedup


def test_fold_text_folds_trivial_variants_only():
    same = [
        "Hello!!  World",
        "hello! world",
        "HELLO ! WORLD",
        "  hello!world ",
        "hello\t!\n!world",
        "Hello! World?",  # a final mark is dropped (a review: "What is X?" / "What is X" straddled)
        "hello!world.",
    ]
    other = ["Hello? World", "Hello World", "Hell! World", "Hello! World 😀"]
    folded = pl.DataFrame({"t": same + other}).select(fold_text(pl.col("t")))["t"].to_list()
    assert len(set(folded[: len(same)])) == 1
    assert len(set(folded)) == 1 + len(other)
    assert [py_fold(t) for t in same + other] == folded
    rng = random.Random(0)
    alphabet = "aB é\t\n!?.,;-'\"€😀  xyZ"
    samples = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20))) for _ in range(500)]
    got = pl.DataFrame({"t": samples}).select(fold_text(pl.col("t")))["t"].to_list()
    assert got == [py_fold(t) for t in samples]


def test_dedup_exact_trivial_and_cross_source_counted_per_source(corpus):
    root, names, registry = corpus
    stats = run_build(root, names, registry).stats["sources"]
    ids = set(read_dataset(root, "full")["conversation_id"])
    assert {"persona:1", "ubuntu:1", "contrib/ok:1"} <= ids  # the first copy, by source order
    assert not {"chitchat:1", "chitchat:2", "ubuntu:2", "contrib/ok:2"} & ids
    # chitchat:2 is a trivial variant of chitchat:1, and both of persona:1, which is kept.
    assert stats["chitchat"]["duplicates_removed"] == {
        "conversations": 2,
        "within_source": 0,
        "cross_source": 2,
    }
    assert stats["ubuntu"]["duplicates_removed"] == {
        "conversations": 1,
        "within_source": 1,
        "cross_source": 0,
    }
    assert stats["contrib"]["duplicates_removed"] == {
        "conversations": 1,
        "within_source": 0,
        "cross_source": 1,
    }
    assert stats["persona"]["duplicates_removed"]["conversations"] == 0
    assert stats["chitchat"]["duplicate_rows_removed"] == 4


def test_dedup_folds_invisible_and_compatibility_forms_but_keeps_the_text(tmp_path):
    """Twins differing only by a zero-width space, BOM, soft hyphen, NBSP or fullwidth/ligature
    forms are one conversation (pipeline.dedup); the kept copy's text is stored untouched."""
    registry = {
        "a": {"kind": "package", "licence": "MIT", "commercial": True},
        "b": {"kind": "package", "licence": "MIT", "commercial": True},
    }
    first = ["Hel\u200blo there, ｆｒｉｅｎｄ!", "I'm \ufb01ne\u00a0thanks."]
    rows = {
        "a": conversation_rows("a:1", first, "a", "MIT", True)
        + conversation_rows("a:2", ["Hello there, friend!", "I'm fine thanks."], "a", "MIT", True)
        + conversation_rows("a:3", ["Un café?", "Oui."], "a", "MIT", True)
        + conversation_rows("a:4", ["Un cafe?", "Oui."], "a", "MIT", True),  # accents still count
        "b": conversation_rows(
            "b:1", ["\ufeffHELLO THERE, FRI\u00adEND！", "I'm fine thanks\u2060."], "b", "MIT", True
        )
        + conversation_rows(
            "b:2", ["Hello there? friend!", "I'm fine thanks."], "b", "MIT", True
        ),  # which mark
    }
    write_corpus(tmp_path, rows)
    stats = run_build(tmp_path, ["a", "b"], registry).stats["sources"]
    out = read_dataset(tmp_path, "full")
    assert set(out["conversation_id"]) == {"a:1", "a:3", "a:4", "b:2"}
    kept = out.filter(pl.col("conversation_id") == "a:1")["messages"].item()
    assert [m["content"] for m in kept] == first
    assert stats["a"]["duplicates_removed"] == {"conversations": 1, "within_source": 1, "cross_source": 0}
    assert stats["b"]["duplicates_removed"] == {"conversations": 1, "within_source": 0, "cross_source": 1}
    assert stats["a"]["duplicate_rows_removed"] == stats["b"]["duplicate_rows_removed"] == 2


# ----------------------------------------------------------------------------- split


def leaky_corpus(root: Path) -> tuple[list[str], dict]:
    """Many conversations, a third of them trivial variants of another, within and across sources."""
    registry = {
        "a": {"kind": "package", "licence": "MIT", "commercial": True},
        "b": {"kind": "package", "licence": "MIT", "commercial": True},
    }
    rows: dict[str, list[dict]] = {"a": [], "b": []}
    for i in range(300):
        texts = [f"Question number {i}, please?", f"Answer {i}: sure."]
        rows["a"] += conversation_rows(f"a:{i}", texts, "a", "MIT", True)
        if i % 3 == 0:
            variant = [t.upper().replace(" ", "   ").replace("?", "??") for t in texts]
            target = "b" if i % 2 else "a"
            rows[target] += conversation_rows(f"{target}:v{i}", variant, target, "MIT", True)
    write_corpus(root, rows)
    return ["a", "b"], registry


def test_split_is_leak_free_deterministic_and_seeded(tmp_path):
    names, registry = leaky_corpus(tmp_path)
    run_build(tmp_path, names, registry, val_fraction=0.3, seed=7, part_chars=2_000)
    out = read_dataset(tmp_path, "full")
    train, val = out.filter(pl.col("split") == "train"), out.filter(pl.col("split") == "val")
    assert 50 < val.height < 130 and train.height + val.height == 300
    assert not set(train["conversation_id"]) & set(val["conversation_id"])
    train_keys = {conversation_key(m) for m in train["messages"].to_list()}
    val_keys = {conversation_key(m) for m in val["messages"].to_list()}
    assert not train_keys & val_keys  # no duplicate of a val conversation is in train
    assert len(train_keys) + len(val_keys) == out.height  # and none left inside a split
    d = tmp_path / "data/dataset/full"
    files = ["train.parquet", "val.parquet", "text/train.txt", "text/val.txt"]
    first = {f: (d / f).read_bytes() for f in files}
    assert first["text/train.txt"] != first["text/val.txt"]
    run_build(tmp_path, names, registry, val_fraction=0.3, seed=7, part_chars=2_000)
    assert {f: (d / f).read_bytes() for f in files} == first  # byte-identical rebuild
    run_build(tmp_path, names, registry, val_fraction=0.3, seed=8)
    assert set(pl.read_parquet(d / "val.parquet")["conversation_id"]) != set(val["conversation_id"])


def test_split_is_keyed_on_content_so_twins_share_a_split(tmp_path):
    from pipeline.split import assign_split, split_hash

    keys = pl.DataFrame({"opening": [1, 1, 2, 3] * 50}, schema={"opening": pl.UInt64})
    out = assign_split(keys.with_columns(split_u=split_hash(3)), 0.5)
    assert out.group_by("opening").agg(pl.col("split").n_unique())["split"].max() == 1


def prefix_corpus(root: Path) -> tuple[list[str], dict]:
    """200 threads, each also kept cut short (its first four turns: a copy scraped before the
    replies came; the first turn is under the opening floor, the first exchange over it); 200 long
    prompts, each answered twice (arena battles); 200 chats that open with the same two-turn
    greeting and then differ."""
    registry = {"a": {"kind": "package", "licence": "MIT", "commercial": True}}
    rows: list[dict] = []
    for i in range(200):
        turns = [f"Thread {i}: here is my question about topic {i}" + ", with details" * 2]
        turns += [" ".join([f"Reply {j} in thread {i}, answering at some length."] * 3) for j in range(5)]
        rows += conversation_rows(f"a:long{i}", turns, "a", "MIT", True)
        rows += conversation_rows(f"a:short{i}", turns[:4], "a", "MIT", True)
        prompt = f"Prompt {i}: write a story about a lighthouse keeper who finds a map, in three parts."
        rows += conversation_rows(f"a:armA{i}", [prompt * 2, f"Model A's story {i}."], "a", "MIT", True)
        rows += conversation_rows(f"a:armB{i}", [prompt * 2, f"Model B's story {i}."], "a", "MIT", True)
        greeting = ["hello", "hi", f"tell me about {i}", f"{i} is a number"]
        rows += conversation_rows(f"a:hi{i}", greeting, "a", "MIT", True)
    write_corpus(root, {"a": rows})
    return ["a"], registry


@pytest.mark.parametrize("opening", [100, 0])
def test_conversations_that_open_alike_share_a_split(tmp_path, opening):
    """Dedup keeps a thread and its cut-short copy (they differ), and two answers to one prompt, but
    their shared turns must not sit in train and val at once; a short shared greeting must not pull
    unrelated chats into one split. With split_opening_chars 0 (whole conversations only), the pairs
    do straddle: the test can fail."""
    names, registry = prefix_corpus(tmp_path)
    run_build(tmp_path, names, registry, val_fraction=0.5, split_opening_chars=opening)
    split_of = dict(read_dataset(tmp_path, "full").select("conversation_id", "split").iter_rows())
    assert len(split_of) == 1000  # nothing deduplicated away
    threads = sum(split_of[f"a:long{i}"] != split_of[f"a:short{i}"] for i in range(200))
    battles = sum(split_of[f"a:armA{i}"] != split_of[f"a:armB{i}"] for i in range(200))
    greeting_val = sum(split_of[f"a:hi{i}"] == "val" for i in range(200))
    assert 60 < greeting_val < 140  # the greeting chats are still drawn one by one
    if opening:
        assert threads == battles == 0
    else:
        assert threads > 50 and battles > 50


@pytest.mark.parametrize("opening", [100, 0])
def test_short_answers_to_one_short_prompt_share_a_split(tmp_path, opening):
    """One-exchange conversations whose prompt and answer are both under the floor (chatterbot's
    answer variants, one prompt in two files): alternative answers to one prompt are one item, on
    one side of the split. Longer chats that open with that prompt are still drawn one by one. With
    split_opening_chars 0 (whole conversations only) the answers straddle: the test can fail."""
    registry = {"a": {"kind": "package", "licence": "MIT", "commercial": True}}
    rows: list[dict] = []
    for i in range(200):
        prompt = f"Question {i}?"
        for k in range(3):
            rows += conversation_rows(f"a:q{i}/{k}", [prompt, f"Answer {k}."], "a", "MIT", True)
        rows += conversation_rows(
            f"a:chat{i}", [prompt, "Let me think.", f"About {i}?", "Yes."], "a", "MIT", True
        )
    write_corpus(tmp_path, {"a": rows})
    run_build(tmp_path, ["a"], registry, val_fraction=0.5, split_opening_chars=opening)
    split_of = dict(read_dataset(tmp_path, "full").select("conversation_id", "split").iter_rows())
    assert len(split_of) == 800  # nothing deduplicated away
    apart = sum(len({split_of[f"a:q{i}/{k}"] for k in range(3)}) > 1 for i in range(200))
    with_the_answers = sum(split_of[f"a:chat{i}"] == split_of[f"a:q{i}/0"] for i in range(200))
    if opening:
        assert apart == 0 and 60 < with_the_answers < 140
    else:
        assert apart > 100


def test_a_checkout_path_with_glob_characters_reads_its_own_files(tmp_path):
    """polars globs a path by default: under "run[1]/" the build read "run1/"'s turn tables (or none)."""
    registry = {"a": {"kind": "package", "licence": "MIT", "commercial": True}}
    for name, word in (("run[1]", "mine"), ("run1", "other")):
        rows = [
            r for i in range(5) for r in conversation_rows(f"a:{i}", [f"{word} {i}", "ok"], "a", "MIT", True)
        ]
        write_corpus(tmp_path / name, {"a": rows})
    run_build(tmp_path / "run[1]", ["a"], registry, part_chars=10)
    first_turns = {m[0]["content"] for m in read_dataset(tmp_path / "run[1]", "full")["messages"].to_list()}
    assert first_turns == {f"mine {i}" for i in range(5)}


@pytest.mark.parametrize("val_fraction", [0.0, 0.5, 0.999999])
def test_a_single_conversation_goes_to_train(val_fraction: float) -> None:
    from pipeline.split import assign_split, split_hash

    for k in range(20):  # hashes on either side of every threshold
        one = pl.DataFrame({"opening": [k]}, schema={"opening": pl.UInt64})
        assert assign_split(one.with_columns(split_u=split_hash(3)), val_fraction)["split"].to_list() == [
            "train"
        ]


def test_a_split_move_for_one_variant_is_made_in_the_other() -> None:
    """The full variant holds a (val by its hash) and b (train); the commercial variant a alone, which
    goes to train there (one conversation alone). Split on its own, the full variant kept a in val: a
    was trained on by one variant and validated on by the other. Now a is train in both and the full
    variant's val gets b instead."""
    from pipeline.split import assign_split, val_threshold

    a, b = 1, val_threshold(0.5) + 1
    full = pl.DataFrame({"split_u": [a, b]}, schema={"split_u": pl.UInt64})
    commercial = full.head(1)
    both = {
        "full": assign_split(full, 0.5, [commercial["split_u"]]),
        "commercial": assign_split(commercial, 0.5, [full["split_u"]]),
    }
    assert both["full"]["split"].to_list() == ["train", "val"]
    assert both["commercial"]["split"].to_list() == ["train"]
    # Without the other variant's conversations the old answer stands: a is val.
    assert assign_split(full, 0.5)["split"].to_list() == ["val", "train"]


def test_build_splits_every_conversation_by_the_hash_of_its_opening(tmp_path):
    """The split column the build writes is assign_split of split_hash over each kept conversation's
    opening key (computed here from the input turn tables), not a hash of anything else: a hash of
    the conversation id would split twins under different ids apart when dedup is off or misses."""
    from pipeline import dedup
    from pipeline.split import assign_split, opening_key_agg, split_hash

    names, registry = leaky_corpus(tmp_path)
    seed, val_fraction = 11, 0.4
    run_build(tmp_path, names, registry, val_fraction=val_fraction, seed=seed)
    out = read_dataset(tmp_path, "full").select("conversation_id", "split")
    assert out.height == 300 and out["conversation_id"].is_unique().all()

    turns = pl.concat(
        [pl.read_parquet(tmp_path / "data" / "normalized" / f"{n}.parquet") for n in names], how="vertical"
    )
    keys = (
        turns.with_columns(dedup.folded_text())
        .with_columns(*dedup.row_key_hashes(), _fchars=pl.col("_folded").str.len_chars())
        .group_by("conversation_id")
        .agg(opening_key_agg(100))
    )
    kept = keys.join(out.select("conversation_id"), on="conversation_id", how="semi")
    want = assign_split(kept.with_columns(split_u=split_hash(seed)), val_fraction)
    got = out.join(want.select("conversation_id", want_split="split"), on="conversation_id", how="left")
    assert got["want_split"].null_count() == 0
    wrong = got.filter(pl.col("split") != pl.col("want_split"))
    assert wrong.is_empty(), wrong.head(5)
    assert 60 < got.filter(pl.col("split") == "val").height < 180  # both splits really drawn by hash


def test_dedup_key_and_split_hash_are_pinned():
    """Golden values: a polars upgrade that changes `hash` would silently move every split."""
    from pipeline import dedup, split

    rows = pl.DataFrame(
        {"turn": [0, 1], "role": ["human", "bot"], "text": ["Hello!", "Hi"]},
        schema_overrides={"turn": pl.Int32},
    )
    rows = rows.with_columns(dedup.folded_text()).with_columns(
        *dedup.row_key_hashes(), _fchars=pl.col("_folded").str.len_chars()
    )
    key = rows.select(*dedup.conversation_key_aggs(), split.opening_key_agg(100))
    hashes = key.select(split.split_hash(1337).alias("s"), split.order_hash(1337).alias("o"))
    # a short one-exchange conversation's opening is its prompt (turn 0), its k1 is all of it
    assert key["opening"].item() == rows["_h1"][0] != key["k1"].item()
    assert (key.select("k1", "k2").row(0), hashes.row(0)) == (GOLDEN_KEY, GOLDEN_HASHES)


def test_tiny_corpus_still_gets_a_val_conversation(tmp_path):
    registry = {"a": {"kind": "package", "licence": "MIT", "commercial": True}}
    write_corpus(
        tmp_path,
        {
            "a": conversation_rows("a:1", ["x", "y"], "a", "MIT", True)
            + conversation_rows("a:2", ["p", "q"], "a", "MIT", True)
        },
    )
    stats = run_build(tmp_path, ["a"], registry, val_fraction=0.01).stats
    assert stats["totals"]["conversations"] == {"train": 1, "val": 1}


def test_caps_bound_a_source_and_are_counted(corpus):
    root, names, registry = corpus
    stats = run_build(root, names, registry, caps={"persona": 300}).stats["sources"]["persona"]
    assert 0 < sum(stats["characters"].values()) <= 300
    assert stats["rows_filtered"]["cap"] > 0
    with pytest.raises(BuildError, match="nosuch"):
        run_build(root, names, registry, caps={"nosuch": 10})


# ----------------------------------------------------------------------------- outputs


def test_datasets_load_dataset_reads_the_output(corpus, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    root, names, registry = corpus
    run_build(root, names, registry)
    import datasets

    d = root / "data/dataset/full"
    ds = datasets.load_dataset(
        "parquet",
        data_files={"train": str(d / "train.parquet"), "validation": str(d / "val.parquet")},
        cache_dir=str(tmp_path / "hf-cache"),
    )
    expected = pl.read_parquet(d / "train.parquet")
    assert ds["train"].num_rows == expected.height and ds["validation"].num_rows > 0
    row = ds["train"][0]
    assert set(row) == set(CONVERSATION_SCHEMA)
    assert row["messages"][0]["role"] == "human" and row["messages"][0]["content"]
    assert row["conversation_id"] == expected["conversation_id"][0]


def test_output_schema_and_message_order(corpus):
    root, names, registry = corpus
    run_build(root, names, registry)
    out = pl.read_parquet(root / "data/dataset/full/train.parquet")
    assert dict(out.schema) == CONVERSATION_SCHEMA
    p2 = read_dataset(root, "full").filter(pl.col("conversation_id") == "persona:2").row(0, named=True)
    assert [m["role"] for m in p2["messages"]] == ["human", "bot", "human", "bot"]
    assert p2["messages"][1]["content"] == "Arr, matey!\nWhat be yer name?"
    assert p2["context"] == "<system> pretend to be a pirate"


def test_text_export_round_trips_and_keeps_the_format(corpus):
    root, names, registry = corpus
    run_build(root, names, registry)
    d = root / "data/dataset/full"
    for split in ("train", "val"):
        text = (d / "text" / f"{split}.txt").read_text(encoding="utf-8")
        table = pl.read_parquet(d / f"{split}.parquet")
        expected = [
            {"context": c, "messages": m}
            for c, m in zip(table["context"], table["messages"].to_list(), strict=True)
        ]
        assert parse_text(text) == expected
        blocks = text.rstrip("\n").split("\n\n")
        assert len(blocks) == table.height
        for block, context in zip(blocks, table["context"], strict=True):
            lines = block.split("\n")
            turn_lines = lines[1:] if context else lines
            assert all(TURN_LINE.match(line) for line in turn_lines), block
            assert turn_lines[0].startswith("<human> ")
    full = (d / "text/train.txt").read_text() + (d / "text/val.txt").read_text()
    assert "<bot> Arr, matey!\\nWhat be yer name? <endOfText>" in full
    assert "\n<system> pretend to be a pirate\n<human> Ahoy? <endOfText>" in full  # cannot read as a turn


MARKER_RE = re.compile(r"(?i)<(human|bot|endoftext|\|endoftext\|)>")


@pytest.mark.parametrize(
    "content",
    [
        "what does <bot> mean?",
        "<HUMAN> hi <endOfText>",
        "a\nb <|endoftext|> c",
        "<\\bot> literal",
        "x\\<bot>",
        "<",
    ],
)
@pytest.mark.parametrize("context", [None, "<bot> persona", "<html> page", "two\nlines", "\\<bot>"])
def test_marker_text_is_escaped_so_no_reader_finds_a_turn_in_it(content: str, context: str | None) -> None:
    """A reader that looks for markers anywhere in a line (the seed's tooling, the nanochatgpt adapter)
    must not find one inside text; parse_text still gets the exact text back."""
    from pipeline.datasetformat import context_line, turn_line

    frame = pl.DataFrame(
        {"role": ["human", "bot"], "text": [content, "ok"], "context": [context] * 2},
        schema={"role": pl.String, "text": pl.String, "context": pl.String},
    )
    lines = frame.select(turn_line(pl.col("role"), pl.col("text")).alias("l"))["l"].to_list()
    ctx = frame.select(context_line(pl.col("context")).alias("c"))["c"][0]
    export = "\n".join(([ctx] if ctx is not None else []) + lines) + "\n"
    messages = [{"role": "human", "content": content}, {"role": "bot", "content": "ok"}]
    assert parse_text(export) == [{"context": context, "messages": messages}]
    inner = [line[line.index("> ") + 2 : -len(" <endOfText>")] for line in lines] + [ctx or ""]
    assert not any(MARKER_RE.search(text) for text in inner), export


def test_export_text_off_leaves_an_empty_text_dir(corpus):
    root, names, registry = corpus
    run_build(root, names, registry, export_text=False)
    assert list((root / "data/dataset/full/text").iterdir()) == []


# ----------------------------------------------------------------------------- stage


SOURCES_YAML = """\
chitchat:
  kind: package
  location: chitchat_dataset
  files: [dataset.json]
  adapter: chitchat
  licence: MIT
  commercial: true
contrib:
  kind: contrib
  location: data/contrib
  adapter: contrib
  licence: per-file
  commercial: false
"""


def test_stage_cli_builds_and_reports_errors_in_one_line(tmp_path, fixture):
    rows = fixture_rows(fixture)
    write_corpus(tmp_path, {"chitchat": rows["chitchat"], "contrib": rows["contrib"]})
    (tmp_path / "sources.yaml").write_text(SOURCES_YAML)
    params = {
        "sources": ["chitchat", "contrib"],
        "build": {"val_fraction": 0.1, "seed": 1, "caps": {}, "export_text": True},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "NANOCHATGPT_ROOT": str(tmp_path), "PYTHONPATH": str(ROOT)}

    def stage(*args):
        return subprocess.run(
            [sys.executable, "-m", "stages.build", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = stage("commercial")
    assert ok.returncode == 0, ok.stderr
    assert "build@commercial:" in ok.stdout
    d = tmp_path / "data/dataset/commercial"
    for f in ("train.parquet", "val.parquet", "stats.json", "quarantine.parquet", "text/train.txt"):
        assert (d / f).is_file(), f
    assert set(read_dataset(tmp_path, "commercial")["source"]) == {"chitchat", "contrib/ok"}
    assert stage("nightly").returncode == 2
    (tmp_path / "data/normalized/contrib.parquet").unlink()
    err = stage("full")
    assert err.returncode == 1
    assert err.stderr.strip().count("\n") == 0 and "data/normalized/contrib.parquet: missing" in err.stderr


def card_header(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_dataset_card_names_the_terms_of_what_each_variant_holds(corpus):
    root, names, registry = corpus
    for variant in ("full", "commercial"):
        run_build(root, names, registry, variant=variant)
    full = card_header(root / "data/dataset/full/README.md")
    com = card_header(root / "data/dataset/commercial/README.md")
    # The full variant holds NC and unknown-licence data, and its card says so; the commercial
    # card lists exactly the licences of the rows the commercial files hold.
    assert {"cc-by-nc-4.0", "unknown", "mit", "cc-by-4.0"} <= set(full["license"])
    held = read_dataset(root, "commercial")["licence"].unique().to_list()
    assert sorted(com["license"]) == sorted(x.lower() for x in held)
    body = (root / "data/dataset/commercial/README.md").read_text(encoding="utf-8")
    assert "| contrib/ok | CC-BY-4.0 | yes |" in body
    assert "persona (CC-BY-NC-4.0; its licence forbids commercial use)" in body  # left out, and why
    assert "| persona |" not in body


def test_the_cards_loading_recipe_reads_a_rebuild_not_a_stale_cache(corpus, monkeypatch, tmp_path):
    """`datasets` caches `load_dataset(<folder>)` by folder name, not content: after a rebuild it
    returned the old rows. The card's recipe (run as written, from the project root) must not."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    datasets = pytest.importorskip("datasets")
    # datasets reads HF_DATASETS_CACHE once, when first imported: after an earlier test's import the
    # variable above did nothing, and the recipe (no cache_dir) cached under ~/.cache/huggingface,
    # which fails where HOME is not writable. Its module-level paths are set here too.
    config = datasets.config
    downloads = tmp_path / "hf-cache" / config.DOWNLOADED_DATASETS_DIR
    monkeypatch.setattr(config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.setattr(config, "DOWNLOADED_DATASETS_PATH", downloads)
    monkeypatch.setattr(config, "EXTRACTED_DATASETS_PATH", downloads / config.EXTRACTED_DATASETS_DIR)
    root, names, registry = corpus
    monkeypatch.chdir(root)

    def build_and_load(val_fraction: float) -> tuple[dict, tuple[int, int]]:
        conv = run_build(root, names, registry, val_fraction=val_fraction).stats["totals"]["conversations"]
        card = (root / "data/dataset/full/README.md").read_text(encoding="utf-8")
        recipe = card.split("```python\n", 1)[1].split("```", 1)[0]
        scope: dict = {}
        exec(recipe, scope)  # the card's own words, as a reader would paste them
        ds = scope["ds"]
        return conv, (ds["train"].num_rows, ds["validation"].num_rows)

    for val_fraction in (0.2, 0.5):
        conv, rows = build_and_load(val_fraction)
        assert rows == (conv["train"], conv["val"])
    assert conv["val"] > 0.3 * (conv["train"] + conv["val"])  # the second build really differs


def test_dataset_card_splits_load_with_datasets(corpus, monkeypatch):
    """`datasets.load_dataset(<variant dir>)` reads the splits the card names, with the stats' counts."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    root, names, registry = corpus
    stats = run_build(root, names, registry, variant="full").stats
    ds = datasets.load_dataset(str(root / "data/dataset/full"), cache_dir=str(root / "hf-cache"))
    assert set(ds) == {"train", "validation"}
    conv = stats["totals"]["conversations"]
    assert (ds["train"].num_rows, ds["validation"].num_rows) == (conv["train"], conv["val"])
    body = (root / "data/dataset/full/README.md").read_text(encoding="utf-8")
    assert f"| train | {conv['train']:,} |" in body and f"| validation | {conv['val']:,} |" in body


def test_flagged_data_under_a_non_commercial_licence_is_warned_about_by_its_real_bar(
    tmp_path: Path, capsys
) -> None:
    """The warning said "is not known" for a registry entry flagged under CC-BY-NC (the build keeps
    it out because that licence forbids commercial use), and nothing at all for such a contributed
    file (it was looked for among unknown licences only). Each now says what keeps it out, as
    commercial_eligible decides; an unknown licence keeps its wording."""
    from pipeline.buildinputs import SourceInput

    table = tmp_path / "contrib.parquet"
    rows = [
        *conversation_rows("c:1", ["q", "a"], "contrib/nc", "CC-BY-NC-4.0", True),
        *conversation_rows("c:2", ["q", "a"], "contrib/unk", "unknown", True),
        *conversation_rows("c:3", ["q", "a"], "contrib/ok", "MIT", True),
        *conversation_rows("c:4", ["q", "a"], "contrib/off", "CC-BY-NC-4.0", False),
    ]
    pl.DataFrame(rows, schema=TURN_SCHEMA).write_parquet(table)

    def source(name: str, kind: str, licence: str) -> SourceInput:
        return SourceInput(name, 0, table, name, kind, licence, True)

    messages = build_mod.warn_licences_kept_out(
        [
            source("nc", "package", "CC-BY-NC-SA-4.0"),
            source("unk", "package", "unknown"),
            source("contrib", "contrib", "per-file"),
        ]
    )
    assert messages == [
        "build: nc: licence 'CC-BY-NC-SA-4.0' forbids commercial use, so it stays out of the commercial "
        "variant despite `commercial: true` (set `commercial: false` in sources.yaml)",
        "build: unk: licence 'unknown' is not known, so it stays out of the commercial variant despite "
        "`commercial: true` (name its licence in sources.yaml)",
        "build: contrib/nc: licence 'CC-BY-NC-4.0' forbids commercial use, so it stays out of the "
        "commercial variant despite `commercial: true` (set `commercial: false` in the sidecar)",
        "build: contrib/unk: licence unknown, so it stays out of the commercial variant despite "
        "`commercial: true` (name its licence in the sidecar)",
    ]
    assert capsys.readouterr().err.splitlines() == messages
