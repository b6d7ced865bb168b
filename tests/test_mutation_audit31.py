"""Mutation audit 31: a second pass over the contributor-facing code (pipeline/notices.py,
pipeline/check.py, pipeline/quarantine.py), aimed at what audits 8, 15, 16 and 18 left.

Each test's docstring names the mutation it kills. The notices tests write a download record by hand
(data/raw/<source>/ with its manifest.json and each file's sha256), so no download runs.
"""

from __future__ import annotations

import hashlib
import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from test_quarantine_cli import contrib_project

from pipeline import cli
from pipeline.buildinputs import BuildError
from pipeline.cards import CardSource
from pipeline.notices import SourceNotice, notice, source_notice
from pipeline.quarantine import TEXT_LIMIT, SourceQuarantine, _excerpt, format_source

ROOT = Path(__file__).resolve().parents[1]
FIRST = {"origin": "a.txt:1", "reason": "a reason"}


def _recorded(root: Path, top: str, files: dict[str, str], **fields: object) -> Path:
    """data/raw/<top>/ holding `files` (path -> text), listed with their sha256 in its manifest,
    plus the manifest `fields`."""
    raw = root / "data" / "raw" / top
    listed = []
    for rel, text in files.items():
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).write_text(text, encoding="utf-8")
        listed.append({"path": rel, "sha256": hashlib.sha256(text.encode()).hexdigest()})
    (raw / "manifest.json").write_text(json.dumps({"files": listed, **fields}), encoding="utf-8")
    return raw


# --- pipeline/notices.py ---------------------------------------------------------------------------


def test_the_caveat_on_the_recorded_texts_reaches_notice_md() -> None:
    """Kills notices.notice: `for text in (n.missing, n.caveat)` -> `(n.missing,)`. A hub source read
    from the cache alone keeps its licence texts and a caveat that the cache may lack others; the
    tests read `SourceNotice.caveat` only, so NOTICE.md could drop the warning unseen."""
    source = CardSource("oasst1", "Apache-2.0", True, "hf_dataset", "OpenAssistant/oasst1")
    caveat = "**Perhaps not every licence file:** the cache may lack some."
    text = notice("full", [SourceNotice(source, caveat=caveat)])
    assert f"\n{caveat}\n" in text


def test_a_variant_without_sources_says_no_terms_apply() -> None:
    """Kills notices.notice: the line for a variant with no source dropped (NOTICE.md of an empty
    variant ended after its preamble, and read as one whose sources were left out)."""
    text = notice("commercial", [])
    assert "This variant holds no conversations, so no source's terms apply." in text
    assert "\n## " not in text


def test_a_sidecar_saved_with_an_upper_case_suffix_reaches_notice_md(tmp_path: Path) -> None:
    """Kills notices._Manifest.sidecars: `rel.suffix.lower() in SIDECAR_SUFFIXES` -> `rel.suffix in`.
    contrib accepts `a.YAML` as a.jsonl's sidecar (tests/test_contrib_edge.py); the sidecar is the
    file's only record of its terms, and NOTICE.md lost it for such a file."""
    sidecar = "licence: CC-BY-4.0\ncommercial: true\nattribution: Jane Doe\n"
    _recorded(tmp_path, "contrib", {"a.jsonl": "{}\n", "a.YAML": sidecar})
    n = source_notice(tmp_path, CardSource("contrib/a", "CC-BY-4.0", True, "contrib"))
    assert [t.body for t in n.texts] == [sidecar]
    assert "`a.YAML`" in n.texts[0].caption and "data/raw/contrib/a.YAML" in n.texts[0].caption


def test_every_licence_the_package_metadata_declares_is_given(tmp_path: Path) -> None:
    """Kills notices._package: `*(up.get("license_classifiers") or [])` dropped from `declared`. A
    distribution whose licence is stated by its trove classifier alone (no License field) lost it
    from NOTICE.md, which then gave no licence from the package at all."""
    upstream = {
        "distribution": "tinychat",
        "version": "1.0",
        "license": "BSD",
        "license_classifiers": ["License :: OSI Approved :: BSD License"],
    }
    _recorded(
        tmp_path, "tinychat", {"corpus.yml": "- - hi\n  - hello\n"}, upstream=upstream, licence_files=[]
    )
    n = source_notice(tmp_path, CardSource("tinychat", "BSD-3-Clause", True, "package", "tinychat"))
    assert "licence in the package metadata: `BSD`; `License :: OSI Approved :: BSD License`" in n.facts
    assert "**No licence text:** the tinychat 1.0 distribution shipped no licence file" in n.missing


def test_a_repository_copy_record_without_its_origin_stops_the_build(tmp_path: Path) -> None:
    """Kills notices._repository_copy: the `{path, from}` check cut to `isinstance(entry, dict)`. A
    manifest `licence_text` without `from` (hand-edited, or from an older download) was a KeyError
    traceback, and one with `from: null` captioned the text "this repository's copy ... `None`"."""
    licence = "Copyright (c) 2020 Gunther Cox\n"
    for entry in (
        {"path": ".licence/repository/license.md"},
        {"path": ".licence/repository/license.md", "from": None},
    ):
        files = {"data.yml": "- - hi\n", ".licence/repository/license.md": licence}
        raw = _recorded(tmp_path, "bot", files, revision="abc", licence_text=entry)
        with pytest.raises(BuildError, match=r"`licence_text` must be \{path, from\}") as err:
            source_notice(
                tmp_path, CardSource("bot", "BSD-3-Clause", True, "url", "https://example.org/d.yml")
            )
        assert str(raw / "manifest.json") in str(err.value) and "dvc repro download@bot" in str(err.value)


