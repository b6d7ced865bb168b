"""Source registry, contributed files, downloads of every kind, the stage entry points and the table.

No test touches the network: hub downloads run against a local directory laid out like a
Hugging Face cache with HF_HUB_OFFLINE=1, URL downloads against a server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PurePath

import polars as pl
import pytest
import yaml

from pipeline.atomic import sha256_file
from pipeline.schema import validate
from pipeline.sources.contrib import infer_format, scan_contrib
from pipeline.sources.download import download, raw_dir
from pipeline.sources.errors import SourceError
from pipeline.sources.licences import is_non_commercial
from pipeline.sources.normalize import normalize_source, output_paths, write_outputs
from pipeline.sources.registry import SourceSpec, enabled_sources, load_registry, parse_entry
from pipeline.sources.table import source_rows

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "sources"
OASST_REV = "fdf72ae0827c1cda404aff25b6603abec9e3399b"


def entry(**fields: object) -> dict:
    base = {
        "kind": "package",
        "location": "x",
        "files": ["a"],
        "adapter": "chitchat",
        "licence": "MIT",
        "commercial": True,
    }
    base.update(fields)
    return base


# ---------------------------------------------------------------------------------------------- registry


def test_registry_has_every_source_with_licences() -> None:
    reg = load_registry(REPO / "sources.yaml")
    expected = {  # name -> (licence, commercial)
        "chitchat": ("MIT", True),
        "chatterbot": ("BSD-3-Clause", True),
        "oasst1": ("Apache-2.0", True),
        "empathetic_dialogues": ("CC-BY-NC-4.0", False),
        "chatbot_arena": ("CC-BY-NC-4.0", False),
        "personachat": ("unknown", False),
        "babylm": ("unknown", False),
        "twitter": ("unknown", False),
        "ubuntu": ("unknown", False),
        "hackernews": ("unknown", False),
        "arithmetic": ("unknown", False),
        "dailydialog": ("CC-BY-NC-SA-4.0", False),
    }
    for name, (licence, commercial) in expected.items():
        assert (reg[name].licence, reg[name].commercial) == (licence, commercial), name
        assert reg[name].commercial_reason, name
    assert reg["contrib"].kind == "contrib"
    hub = [s for s in reg.values() if s.kind == "hf_dataset"]
    assert len(hub) == 6 and all(s.revision for s in hub)
    # ParlAI's archives, pinned to the sha256 ParlAI's build.py (and HF's dataset_infos.json) declare;
    # the twitter file and the DailyDialog zip have no published hash, so no pin (the download asks for one)
    urls = {s.name: s for s in reg.values() if s.kind == "url"}
    assert {n: (s.archive, s.sha256 is not None) for n, s in urls.items()} == {
        "empathetic_dialogues": (True, True),
        "personachat": (True, True),
        "twitter": (False, False),
        "dailydialog": (True, False),
    }
    assert reg["oasst1"].revision == OASST_REV and reg["oasst1"].location == "OpenAssistant/oasst1"
    assert reg["chatbot_arena"].gated and reg["chatbot_arena"].token_env == "HF_TOKEN"
    # hub sources are wired but disabled by default: the default pipeline needs no network
    assert enabled_sources(REPO / "params.yaml") == ["chitchat", "chatterbot", "contrib"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"licence": "unknown", "commercial": True}, "commercial_reason"),
        ({"licence": "NOASSERTION", "commercial": True}, "commercial_reason"),
        ({"licence": "CC-BY-NC-4.0", "commercial": True}, "does not allow commercial use"),
        (
            {"licence": "CC-BY-NC-SA-4.0", "commercial": True, "commercial_reason": "we asked"},
            "does not allow commercial use",
        ),
        ({"licence": "research-only", "commercial": True}, "does not allow commercial use"),
        ({"licence": "my-own-licence", "commercial": True}, "not one this project knows"),
        ({"licence": ""}, "licence"),
        ({"commercial": "yes"}, "commercial"),
        ({"kind": "ftp"}, "kind must be one of"),
        ({"adapter": "nope"}, "unknown adapter"),
        ({"colour": "red"}, "unknown field"),
        ({"kind": "hf_dataset", "revision": None}, "revision"),
        ({"kind": "url", "sha256": "abc"}, "sha256"),
        ({"files": []}, "files"),
        ({"gated": "false"}, "`gated:` must be true or false"),  # bool("false") would be True
        ({"local_path": 5}, "`local_path:` must be a path"),
        ({"token_env": ["HF_TOKEN"]}, "`token_env:` must be"),
        ({"kind": "url", "archive": "yes"}, "`archive:` must be true or false"),
        ({"archive": True}, "`archive: true` is for url sources"),
        ({"files": ["data/**.parquet"]}, "'\\*\\*' can only be a whole path part"),
        (
            {"options": {"pairs": True}},
            r"`options:` 'pairs' is not an option of adapter chitchat \(it takes no options\)",
        ),
        (  # chatbot_arena's spelling on oasst1: it kept every language without a word
            {"adapter": "oasst1", "options": {"lang": "en"}},
            r"`options:` 'lang' is not an option of adapter oasst1 \(its options are language\)",
        ),
        # option values are type-checked, never coerced: bool("false") is True, int(None) a traceback
        ({"adapter": "twitter", "options": {"pairs": "false"}}, r"`options:` pairs must be true or false"),
        (
            {"adapter": "babylm", "options": {"max_lines": 3.5}},
            r"`options:` max_lines must be a whole number",
        ),
        ({"adapter": "babylm", "options": {"max_lines": -1}}, r"`options:` max_lines must be a whole number"),
        ({"adapter": "babylm", "options": {"max_lines": True}}, r"`options:` max_lines must be a whole"),
        ({"adapter": "oasst1", "options": {"language": ["en"]}}, r"`options:` language must be a language"),
    ],
)
def test_registry_rejects_bad_entries(fields: dict, message: str) -> None:
    with pytest.raises(SourceError, match=message) as err:
        parse_entry("demo", entry(**fields))
    assert "demo" in str(err.value) and "\n" not in str(err.value)


def test_the_option_table_names_what_each_adapter_reads() -> None:
    """adapters.OPTIONS (what the registry accepts) lists exactly the options each adapter module
    reads, so a new option cannot be refused nor an old one pass unchecked; every read goes through
    adapters.option (type-checked), none through `spec.options` directly."""
    from pipeline.sources.adapters import ADAPTERS, OPTIONS

    adapters = REPO / "pipeline" / "sources" / "adapters"
    read = {}
    for name, module in ADAPTERS.items():
        code = (adapters / f"{module}.py").read_text()
        assert "spec.options" not in code, module
        keys = re.findall(r"\boption\(spec, \"(\w+)\"\)", code)
        if keys:
            read[name] = tuple(sorted(keys))
    assert read == {name: tuple(sorted(keys)) for name, keys in OPTIONS.items()}


def test_null_options_are_their_defaults_and_adapters_check_types_too(tmp_path: Path) -> None:
    """`max_lines:` left empty in YAML is null: the default (it was int(None), a traceback). A
    SourceSpec built in code skips the registry, so the adapter's read checks the type as well."""
    from pipeline.sources.adapters import get_adapter

    spec = parse_entry("demo", entry(adapter="babylm", options={"max_lines": None}))
    (tmp_path / "a.txt").write_text("".join(f"line {i}\n" for i in range(40)))
    rows = get_adapter("babylm")(tmp_path, spec, {})
    assert rows["conv_key"].unique(maintain_order=True).to_list() == ["a.txt:1", "a.txt:33"]  # default 32
    coerced = replace(parse_entry("demo", entry(adapter="twitter")), options={"pairs": "false"})
    with pytest.raises(SourceError, match=r"^demo: `options:` pairs must be true or false, not 'false'"):
        get_adapter("twitter")(tmp_path, coerced, {})


def test_unknown_licence_may_be_commercial_with_a_reason() -> None:
    spec = parse_entry(
        "demo", entry(licence="unknown", commercial=True, commercial_reason="author's written OK")
    )
    assert spec.commercial and spec.commercial_reason == "author's written OK"


def test_licence_names_and_commercial_claims() -> None:
    # Known permissive licences need no reason (any case); an unlisted one needs one.
    assert parse_entry("demo", entry(licence="cc-by-4.0", commercial=True)).commercial
    reason = "the author's licence text grants commercial use"
    assert parse_entry(
        "demo", entry(licence="my-own-licence", commercial=True, commercial_reason=reason)
    ).commercial
    # A non-commercial licence is fine when the entry does not claim commercial use.
    assert not parse_entry("demo", entry(licence="CC-BY-NC-4.0", commercial=False)).commercial
    # "NC" must be a part of the name, not any "nc" inside a word.
    assert not is_non_commercial("Nonce-1.0") and not is_non_commercial("CC-BY-SA-4.0")
    assert is_non_commercial("cc-by-nc-nd-4.0") and is_non_commercial("Non-Commercial use")
    for name in ("Research use only", "academic use only", "Not for commercial use", "CC-BY-NC4.0"):
        assert is_non_commercial(name), name
    for name in ("MIT", "Apache-2.0", "CC0-1.0", "ODC-By-1.0", "Unlicense", "BSD-3-Clause"):
        assert not is_non_commercial(name), name


# ---------------------------------------------------------------------------------------------- contrib


def _contrib(folder: Path, name: str, body: str | bytes, sidecar: dict | None) -> None:
    path = folder / name
    path.write_bytes(body.encode() if isinstance(body, str) else body)
    if sidecar is not None:
        path.with_suffix(".yaml").write_text(yaml.safe_dump(sidecar))


def test_contrib_file_without_sidecar_is_refused_in_one_line(tmp_path: Path) -> None:
    _contrib(tmp_path, "chats.jsonl", '{"messages": []}\n', None)
    with pytest.raises(SourceError) as err:
        scan_contrib(tmp_path)
    msg = str(err.value)
    assert "chats.jsonl" in msg and "chats.yaml" in msg and "licence" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("sidecar", "message"),
    [
        ({"commercial": True}, "licence"),
        ({"licence": "MIT"}, "commercial"),
        ({"licence": "unknown", "commercial": True}, "commercial_reason"),
        ({"licence": "CC-BY-NC-4.0", "commercial": True}, "does not allow commercial use"),
        ({"licence": "my-own-licence", "commercial": True}, "not one this project knows"),
        ({"licence": 1.0, "commercial": False}, "must be text"),
        (
            {"licence": "MIT", "commercial": True, "comercial_reason": "typo"},
            "unknown field.*comercial_reason",
        ),
    ],
)
def test_contrib_sidecar_needs_licence_and_commercial(tmp_path: Path, sidecar: dict, message: str) -> None:
    _contrib(tmp_path, "chats.txt", "<human> a <endOfText>\n", sidecar)
    with pytest.raises(SourceError, match=message):
        scan_contrib(tmp_path)