# --- pipeline/check.py -----------------------------------------------------------------------------

GOOD = "<human> hi there <endOfText>\n<bot> hello! <endOfText>\n\n"


def test_a_refused_file_with_an_upper_case_sidecar_is_named_by_its_data_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Kills check._refused: `p.suffix.lower() not in SIDECAR_SUFFIXES` -> `p.suffix not in`. With a
    sidecar saved as `a.YAML` (which contrib accepts) the refusal was named by the sidecar, which
    sorts first, with the data file as an `also`: the closing line counted two refused files of two
    for one refused data file of two."""
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(ROOT))
    (tmp_path / "a.txt").write_text(GOOD)
    (tmp_path / "a.YAML").write_text("licence: MIT\ncommercial: maybe\n")
    (tmp_path / "b.txt").write_text(GOOD)
    (tmp_path / "b.yaml").write_text("licence: MIT\ncommercial: true\ndescription: test\n")
    assert cli.main(["check", str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"check: {tmp_path / 'a.YAML'}")  # the pipeline's own words, its sidecar
    assert err[-1] == f"check: 1 of 2 files refused: {tmp_path / 'a.txt'}"


def test_the_closing_refused_line_follows_a_file_that_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Kills check.run: `if refused and files > 1` -> `... and not empty`. A folder with a refused
    file and a file that keeps no row: the "no row kept" line must not stand in for the closing
    count of refused files, which names the refused one (the lines above may have scrolled by)."""
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(ROOT))
    (tmp_path / "lonely.txt").write_text(GOOD)
    (tmp_path / "lost.txt").write_text("<bot> a bot turn first <endOfText>\nnot a turn at all\n")
    (tmp_path / "lost.yaml").write_text("licence: MIT\ncommercial: true\ndescription: test\n")
    assert cli.main(["check", str(tmp_path / "lonely.txt"), str(tmp_path / "lost.txt")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert f"check: {tmp_path / 'lost.txt'}: no row kept, so nothing from it reaches the dataset" in err
    assert err[-1] == f"check: 1 of 2 files refused: {tmp_path / 'lonely.txt'}"


def test_a_note_named_beside_a_data_file_is_skipped_as_the_pipeline_skips_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Kills check._check_folder: `if is_contrib_entry(p)` dropped from a stem's scan entries. Named
    with another file (`check notes.md data.txt`), a note went to scan_contrib as a data file and was
    refused ("no sidecar", exit 1), where the pipeline skips it and `check notes.md` alone says so."""
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(ROOT))
    (tmp_path / "a.md").write_text("notes on the data\n")
    (tmp_path / "b.txt").write_text(GOOD)
    (tmp_path / "b.yaml").write_text("licence: MIT\ncommercial: true\ndescription: test\n")
    assert cli.main(["check", str(tmp_path / "a.md"), str(tmp_path / "b.txt")]) == 0
    captured = capsys.readouterr()
    assert "a.md" not in captured.err and "refused" not in captured.err
    assert captured.out.startswith(f"{tmp_path / 'b.txt'} (nanochatgpt, MIT; commercial variant: yes)")


# --- pipeline/quarantine.py ------------------------------------------------------------------------


def test_rows_zero_with_a_rule_lists_no_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills quarantine.run: `args.rows if args.rows is not None else ...` -> `args.rows or ...`.
    `--rows 0` is "none" (--help), also beside `--check`, whose default is 10: it listed 10."""
    contrib_project(tmp_path, monkeypatch)
    args = ["quarantine", "contrib", "--check", "text_present", "--json"]
    with redirect_stdout(io.StringIO()) as out:
        assert cli.main([*args, "--rows", "0"]) == 0
    [account] = json.loads(out.getvalue())
    assert account["by_check"]["text_present"] == 1 and account["rows"] == []
    with redirect_stdout(io.StringIO()) as out:
        assert cli.main(args) == 0  # the default with --check lists the rule's row
    assert [row["check"] for row in json.loads(out.getvalue())[0]["rows"]] == ["text_present"]


def test_a_text_of_exactly_the_limit_is_shown_whole() -> None:
    """Kills quarantine._excerpt: `len(text) > TEXT_LIMIT` -> `>=`. A printable text of exactly
    TEXT_LIMIT characters fits and is shown whole; one more and it is cut."""
    whole = "x" * TEXT_LIMIT
    assert _excerpt(whole) == repr(whole)
    assert _excerpt(whole + "y") != repr(whole + "y") and len(_excerpt(whole + "y")) < TEXT_LIMIT


def test_a_count_of_rows_read_that_is_not_known_is_not_printed_as_none() -> None:
    """Kills quarantine.format_source: `if isinstance(q.rows_read, int) else ""` dropped. A report
    (or a contributed file's `by_source` entry) without `rows_read` printed "of None rows read"."""
    q = SourceQuarantine("contrib/a", "data/quarantine/contrib.parquet", None, 2, {"r": 2}, {"r": FIRST})
    assert (
        format_source(q, None).splitlines()[0] == "contrib/a: 2 quarantined (data/quarantine/contrib.parquet)"
    )
    q.rows_read = 1234
    assert format_source(q, None).splitlines()[0].startswith("contrib/a: 2 of 1,234 rows read quarantined")