def test_contrib_sidecars_are_paired_by_lookup_not_by_scanning_every_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each data file's sidecar was found by comparing the stem of every sidecar: 5,000 files took ~25
    million stem comparisons (minutes in each of registry, download, normalize and check). Counted,
    not timed: pairing must take a few stems per file, however many files the folder holds."""
    n = 200
    for i in range(n):
        _contrib(
            tmp_path,
            f"f{i}.txt",
            "<human> a <endOfText>\n<bot> b <endOfText>\n",
            {"licence": "MIT", "commercial": True},
        )
    stems = 0
    stem = PurePath.stem

    def counted(self: PurePath) -> str:
        nonlocal stems
        stems += 1
        return stem.fget(self)

    monkeypatch.setattr(PurePath, "stem", property(counted))
    assert len(scan_contrib(tmp_path)) == n
    assert stems < 20 * n  # quadratic pairing made it n * 2n = 80,000


def test_contrib_format_is_inferred(tmp_path: Path) -> None:
    for name, body in [
        ("a.txt", "<human> hi <endOfText>"),
        ("b.jsonl", '{"messages": []}'),
        ("c.json", '[{"id": 1, "conversations": []}]'),
    ]:
        (tmp_path / name).write_text(body)
    assert [infer_format(tmp_path / n) for n in ("a.txt", "b.jsonl", "c.json")] == [
        "nanochatgpt",
        "openai",
        "sharegpt",
    ]
    other = tmp_path / "other"
    other.mkdir()
    _contrib(other, "d.csv", "x,y\n", {"licence": "MIT", "commercial": True})
    with pytest.raises(
        SourceError,
        match=r"cannot tell its format; if it holds one of .* anything else \(CSV, say\) must be converted",
    ):
        scan_contrib(other)
    # The advice it gives would not work for this file: declared openai, it is refused, not quarantined line by line.
    _contrib(other, "d.csv", "x,y\n", {"licence": "MIT", "commercial": True, "format": "openai"})
    with pytest.raises(
        SourceError, match="`format: openai` does not fit .*d.csv: no line of its start is a JSON record"
    ):
        scan_contrib(other)
    _contrib(other, "d.csv", "x,y\n", {"licence": "MIT", "commercial": True, "format": "csv"})
    with pytest.raises(SourceError, match="format 'csv' is not supported; use one of nanochatgpt"):
        scan_contrib(other)


def test_sources_table_shows_what_the_build_does_with_an_unknown_licence(root: Path) -> None:
    contrib = root / "data" / "contrib"
    _contrib(
        contrib,
        "found.txt",
        "<human> a <endOfText>\n<bot> b <endOfText>\n",
        {
            "licence": "unknown",
            "commercial": True,
            "commercial_reason": "the author said so",
            "description": "x",
        },
    )
    rows = {r["name"]: r for r in source_rows(root)[0]}
    assert rows["contrib/found"]["commercial"] is False
    assert "kept out of the commercial variant" in rows["contrib/found"]["reason"]
    assert "the author said so" in rows["contrib/found"]["reason"]


def test_dropped_contrib_files_become_sources(root: Path) -> None:
    """A file + sidecar in data/contrib/ is a source on the next run, with no code change."""
    contrib = root / "data" / "contrib"
    shutil.copy(REPO / "data" / "contrib" / "nanochatgpt-sample.txt", contrib)
    shutil.copy(REPO / "data" / "contrib" / "nanochatgpt-sample.yaml", contrib)
    _contrib(
        contrib,
        "my-chats.jsonl",
        (FIXTURES / "openai" / "fixture.jsonl").read_bytes(),
        {"licence": "CC-BY-4.0", "commercial": True, "description": "mine"},
    )
    _contrib(
        contrib,
        "shared.json",
        (FIXTURES / "sharegpt" / "fixture.json").read_bytes(),
        {"licence": "unknown", "commercial": False, "description": "found online", "format": "sharegpt"},
    )
    spec = load_registry()["contrib"]
    folder = download(spec)
    names = sorted(f["path"] for f in json.loads((folder / "manifest.json").read_text())["files"])
    assert names == [
        "my-chats.jsonl",
        "my-chats.yaml",
        "nanochatgpt-sample.txt",
        "nanochatgpt-sample.yaml",
        "shared.json",
        "shared.yaml",
    ]
    result = normalize_source(spec, folder, {"max_turn_chars": 16000, "min_turns": 2})
    turns = validate(result.turns)
    per = {
        s: (lic, com) for s, lic, com in turns.select("source", "licence", "commercial").unique().iter_rows()
    }
    assert per == {
        "contrib/nanochatgpt-sample": ("CC0-1.0", True),
        "contrib/my-chats": ("CC-BY-4.0", True),
        "contrib/shared": ("unknown", False),
    }
    assert turns.filter(pl.col("source") == "contrib/my-chats")["conversation_id"][0] == "contrib/my-chats:1"
    by = result.report["by_source"]
    assert by["contrib/nanochatgpt-sample"]["conversations_kept"] == 3
    assert by["contrib/my-chats"]["rows_quarantined"] == 12  # the openai fixture's bad rows
    write_outputs(result, "contrib")
    rows, problems = source_rows()
    table = {r["name"]: r for r in rows}
    assert problems == []
    assert table["contrib/my-chats"]["rows"] == by["contrib/my-chats"]["rows_kept"]
    assert table["contrib/shared"]["licence"] == "unknown" and table["contrib/shared"]["commercial"] is False
    assert table["contrib"]["rows"] == result.report["rows_kept"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"max_turn_chars": 16001},
            r"normalize\.max_turn_chars: expected an integer in \[1, 16001\), got 16001",
        ),
        ({"max_turn_chars": 0}, r"normalize\.max_turn_chars: .* got 0"),
        ({"max_turn_chars": 1.5}, r"normalize\.max_turn_chars: .* got 1\.5"),  # int() would say 1
        ({"max_turn_chars": "lots"}, r"normalize\.max_turn_chars: .* got 'lots'"),
        ({"min_turns": "two"}, r"normalize\.min_turns: expected an integer >= 0, got 'two'"),
        ({"min_turns": -1}, r"normalize\.min_turns: .* got -1"),
        ({"max_turn_char": 100}, r"normalize\.max_turn_char: unknown setting \(known: max_turn_chars, .*\)"),
        (
            {"oasst1_lang": "en"},
            r"normalize\.oasst1_lang: moved to sources\.yaml, as oasst1's `options: \{language: \.\.\.\}`",
        ),
        # a list (or `normalize: [...]`) was a TypeError traceback; `normalize: null` is the defaults
        (["max_turn_chars"], r"normalize: expected a mapping of settings, got \['max_turn_chars'\]"),
    ],
)
def test_bad_normalize_setting_names_key_and_rule(root: Path, params: dict, message: str) -> None:
    spec = load_registry()["contrib"]
    folder = download(spec)
    with pytest.raises(SourceError, match=rf"^params\.yaml {message}$"):
        normalize_source(spec, folder, params)
    spelled = normalize_source(spec, folder, {"max_turn_chars": "16_000", "min_turns": 2.0})
    assert spelled.report == normalize_source(spec, folder, {}).report  # the defaults, spelled out


# ---------------------------------------------------------------------------------------------- downloads


def test_package_download_copies_exact_bytes_without_importing(root: Path) -> None:
    spec = load_registry()["chatterbot"]
    before = set(sys.modules)
    folder = download(spec)
    assert "chatterbot_corpus" not in set(sys.modules) - before
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["source"] == "chatterbot" and manifest["licence"] == "BSD-3-Clause"
    assert manifest["revision"].startswith("chatterbot-corpus==")
    assert len(manifest["files"]) == 22  # 21 data files and the BSD text sources.yaml's `licence_text:` names
    for f in manifest["files"]:
        assert (
            sha256_file(folder / f["path"]) == f["sha256"]
            and (folder / f["path"]).stat().st_size == f["size"]
        )


def test_missing_package_is_one_line(root: Path) -> None:
    spec = parse_entry("demo", entry(location="no_such_package_xyz"))
    with pytest.raises(SourceError) as err:
        download(spec)
    msg = str(err.value)
    assert msg.startswith("demo:") and "no_such_package_xyz" in msg and "local_path" in msg
    assert not raw_dir("demo").exists()


def test_local_path_overrides_any_kind(root: Path) -> None:
    spec = parse_entry(
        "oasst1", _spec_fields("oasst1", local_path=str(FIXTURES / "oasst1"), files=["*.jsonl"])
    )
    assert spec.kind == "hf_dataset"
    folder = download(spec)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["local_path"] == str(FIXTURES / "oasst1")
    assert {f["path"] for f in manifest["files"]} == {p.name for p in (FIXTURES / "oasst1").iterdir()}


def test_an_edited_option_changes_the_raw_folder_and_what_normalize_keeps(root: Path) -> None:
    """normalize's only link to sources.yaml is data/raw/<name>: the manifest holds the options, so
    `dvc repro` re-runs normalize when one changes (it kept the old table: the bytes were the same)."""
    fields = _spec_fields("oasst1", local_path=str(FIXTURES / "oasst1"), files=["*.jsonl"])
    kept = {}
    for lang in ("en", None):
        spec = parse_entry("oasst1", {**fields, "options": {"language": lang}})
        folder = download(spec)
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["options"] == {"language": lang}
        kept[lang] = normalize_source(spec, folder, {}).report["rows_filtered"].get("oasst_lang", 0)
    assert kept["en"] > 0 and kept[None] == 0


def test_a_killed_runs_leftovers_go_at_the_next_run(root: Path) -> None:
    """What a killed download or normalize left beside its output (the temporary copy) is removed
    when the stage runs again, not left in a folder a later stage depends on."""
    spec = load_registry()["contrib"]
    raw = raw_dir("contrib", root)
    raw.parent.mkdir(parents=True, exist_ok=True)
    partial_copy = raw.parent / ".contrib.k1ll3d_x.tmp"  # mkdtemp's shape: 8 random characters
    partial_copy.mkdir()
    (partial_copy / "half.txt").write_text("half")
    folder = download(spec)
    paths = output_paths("contrib", root)
    paths["turns"].parent.mkdir(parents=True, exist_ok=True)
    partial_table = paths["turns"].with_name(".contrib.parquet.k1ll3d_x.tmp")
    partial_table.write_bytes(b"PAR1")
    write_outputs(normalize_source(spec, folder, {}), "contrib", root)
    assert not partial_copy.exists() and not partial_table.exists()


def _spec_fields(name: str, **changes: object) -> dict:
    spec = load_registry()[name]
    fields = {k: v for k, v in spec.__dict__.items() if k != "name"}
    fields["files"] = list(fields["files"])
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not None}


def test_failed_download_leaves_the_previous_folder(root: Path) -> None:
    good = parse_entry("demo", _spec_fields("oasst1", local_path=str(FIXTURES / "oasst1"), files=["*.jsonl"]))
    folder = download(good)
    before = sorted(p.name for p in folder.iterdir())
    bad = parse_entry("demo", _spec_fields("oasst1", local_path=str(root / "nowhere")))
    with pytest.raises(SourceError, match="local_path"):
        download(bad)
    assert sorted(p.name for p in folder.iterdir()) == before
    assert [p.name for p in folder.parent.iterdir()] == ["demo"]  # no temp folder left behind


def _fake_hub_cache(cache: Path, repo: str, revision: str, files: dict[str, bytes]) -> None:
    """The huggingface_hub cache layout: blobs/<sha256>, snapshots/<rev>/<path> -> blob links, refs/main."""
    base = cache / f"datasets--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(revision)
    for rel, data in files.items():
        blob = base / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = base / "snapshots" / revision / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


def test_hub_download_resolves_an_offline_cache(root: Path, tmp_path: Path) -> None:
    """The real hub path (huggingface_hub.snapshot_download) against a pre-populated cache."""
    records = [
        json.loads(line)
        for line in (FIXTURES / "oasst1" / "2023-04-12_oasst_all.messages.jsonl")
        .read_bytes()
        .splitlines()[:15]
    ]
    parquet = tmp_path / "train.parquet"
    pl.DataFrame(records).write_parquet(parquet)
    data = parquet.read_bytes()
    _fake_hub_cache(
        root / "hf-cache",
        "OpenAssistant/oasst1",
        OASST_REV,
        {"data/train-00000-of-00001.parquet": data, "README.md": b"# card\n"},
    )
    spec = load_registry()["oasst1"]
    folder = download(spec)
    assert (folder / "data" / "train-00000-of-00001.parquet").read_bytes() == data
    # only the registry's `files:` are data; the card is recorded apart, for NOTICE.md
    assert not (folder / "README.md").exists()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["revision"] == OASST_REV and manifest["location"] == "OpenAssistant/oasst1"
    assert manifest["card"] == ".licence/README.md" and manifest["licence_files"] == []
    assert manifest["files"] == [
        {"path": ".licence/README.md", "sha256": hashlib.sha256(b"# card\n").hexdigest(), "size": 7},
        {
            "path": "data/train-00000-of-00001.parquet",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        },
    ]
    result = normalize_source(spec, folder, {"max_turn_chars": 16000})
    assert result.turns.filter(pl.col("conversation_id") == "oasst1:p1")["text"].to_list() == [
        "Can you explain tides?",
        "Best answer: the moon's gravity.",
        "And the sun?",
        "The sun matters too, less so.",
    ]


def test_hub_miss_and_gated_without_token_are_one_line(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = load_registry()
    with pytest.raises(SourceError) as err:
        download(reg["babylm"])
    msg = str(err.value)
    assert msg.startswith("babylm:") and "local_path" in msg and "\n" not in msg
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(SourceError) as err:  # refused before any network call
        download(reg["chatbot_arena"])
    assert "HF_TOKEN" in str(err.value) and "local_path" in str(err.value)
    assert not (root / "data" / "raw" / "chatbot_arena").exists()


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    ranges: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        start = int(re.match(r"bytes=(\d+)-", rng).group(1)) if rng else 0
        body = self.payload[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_RangeHandler]]]:
    handler = type("Handler", (_RangeHandler,), {"payload": os.urandom(300_000), "ranges": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/corpus.txt", handler
    httpd.shutdown()
    httpd.server_close()


def test_url_download_is_pinned_and_resumes(root: Path, server: tuple[str, type[_RangeHandler]]) -> None:
    url, handler = server
    sha = hashlib.sha256(handler.payload).hexdigest()
    spec = parse_entry(
        "tweets",
        {
            "kind": "url",
            "location": url,
            "sha256": sha,
            "adapter": "twitter",
            "licence": "unknown",
            "commercial": False,
        },
    )
    part = root / "dl-cache" / f"{sha}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(handler.payload[:100_000])  # an interrupted earlier run
    folder = download(spec)
    assert handler.ranges == ["bytes=100000-"]
    assert (folder / "corpus.txt").read_bytes() == handler.payload and not part.exists()
    assert json.loads((folder / "manifest.json").read_text())["revision"] == sha

    wrong = parse_entry(
        "tweets2",
        {
            "kind": "url",
            "location": url,
            "sha256": "0" * 64,
            "adapter": "twitter",
            "licence": "unknown",
            "commercial": False,
        },
    )
    with pytest.raises(SourceError, match="expected the pinned"):
        download(wrong)
    assert not raw_dir("tweets2").exists() and not (root / "dl-cache" / f"{'0' * 64}.part").exists()


def test_url_without_network_is_one_line(root: Path) -> None:
    spec = parse_entry(
        "tweets",
        {
            "kind": "url",
            "location": "http://127.0.0.1:9/x.txt",
            "sha256": "1" * 64,
            "adapter": "twitter",
            "licence": "unknown",
            "commercial": False,
        },
    )
    with pytest.raises(SourceError) as err:
        download(spec)
    assert err.value.args[0].startswith("tweets: cannot download") and "local_path" in str(err.value)


class _CutHandler(http.server.BaseHTTPRequestHandler):
    """Declares the whole payload (or, asked for a Range, the rest of it with Content-Range's total)
    but sends `send` bytes of the body and closes the connection cleanly; `mode` "chunked" cuts a
    chunked reply inside its chunk, and "whole" serves the Range honestly."""

    protocol_version = "HTTP/1.1"
    payload = b""
    send = 0
    mode = "length"

    def do_GET(self) -> None:  # noqa: N802
        rng = self.headers.get("Range")
        start = int(re.match(r"bytes=(\d+)-", rng).group(1)) if rng else 0
        body = self.payload[start:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        if self.mode == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n" % len(body) + body[: self.send])
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body if self.mode == "whole" else body[: self.send])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def cut_server() -> Iterator[tuple[str, type[_CutHandler]]]:
    handler = type("Handler", (_CutHandler,), {"payload": os.urandom(200_000)})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/f.bin", handler
    httpd.shutdown()
    httpd.server_close()


def test_a_download_cut_short_keeps_its_part_and_resumes(
    root: Path, cut_server: tuple[str, type[_CutHandler]]
) -> None:
    """A connection that closes cleanly part-way reads like the end of the file: the bytes are
    counted against the declared size, the partial file is kept for the resume and the message says
    so (it was deleted as a wrong pin before)."""
    from pipeline.sources.http import fetch_url

    url, handler = cut_server
    sha = hashlib.sha256(handler.payload).hexdigest()
    part = root / "dl-cache" / f"{sha}.part"
    dest = root / "out" / "f.bin"
    handler.send = 100_000
    with pytest.raises(SourceError) as err:
        fetch_url(url, sha, dest, name="demo")
    msg = str(err.value)
    assert msg.startswith(f"demo: download of {url} interrupted at 100,000 of 200,000 bytes")
    assert "rerun to resume" in msg and "check the pin" not in msg and "\n" not in msg
    assert part.read_bytes() == handler.payload[:100_000] and not dest.exists()
    # a resumed reply cut short too: its size is Content-Range's total, not this reply's length
    handler.send = 50_000
    with pytest.raises(SourceError, match=r"interrupted at 150,000 of 200,000 bytes"):
        fetch_url(url, sha, dest, name="demo")
    assert part.read_bytes() == handler.payload[:150_000]
    handler.mode = "whole"
    fetch_url(url, sha, dest, name="demo")
    assert dest.read_bytes() == handler.payload and not part.exists()


class _OtherPartHandler(http.server.BaseHTTPRequestHandler):
    """Answers a Range request with a 206 whose Content-Range starts at `start`, not where asked."""

    payload = b""
    start = 0

    def do_GET(self) -> None:  # noqa: N802
        ranged = self.headers.get("Range") is not None
        body = self.payload[self.start :] if ranged else self.payload
        self.send_response(206 if ranged else 200)
        if ranged:
            self.send_header(
                "Content-Range", f"bytes {self.start}-{len(self.payload) - 1}/{len(self.payload)}"
            )
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_range_answered_with_another_part_is_not_appended(root: Path) -> None:
    """A server answering `Range: bytes=50000-` with the whole file as a 206 (Content-Range 0-...):
    appended to the kept 50,000 bytes, that made a wrong file refused as "check the pin" though pin
    and server were right. Now a reply from byte 0 starts the file over, and one from elsewhere
    drops the partial file with a message saying so (the rerun fetches it whole)."""
    from pipeline.sources.http import fetch_url

    handler = type("Handler", (_OtherPartHandler,), {"payload": os.urandom(200_000)})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/f.bin"
        sha = hashlib.sha256(handler.payload).hexdigest()
        part = root / "dl-cache" / f"{sha}.part"
        part.parent.mkdir(parents=True)
        part.write_bytes(handler.payload[:50_000])
        fetch_url(url, sha, root / "out" / "f.bin", name="demo")
        assert (root / "out" / "f.bin").read_bytes() == handler.payload and not part.exists()
        part.write_bytes(handler.payload[:50_000])
        handler.start = 10_000
        with pytest.raises(SourceError) as err:
            fetch_url(url, sha, root / "out2" / "f.bin", name="demo")
        msg = str(err.value)
        assert msg.startswith(
            f"demo: {url} answered a request for its bytes from 50,000 on with bytes from 10,000"
        )
        assert "check the pin" not in msg and not part.exists() and not (root / "out2").exists()
        fetch_url(url, sha, root / "out2" / "f.bin", name="demo")  # no Range asked: the whole file
        assert (root / "out2" / "f.bin").read_bytes() == handler.payload
    finally:
        httpd.shutdown()
        httpd.server_close()


class _UnsizedHandler(http.server.BaseHTTPRequestHandler):
    """A chunked reply (no size declared) of `payload`, 1 MiB a chunk."""

    protocol_version = "HTTP/1.1"
    payload = b""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for i in range(0, len(self.payload), 1 << 20):
                chunk = self.payload[i : i + (1 << 20)]
                self.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client stopped reading
            pass
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


def test_a_download_of_undeclared_size_stops_before_the_disk_is_full(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunked reply declares no size, so the check against the free space before the first byte
    cannot be made: a server streaming without end filled the disk, and the kept .part refilled it
    on each resume. The download stops before it leaves less than RESERVE free, the part kept."""
    from types import SimpleNamespace

    from pipeline.sources import http as web

    handler = type("Handler", (_UnsizedHandler,), {"payload": os.urandom(12 << 20)})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    sha = hashlib.sha256(handler.payload).hexdigest()
    part = root / "dl-cache" / f"{sha}.part"

    def disk_usage(path: Path) -> SimpleNamespace:  # 5 MiB above the reserve, less what is written
        return SimpleNamespace(free=web.RESERVE + (5 << 20) - (part.stat().st_size if part.exists() else 0))

    monkeypatch.setattr(web.shutil, "disk_usage", disk_usage)
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/f.bin"
        with pytest.raises(SourceError) as err:
            web.fetch_url(url, sha, root / "out" / "f.bin", name="demo")
        msg = str(err.value)
        assert re.match(
            rf"^demo: download of {re.escape(url)} stopped at [\d,]+ bytes: the server declares no size", msg
        )
        assert "rerun to resume" in msg and "\n" not in msg
        assert 4 << 20 <= part.stat().st_size <= 5 << 20 and not (root / "out").exists()
        assert handler.payload.startswith(part.read_bytes())
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_chunked_download_cut_short_is_one_line(
    root: Path, cut_server: tuple[str, type[_CutHandler]]
) -> None:
    """http.client raises IncompleteRead (an HTTPException, not an OSError) for a chunked reply cut
    inside a chunk: a one-line SourceError, the partial file kept."""
    from pipeline.sources.http import fetch_url

    url, handler = cut_server
    handler.mode, handler.send = "chunked", 100_000
    sha = hashlib.sha256(handler.payload).hexdigest()
    with pytest.raises(SourceError) as err:
        fetch_url(url, sha, root / "out" / "f.bin", name="demo")
    assert re.match(
        rf"^demo: download of {re.escape(url)} interrupted at [\d,]+ bytes \(IncompleteRead\); rerun to resume",
        str(err.value),
    )
    assert (root / "dl-cache" / f"{sha}.part").exists()


def test_a_gated_repo_not_marked_gated_without_a_token_says_what_to_do(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No token was sent, so "the token has no access" would be wrong: the entry needs `gated: true`
    and a token."""
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    from pipeline.sources.hub import fetch_snapshot

    def gated(*args: object, **kwargs: object) -> str:
        err = GatedRepoError.__new__(GatedRepoError)  # its __init__ wants an HTTP response
        err.args = ("401 gated",)
        raise err

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    spec = replace(load_registry()["oasst1"], gated=False)
    with pytest.raises(SourceError) as err:
        fetch_snapshot(spec)
    msg = str(err.value)
    assert "has no access" not in msg and "\n" not in msg
    assert "HF_TOKEN is not set; set `gated: true` for oasst1 in sources.yaml" in msg
    assert "export HF_TOKEN=<your token>" in msg
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    with pytest.raises(SourceError, match="the token in HF_TOKEN has no access"):
        fetch_snapshot(spec)


def test_stage_failure_is_one_line_and_writes_nothing(root: Path) -> None:
    """`python -m stages.download oasst1` offline, nothing cached: exit 1, one line, no traceback."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "stages.download", "oasst1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "oasst1" in lines[0] and "local_path" in lines[0], proc.stderr
    assert not (root / "data" / "raw").exists() or not any((root / "data" / "raw").iterdir())


def test_empty_contrib_file_is_refused_in_one_line(tmp_path: Path) -> None:
    _contrib(tmp_path, "empty.txt", "\n  \n", {"licence": "CC0-1.0", "commercial": True, "description": "x"})
    with pytest.raises(SourceError) as err:
        scan_contrib(tmp_path)
    msg = str(err.value)
    assert "empty.txt" in msg and "empty" in msg and "\n" not in msg


def test_contrib_documentation_and_hidden_files_are_not_corpus_files(tmp_path: Path) -> None:
    _contrib(
        tmp_path,
        "chats.txt",
        "<human> a <endOfText>\n<bot> b <endOfText>\n",
        {"licence": "MIT", "commercial": True},
    )
    for name in ("readme.md", "NOTES.md", "guide.rst", ".chats.txt.swp", "README", "LICENSE"):
        (tmp_path / name).write_text("not a corpus\n")
    (tmp_path / "drafts").mkdir()
    (tmp_path / "drafts" / "todo.txt").write_text("later\n")
    assert [cf.source for cf in scan_contrib(tmp_path)] == ["contrib/chats"]


# ------------------------------------------------------------------------------------ paths and values


@pytest.mark.parametrize("kind", ["package", "url", "hf_dataset"])
@pytest.mark.parametrize("bad", ["../../escaped.txt", "/etc/passwd", "data/../../x.parquet", "a/.."])
def test_files_entries_may_not_leave_the_source(kind: str, bad: str) -> None:
    """A url source's `files:` names the file it writes into data/raw/<name>/, and a folder source's
    globs are matched under its folder: an absolute path or a '..' part would reach outside it."""
    fields = entry(kind=kind, files=["ok.txt", bad], sha256="0" * 64, revision="main")
    with pytest.raises(SourceError) as err:
        parse_entry("demo", fields)
    assert str(err.value) == (
        f"sources.yaml: demo: `files:` entry {bad!r} must be a path inside the source "
        "(no leading '/', no '..' parts)"
    )
    assert parse_entry("demo", entry(kind=kind, files=["data/*.parquet", "./a..b.txt"], revision="r"))


def test_url_download_never_writes_outside_its_folder(root: Path, tmp_path: Path) -> None:
    """Even a spec built around parse_entry's check cannot make the download write outside data/raw."""
    from pipeline.sources.registry import SourceSpec

    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"payload\n")
    spec = SourceSpec(
        name="evil",
        kind="url",
        location=payload.as_uri(),
        adapter="twitter",
        licence="MIT",
        commercial=False,
        sha256=sha256_file(payload),
        files=("../../../escaped.txt",),
    )
    with pytest.raises(
        SourceError, match=r"^evil: file name '\.\./\.\./\.\./escaped\.txt' would be written outside"
    ):
        download(spec)
    assert sorted(p.name for p in root.rglob("escaped.txt")) == []
    assert not raw_dir("evil").exists()


def test_registry_values_in_messages_are_cut(tmp_path: Path) -> None:
    """YAML aliases in sources.yaml expand a few hundred bytes into millions of values: a message
    shows a cut repr of them, and a free-text field must be text, not a list."""
    levels = ['&a ["x","x","x","x","x","x","x","x","x","x"]']
    levels += [f"&{c} [{','.join(['*' + p] * 10)}]" for p, c in zip("abcdef", "bcdefg", strict=True)]
    bomb = f"[{', '.join(levels)}]"
    head = "demo:\n  kind: package\n  location: x\n  files: [a]\n  adapter: chitchat\n  commercial: true\n"
    path = tmp_path / "sources.yaml"
    for fields, rule in (
        (
            f"  licence: {bomb}\n",
            "`licence:` must be text such as CC-BY-4.0 (quote it), not [['x', 'x', 'x', 'x', ...], ",
        ),
        (
            f"  licence: MIT\n  description: {bomb}\n",
            "`description:` must be text, not [['x', 'x', 'x', 'x', ...], ",
        ),
    ):
        path.write_text(head + fields)
        with pytest.raises(SourceError) as err:
            load_registry(path)
        assert rule in str(err.value) and len(str(err.value)) < 400, str(err.value)[:500]


# ------------------------------------------------------------------------- upstream layouts and globs

# File lists as the Hub's tree pages show them (sources.yaml comments cite them), with the copies a
# `files:` glob must leave out; what each source's download must copy.
HUB_TREES = {
    "ubuntu": (
        [".gitattributes", "README.md", "train.csv", "validation.csv", "test.csv"],
        ["test.csv", "train.csv", "validation.csv"],
    ),
    "babylm": (
        [
            "BabyLM.py",
            "README.md",
            "clean/10M/switchboard.txt",
            "clean/100M/switchboard.txt",
            "original/10M/switchboard.txt",
            "original/100M/bnc_spoken.txt",
            "original/100M/switchboard.txt",
            "original/test/bnc_spoken.txt",
            "original_tagged/100M/switchboard.txt",
        ],
        ["original/100M/bnc_spoken.txt", "original/100M/switchboard.txt"],
    ),
    "arithmetic": (
        [
            "README.md",
            "arithmetic_1dc/validation-00000-of-00001.parquet",
            "arithmetic_2da/validation-00000-of-00001.parquet",
        ],
        [
            "arithmetic_1dc/validation-00000-of-00001.parquet",
            "arithmetic_2da/validation-00000-of-00001.parquet",
        ],
    ),
    "hackernews": (
        [
            "README.md",
            "data/train-00000-of-00001-8f0f31fedff49db2.parquet",
            "data/train-00000-of-00034-abcbcf9672457085.parquet",
            "data/train-00001-of-00034-84b7d3d9305b2eac.parquet",
            "data/train-00033-of-00034-0b256612d90a56f0.parquet",
        ],
        ["data/train-00000-of-00034-abcbcf9672457085.parquet"],
    ),
    "oasst1": (
        [
            "2023-04-12_oasst_ready.trees.jsonl.gz",
            "README.md",
            "data/train-00000-of-00001-b42a775f407cee45.parquet",
            "data/validation-00000-of-00001-134b8fd0c89408b6.parquet",
        ],
        [
            "data/train-00000-of-00001-b42a775f407cee45.parquet",
            "data/validation-00000-of-00001-134b8fd0c89408b6.parquet",
        ],
    ),
}


def _fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tree: dict[str, bytes]) -> list[dict]:
    """huggingface_hub.snapshot_download as the Hub answers it: only the repo files its own matcher
    (utils.filter_repo_objects, fnmatch) takes from `allow_patterns` arrive in the snapshot, and the
    repo's listing at that commit is cached (get_cached_repo_tree finds it), as after any call that
    reached the Hub. Returns the calls made (each one's keyword arguments and repo_id), filled as
    they come."""
    from huggingface_hub import RepoFile
    from huggingface_hub.utils import filter_repo_objects

    calls: list[dict] = []

    def get_cached_repo_tree(repo_id: str, **kwargs: object) -> list:
        return [RepoFile(path=rel, size=len(data), oid="0" * 40) for rel, data in tree.items()]

    def snapshot_download(repo_id: str, **kwargs: object) -> str:
        calls.append(dict(kwargs, repo_id=repo_id))
        folder = tmp_path / "snapshot" / ("c" * 40)
        for rel in filter_repo_objects(list(tree), allow_patterns=kwargs["allow_patterns"]):
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(tree[rel])
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)

    monkeypatch.setattr("huggingface_hub.snapshot_download", snapshot_download)
    monkeypatch.setattr("huggingface_hub.get_cached_repo_tree", get_cached_repo_tree)
    return calls


def _copied(folder: Path) -> list[str]:
    """The data files a download copied (the repo's card and licence files go to .licence/)."""
    listed = json.loads((folder / "manifest.json").read_text())["files"]
    return sorted(f["path"] for f in listed if not f["path"].startswith(".licence/"))


@pytest.mark.parametrize("name", sorted(HUB_TREES))
def test_hub_sends_what_the_registry_selects(
    name: str, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each hub source's `files:` against its real repo layout, through huggingface_hub's own matcher:
    the download holds exactly the intended files (no tagged or duplicate copies, no whole dump)."""
    listing, expected = HUB_TREES[name]
    calls = _fake_hub(monkeypatch, tmp_path, {rel: rel.encode() for rel in listing})
    folder = download(load_registry()[name])
    assert calls[-1]["repo_id"] == load_registry()[name].location
    assert _copied(folder) == expected


def test_arithmetic_parquet_from_the_hub_normalizes(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rel = "arithmetic_2da/validation-00000-of-00001.parquet"
    _fake_hub(
        monkeypatch, tmp_path, {rel: (FIXTURES / "arithmetic_parquet" / rel).read_bytes(), "README.md": b"#"}
    )
    spec = load_registry()["arithmetic"]
    turns = normalize_source(spec, download(spec), {"max_turn_chars": 16000}).turns
    assert turns["text"].to_list() == ["What is 98 plus 45?", "143"]


def test_hub_sends_top_level_files_for_recursive_globs(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`**/*.csv` takes a top-level train.csv on disk (pathlib); huggingface_hub's fnmatch needs a '/'
    for it, so the registry's globs are rewritten for the Hub, or the file never arrives."""
    tree = {"train.csv": b"a\n", "valid/valid.csv": b"b\n", "deep/er/test.csv": b"c\n", "README.md": b"#\n"}
    calls = _fake_hub(monkeypatch, tmp_path, tree)
    spec = parse_entry("demo", _spec_fields("ubuntu", files=["**/*.csv"]))
    folder = download(spec)
    assert _copied(folder) == ["deep/er/test.csv", "train.csv", "valid/valid.csv"]
    assert "*.csv" in calls[-1]["allow_patterns"]


GLOB_TREE = [
    "train.csv",
    "README.md",
    ".hidden.csv",
    "a/valid.csv",
    "a/b/test.csv",
    "a/.git/x.csv",
    "data/train-00000-of-00034-x.parquet",
    "data/sub/train-00001.parquet",
    "original/100M/switchboard.txt",
    "original_tagged/100M/switchboard.txt",
    "weird[1].txt",
]
GLOB_PATTERNS = [
    "**/*.csv",
    "*.csv",
    "a/**/*.csv",
    "a/**",
    "**",
    "a/",
    "**/*",
    "data/*.parquet",
    "data/**/*.parquet",
    "data/train-0000[0-9]-of-*.parquet",
    "original*/**/switchboard.txt",
    "./README.md",
    "weird[[]1].txt",
    "?rain.csv",
    "**/b/**/*.csv",
]


@pytest.mark.parametrize("pattern", GLOB_PATTERNS)
def test_name_globs_match_like_files_on_disk(pattern: str, tmp_path: Path) -> None:
    """globs.select (names: an archive's members, a repo listing) picks exactly what download._select
    (pathlib on a folder) picks; globs.hub_patterns never gives huggingface_hub fewer files."""
    from huggingface_hub.utils import filter_repo_objects

    from pipeline.sources.download import _select
    from pipeline.sources.globs import hub_patterns, select

    for rel in GLOB_TREE:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    on_disk = [p.relative_to(tmp_path).as_posix() for p in _select(tmp_path, (pattern,))]
    assert select(GLOB_TREE, [pattern]) == on_disk
    assert set(on_disk) <= set(filter_repo_objects(GLOB_TREE, allow_patterns=hub_patterns([pattern])))


# ---------------------------------------------------------------------------------------------- archives


def _archive(entries: list[tuple[str, str, bytes | str]], fmt: str = "tar.gz") -> bytes:
    """A tar.gz (or zip) of (name, kind, data or link target) entries, names stored as given."""
    import io
    import tarfile
    import zipfile

    buffer = io.BytesIO()
    if fmt == "zip":
        with zipfile.ZipFile(buffer, "w") as zf:
            for name, kind, data in entries:
                info = zipfile.ZipInfo(name)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (0o120777 if kind == "symlink" else 0o100644) << 16
                zf.writestr(info, data)
        return buffer.getvalue()
    types = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "device": tarfile.CHRTYPE,
    }
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.type = types[kind]
            if kind == "file":
                body = data if isinstance(data, bytes) else data.encode()
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
            else:
                info.linkname = data if isinstance(data, str) else ""
                tar.addfile(info)
    return buffer.getvalue()


@pytest.fixture
def serve() -> Iterator:
    """serve(payload, name) -> (url, handler class): payload over HTTP on 127.0.0.1 (Range aware)."""
    servers = []

    def start(payload: bytes, name: str) -> tuple[str, type[_RangeHandler]]:
        handler = type("Handler", (_RangeHandler,), {"payload": payload, "ranges": []})
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/{name}", handler

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


ED = FIXTURES / "empathetic_dialogues" / "empatheticdialogues"


def test_url_archive_extracts_the_selected_members(root: Path, serve) -> None:
    """The real empathetic_dialogues entry against ParlAI's layout: its CSVs are extracted with their
    paths, the archive stays in the download cache, links are skipped and counted, and the valid rows
    (9 fields) normalize."""
    payload = _archive(
        [
            ("empatheticdialogues", "dir", ""),
            ("empatheticdialogues/train.csv", "file", (ED / "train.csv").read_bytes()),
            ("empatheticdialogues/valid.csv", "file", (ED / "valid.csv").read_bytes()),
            ("empatheticdialogues/notes.txt", "file", "not data"),
            ("empatheticdialogues/passwd.csv", "symlink", "/etc/passwd"),
        ]
    )
    url, handler = serve(payload, "empatheticdialogues.tar.gz")
    sha = hashlib.sha256(payload).hexdigest()
    spec = parse_entry("empathetic_dialogues", _spec_fields("empathetic_dialogues", location=url, sha256=sha))
    folder = download(spec)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"] == [
        {"path": f"empatheticdialogues/{n}", "sha256": sha256_file(ED / n), "size": (ED / n).stat().st_size}
        for n in ("train.csv", "valid.csv")
    ]
    assert manifest["archive"] == {"members_extracted": 2, "members_skipped": {"symlink": 1}}
    assert (manifest["location"], manifest["revision"]) == (url, sha)
    assert not any(p.is_symlink() for p in folder.rglob("*"))
    assert (root / "dl-cache" / sha).read_bytes() == payload  # kept for the next extraction
    result = normalize_source(spec, folder, {"max_turn_chars": 16000})
    assert result.turns.filter(pl.col("conversation_id") == "empathetic_dialogues:hit:6_conv:12").height == 3

    # another selection re-extracts from the cache: no request
    fewer = parse_entry(
        "empathetic_dialogues",
        {
            **_spec_fields("empathetic_dialogues", location=url, sha256=sha),
            "files": ["empatheticdialogues/valid.csv"],
        },
    )
    requests = len(handler.ranges)
    assert _copied(download(fewer)) == ["empatheticdialogues/valid.csv"]
    assert len(handler.ranges) == requests


def _served_entry(serve, name: str, payload: bytes, filename: str) -> SourceSpec:
    """sources.yaml's entry `name` with its URL swapped for `payload` served here, pinned to it."""
    url, _ = serve(payload, filename)
    return parse_entry(name, _spec_fields(name, location=url, sha256=hashlib.sha256(payload).hexdigest()))


def test_personachat_archive_takes_self_original_only(root: Path, serve) -> None:
    body = (FIXTURES / "personachat" / "train_self_original.txt").read_bytes()
    payload = _archive(
        [
            ("personachat/train_self_original.txt", "file", body),
            ("personachat/train_self_original_no_cands.txt", "file", body),
            ("personachat/train_both_original.txt", "file", body),
            ("personachat/valid_self_revised.txt", "file", body),
        ]
    )
    spec = _served_entry(serve, "personachat", payload, "personachat.tgz")
    folder = download(spec)
    assert _copied(folder) == ["personachat/train_self_original.txt"]
    turns = normalize_source(spec, folder, {"max_turn_chars": 16000}).turns
    assert "personachat:personachat/train_self_original:1" in set(turns["conversation_id"])


def test_zip_archive_and_a_local_archive_file(root: Path, tmp_path: Path, serve) -> None:
    payload = _archive(
        [("d/a.csv", "file", "x\n"), ("d/b.txt", "file", "y\n"), ("d/link.csv", "symlink", "/etc/passwd")],
        "zip",
    )
    fields = _archive_fields(serve, payload, "data.zip", files=["**/*.csv"])
    folder = download(parse_entry("demo", fields))
    assert _copied(folder) == ["d/a.csv"] and (folder / "d" / "a.csv").read_text() == "x\n"
    assert json.loads((folder / "manifest.json").read_text())["archive"]["members_skipped"] == {"symlink": 1}
    # `local_path:` naming the archive itself extracts it the same way
    local = tmp_path / "mine.zip"
    local.write_bytes(payload)
    folder = download(parse_entry("demo2", {**fields, "local_path": str(local)}))
    assert _copied(folder) == ["d/a.csv"]
    # ... if it is the file the pin names
    local.write_bytes(payload + b"\0")
    with pytest.raises(
        SourceError, match=r"^demo2: local_path .*mine\.zip has sha256 [0-9a-f]{64}, not the pinned"
    ) as refused:
        download(parse_entry("demo2", {**fields, "local_path": str(local)}))
    # the message names the pinned file, and for an archive the unpacked folder that serves as well
    assert "of data.zip; point `local_path:` at data.zip or at the folder it was unpacked in" in str(
        refused.value
    )
    assert "(where **/*.csv match)" in str(refused.value)


@pytest.mark.parametrize(
    ("entries", "fmt"),
    [
        ([("ok/a.csv", "file", "x"), ("../evil.csv", "file", "pwned")], "tar.gz"),
        ([("ok/a.csv", "file", "x"), ("ok/../../evil.csv", "file", "pwned")], "tar.gz"),
        ([("ok/a.csv", "file", "x"), ("/tmp/nanochatgpt-test-evil.csv", "file", "pwned")], "tar.gz"),
        ([("ok/a.csv", "file", "x"), ("..\\evil.csv", "file", "pwned")], "zip"),
        ([("ok/a.csv", "file", "x"), ("../evil.csv", "file", "pwned")], "zip"),
    ],
)
def test_archive_members_outside_the_folder_refuse_it(
    entries: list, fmt: str, root: Path, tmp_path: Path, serve
) -> None:
    spec = _archive_spec(serve, _archive(entries, fmt), f"evil.{fmt}")
    with pytest.raises(
        SourceError,
        match=r"^demo: archive .* (would be written outside data/raw/demo; the archive is refused"
        r"|with '\\' as its folder separator \(a Windows zip\); unpack it .*)$",
    ):
        download(spec)
    assert not raw_dir("demo").exists()
    assert [p for p in tmp_path.parent.rglob("*evil.csv")] == [] and not Path(
        "/tmp/nanochatgpt-test-evil.csv"
    ).exists()


def test_archive_links_and_devices_are_never_created(root: Path, serve) -> None:
    """A link or device member, even named like a selected file, is skipped and counted; with
    nothing else selected the download says so."""
    payload = _archive(
        [
            ("d/train.csv", "symlink", "/etc/passwd"),
            ("d/valid.csv", "hardlink", "/etc/passwd"),
            ("d/tty.csv", "device", ""),
            ("d/test.csv", "file", "ok\n"),
        ]
    )
    fields = _archive_fields(serve, payload, "links.tar.gz", files=["d/*.csv"])
    folder = download(parse_entry("demo", fields))
    assert _copied(folder) == ["d/test.csv"]
    assert json.loads((folder / "manifest.json").read_text())["archive"]["members_skipped"] == {
        "device": 1,
        "hardlink": 1,
        "symlink": 1,
    }
    assert sorted(p.name for p in (folder / "d").iterdir()) == ["test.csv"]
    with pytest.raises(
        SourceError, match=r"^demo2: archive .* has no file matching d/train\.csv; fix `files:`"
    ):
        download(parse_entry("demo2", {**fields, "files": ["d/train.csv"]}))


def _archive_fields(serve, payload: bytes, filename: str, **fields: object) -> dict:
    """A `url` + `archive: true` entry for `payload`, served here and pinned to it."""
    url, _ = serve(payload, filename)
    base = {
        "kind": "url",
        "location": url,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "archive": True,
        "adapter": "ubuntu",
        "licence": "unknown",
        "commercial": False,
    }
    return {**base, **fields}


def _archive_spec(serve, payload: bytes, filename: str, **fields: object) -> SourceSpec:
    return parse_entry("demo", _archive_fields(serve, payload, filename, **fields))


def test_zips_without_a_unix_file_type_are_plain_files(root: Path, serve) -> None:
    """Python's writestr(name, data) stores mode 0o600 with no file-type bits, and DOS/Windows zips
    leave stray high bits: every member of both was skipped as `other`, and the error blamed `files:`."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("d/train.csv", "a,b\n")  # a name, not a ZipInfo: external_attr 0o600 << 16
        dos = zipfile.ZipInfo("d/valid.csv")
        dos.create_system, dos.external_attr = 0, 0o120777 << 16  # DOS: the high bits mean nothing
        zf.writestr(dos, "c,d\n")
    folder = download(_archive_spec(serve, buffer.getvalue(), "py.zip", files=["d/*.csv"]))
    assert _copied(folder) == ["d/train.csv", "d/valid.csv"]


def test_a_selected_tar_hard_link_gets_its_targets_bytes(root: Path, serve) -> None:
    """GNU tar stores a second name of one file as a hard link: that split was silently missing."""
    payload = _archive(
        [("d/test.csv", "file", "same\n"), ("d/valid.csv", "hardlink", "d/test.csv"), ("x.txt", "file", "x")]
    )
    folder = download(_archive_spec(serve, payload, "links.tar.gz", files=["d/*.csv"]))
    assert _copied(folder) == ["d/test.csv", "d/valid.csv"]
    assert (folder / "d/valid.csv").read_text() == "same\n" and not (folder / "d/valid.csv").is_symlink()
    archive = json.loads((folder / "manifest.json").read_text())["archive"]
    assert archive == {"members_extracted": 2, "members_skipped": {}}
    # only the link selected: its target's bytes still come along, under the link's name
    folder = download(_archive_spec(serve, payload, "links.tar.gz", files=["d/valid.csv"]))
    assert _copied(folder) == ["d/valid.csv"]


@pytest.mark.parametrize(
    ("entries", "files", "words"),
    [
        ([("caf\udce9.csv", "file", "x")], ["*.csv"], "that is not UTF-8"),
        ([("a", "file", "x"), ("a/b.csv", "file", "y")], [], "both as a file and as the folder of"),
        ([("manifest.json", "file", "{}"), ("t.csv", "file", "y")], [], "holds a top-level manifest.json"),
    ],
)
def test_archive_selections_that_cannot_be_laid_out_are_one_line(
    entries: list, files: list, words: str, root: Path, serve
) -> None:
    """A latin-1 tar name crashed the manifest with a UnicodeEncodeError traceback; a file and a folder
    of one name failed on a temporary path; an upstream manifest.json was silently replaced."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", encoding="latin-1", errors="surrogateescape") as tar:
        for name, _, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data.encode())
            tar.addfile(info, io.BytesIO(data.encode()))
    with pytest.raises(SourceError, match=words):
        download(_archive_spec(serve, buffer.getvalue(), "odd.tar.gz", files=files))
    assert not raw_dir("demo").exists()


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_archive_larger_than_the_free_disk_is_refused_before_writing(
    fmt: str, root: Path, serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bomb (16 MiB of zeros packs into ~16 KB) with 4 MiB free: refused with its figures from the
    sizes the archive declares, nothing written; the members `files:` leaves out do not count."""
    from types import SimpleNamespace

    from pipeline.sources import archive

    zeros = bytes(16 << 20)
    payload = _archive([("d/big.csv", "file", zeros), ("d/other.bin", "file", zeros + zeros)], fmt)
    assert len(payload) < 200_000
    asked: list[Path] = []

    def disk_usage(path: Path) -> SimpleNamespace:
        asked.append(Path(path))
        return SimpleNamespace(free=4 << 20)

    monkeypatch.setattr(archive.shutil, "disk_usage", disk_usage)
    spec = _archive_spec(serve, payload, f"bomb.{fmt}", files=["d/*.csv"])
    with pytest.raises(
        SourceError,
        match=r"^demo: the members of archive http://\S+ that `files:` selects hold 16\.0 MiB unpacked, but "
        r"data/raw/demo has 4\.0 MiB free; free disk space or narrow `files:` for demo$",
    ):
        download(spec)
    assert not raw_dir("demo").exists()
    assert asked and all(p.is_relative_to(root) for p in asked)
    monkeypatch.setattr(archive.shutil, "disk_usage", lambda path: SimpleNamespace(free=17 << 20))
    assert _copied(download(spec)) == ["d/big.csv"]  # 16 MiB selected, 17 MiB free


def test_url_archive_that_is_not_one_is_one_line(root: Path, serve) -> None:
    spec = _archive_spec(serve, b"just text\n", "notes.tar.gz")
    with pytest.raises(SourceError, match="is not a tar or zip archive; drop `archive: true`"):
        download(spec)


def test_twitter_is_the_gzipped_github_file(root: Path, serve) -> None:
    """The real twitter entry: a url source saved as twitter_en.txt.gz (no sha256 published, so none
    pinned: the download asks for one), read through gzip by the adapter."""
    import gzip

    spec = load_registry()["twitter"]
    assert spec.location == "https://raw.githubusercontent.com/Marsan-Ma/chat_corpus/master/twitter_en.txt.gz"
    with pytest.raises(SourceError, match=r"^twitter: url source has no pinned `sha256:`"):
        download(spec)
    payload = gzip.compress((FIXTURES / "twitter" / "twitter_en.txt").read_bytes())
    pinned = _served_entry(serve, "twitter", payload, "twitter_en.txt.gz")
    folder = download(pinned)
    assert _copied(folder) == ["twitter_en.txt.gz"]
    turns = normalize_source(pinned, folder, {"max_turn_chars": 16000}).turns
    assert turns.filter(pl.col("conversation_id") == "twitter:twitter_en.txt.gz:1")["text"].to_list() == [
        "just had the best coffee of my life",
        "which cafe?",
    ]


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        # a Python repr written as if it were JSON: single quotes
        ("{'messages': [{'role': 'user', 'content': 'hi'}]}\n", r"its first line is not JSON: Expecting"),
        ('{"prompt": "hi", "completion": "hello"}\n', r"its first record's keys: 'prompt', 'completion'"),
        ('["hi", "hello"]\n', r"its first line is a JSON list, not an object"),
        # named in JSON's words, as the quarantine names a record that is no object (readers.json_kind)
        ('"hi"\n', r"its first line is a JSON string, not an object"),
        ("null\n", r"its first line is a JSON null, not an object"),
    ],
)
def test_an_unguessable_jsonl_says_what_its_first_line_holds(tmp_path: Path, body: str, hint: str) -> None:
    """A .jsonl whose every line is broken JSON read only "cannot tell its format": the user looked
    for a missing key, not for the export that broke each line."""
    _contrib(tmp_path, "chats.jsonl", "\n" + body, {"licence": "MIT", "commercial": True})
    with pytest.raises(SourceError, match=r"chats.jsonl: cannot tell its format \(" + hint):
        scan_contrib(tmp_path)


@pytest.mark.parametrize(
    ("flag", "licence", "said"),
    [
        (True, "CC-BY-NC-4.0", "flagged commercial, but the licence CC-BY-NC-4.0 forbids commercial use: "),
        (True, " research use only ", "flagged commercial, but the licence research use only forbids "),
        (True, "unknown", "flagged commercial, but the licence is unknown: "),
        (True, "MIT", ""),
        (False, "CC-BY-NC-4.0", ""),
    ],
)
def test_the_sources_reason_names_what_keeps_a_flagged_source_out(
    flag: bool, licence: str, said: str
) -> None:
    """`nanochatgpt sources --reasons` said "the licence is unknown" for every flagged source the build
    leaves out, also one whose licence forbids commercial use; it says the bar commercial_eligible
    applies (licences.licence_bar), and nothing before the stated reason when the build takes it."""
    from pipeline.sources.licences import commercial_eligible
    from pipeline.sources.table import _reason

    shown = _reason(flag, licence, "stated")
    assert shown.startswith(said) and shown.endswith("stated")
    assert (shown == "stated") == (commercial_eligible(flag, licence) or not flag)


class _SlowHandler(_RangeHandler):
    """Sends its body in small pieces, so that two downloads overlap."""

    def do_GET(self) -> None:  # noqa: N802
        rng = self.headers.get("Range")
        start = int(re.match(r"bytes=(\d+)-", rng).group(1)) if rng else 0
        body = self.payload[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for at in range(0, len(body), 20_000):
            self.wfile.write(body[at : at + 20_000])
            self.wfile.flush()
            time.sleep(0.01)


def test_two_downloads_of_one_pinned_file_at_once_both_get_it_whole(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The download cache (~/.cache, shared by every clone) keeps a partial file under the pin's
    sha256: two clones running `dvc repro` at once wrote into the same `<sha256>.part`, and each got
    "has sha256 ..., expected the pinned ...; check the pin" for a pin that was right (or, had one
    finished first, the other appended to the file it had just checked and moved)."""
    from pipeline.sources.http import fetch_url

    monkeypatch.setenv("NANOCHATGPT_DOWNLOAD_CACHE", str(root / "cache"))
    handler = type("Handler", (_SlowHandler,), {"payload": os.urandom(300_000), "ranges": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/corpus.txt"
    sha = hashlib.sha256(handler.payload).hexdigest()
    errors: list[BaseException] = []

    def fetch(n: int) -> None:
        try:
            fetch_url(url, sha, root / f"out{n}" / "f.bin", name=f"demo{n}")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    try:
        threads = [threading.Thread(target=fetch, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert errors == []
    for n in range(2):
        assert (root / f"out{n}" / "f.bin").read_bytes() == handler.payload
    assert sorted(p.name for p in (root / "cache").iterdir()) == []  # no part, no lock left


def test_normalize_nests_no_window_inside_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """`x.over(conv).cum_sum().over(conv)` took polars 2.1 time quadratic in the conversations (200,000
    two-row conversations: 4 s each in steps 3 and 6 of normalize_rows, 400,000: ~16 s). Checked on
    the expressions, not timed: none given to with_columns holds two windows."""
    from pipeline.sources.normalize import normalize_rows
    from pipeline.sources.rows import RawRows

    rows = RawRows("contrib/x", "MIT", True)
    for i in range(3):
        rows.add(str(i), f"hi {i}", f"x.jsonl:{i}/messages[0]", speaker="A")
        rows.add(str(i), "yo", f"x.jsonl:{i}/messages[1]", speaker="B")
    nested: list[str] = []
    with_columns = pl.DataFrame.with_columns

    def recorded(self: pl.DataFrame, *exprs: object, **named: object) -> pl.DataFrame:
        nested.extend(str(e) for e in (*exprs, *named.values()) if str(e).count(".over(") > 1)
        return with_columns(self, *exprs, **named)

    monkeypatch.setattr(pl.DataFrame, "with_columns", recorded)
    result = normalize_rows(rows.frame())
    assert result.turns.height == 6 and result.turns.get_column("role").to_list() == ["human", "bot"] * 3
    assert nested == []
