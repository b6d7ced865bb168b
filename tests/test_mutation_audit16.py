"""Mutation audit 16: pipeline/sources/hub.py (the survivors audit 13 left), pipeline/sources/contrib.py
and pipeline/notices.py.

Each test names the mutation it kills. The Hub is a local huggingface_hub cache (tests/test_download_gaps.py
builds it, with or without the listing of the commit) read offline, or with the Hub a closed local port.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
from test_contrib_edge import MIT, _put
from test_download_gaps import DATA, REPO_FILES, _cache
from test_download_gaps import no_network as no_network  # a fixture, used by name below

from pipeline.cards import CardSource
from pipeline.notices import SourceNotice, _code, _cut, _front_matter_terms, _terms_sections, source_notice
from pipeline.sources import hub
from pipeline.sources.contrib import scan_contrib
from pipeline.sources.download import download
from pipeline.sources.errors import SourceError
from pipeline.sources.registry import load_registry


def _manifest(raw: Path) -> dict:
    return json.loads((raw / "manifest.json").read_text())


# --- pipeline/sources/hub.py ---------------------------------------------------------------------------


def test_offline_a_complete_listed_cache_is_still_read_offline(root: Path) -> None:
    """Mutation hub.fetch_snapshot: `complete = not offline()` -> `complete = True`.

    The cache holds every file of the repo and its listing of the commit, so nothing fails; but with
    HF_HUB_OFFLINE set the Hub was never asked, and the listing may predate a licence file added since:
    the manifest must still say the licence files were read from the cache only."""
    _cache(root, REPO_FILES, listing=True)
    raw = download(load_registry()["oasst1"], root)
    manifest = _manifest(raw)
    assert manifest["licence_files"] == [".licence/LICENSE", ".licence/NOTICE"]
    assert manifest["read_offline"] is True


def test_offline_a_gated_source_without_a_token_is_read_from_the_cache(root: Path) -> None:
    """Mutation hub.fetch_snapshot: `spec.gated and token is None and not offline()` -> without
    `and not offline()`.

    Offline no token is sent anywhere: a gated repo already in the cache is read like any other, not
    refused for want of a token the Hub would have asked for."""
    spec = dataclasses.replace(load_registry()["oasst1"], gated=True)
    _cache(root, REPO_FILES, listing=False)
    raw = download(spec, root)
    assert (raw / "data/train-00000-of-00001.parquet").read_bytes() == b"parquet bytes"


def test_without_network_the_error_is_the_hubs_first_answer(root: Path, no_network: None) -> None:
    """Mutation hub.fetch_snapshot: `raise missing from None` -> `raise` (the cache-only retry's error).

    The Hub out of reach and the cache lacking the data: the user is told the Hub could not be reached
    (the first call's LocalEntryNotFoundError), not that the cache is incomplete (the retry's
    IncompleteSnapshotError), which reads as a broken cache when the network is the cause."""
    _cache(root, {"LICENSE": REPO_FILES["LICENSE"]}, listing=True)
    with pytest.raises(SourceError) as err:
        download(load_registry()["oasst1"], root)
    msg = str(err.value)
    assert msg.startswith("oasst1: cannot fetch dataset OpenAssistant/oasst1@") and "\n" not in msg
    assert "(LocalEntryNotFoundError: " in msg and "IncompleteSnapshotError" not in msg


def test_without_network_the_data_only_retry_reads_the_cache_alone(
    root: Path, no_network: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation hub.fetch_snapshot: the retry's `local_files_only=True` -> `local_files_only=offline()`.

    The first call already met the Hub out of reach; a retry that tries it again sits through all of
    huggingface_hub's connection retries and their back-off (1+2+4+8+8 s) once more before it reads
    the same cache. The download succeeds either way, so the calls are watched (the real one still
    runs)."""
    calls: list[bool] = []
    real = hub._snapshot

    def watched(spec: object, token: object, patterns: object, local_files_only: bool, workers: int) -> str:
        calls.append(local_files_only)
        return real(spec, token, patterns, local_files_only, workers)  # type: ignore[arg-type]

    monkeypatch.setattr(hub, "_snapshot", watched)
    _cache(root, {**DATA, "README.md": REPO_FILES["README.md"]}, listing=True)
    raw = download(load_registry()["oasst1"], root)
    assert _manifest(raw)["read_offline"] is True and _manifest(raw)["card"] == ".licence/README.md"
    # the first call asks the Hub (again with one worker where its own client race tripped it,
    # hub._shared_client_race); the data-only retry reads the cache alone
    assert calls[0] is False and calls[-1] is True


# --- pipeline/notices.py ---------------------------------------------------------------------------------


def _recorded_source(root: Path, name: str, manifest: dict, files: dict[str, bytes]) -> None:
    """data/raw/<name>/ holding `files` and a manifest listing each with its sha256, as a download
    records them (pipeline/sources/download.py)."""
    raw = root / "data" / "raw" / name
    for rel, data in files.items():
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).write_bytes(data)
    listed = [{"path": rel, "sha256": hashlib.sha256(data).hexdigest()} for rel, data in files.items()]
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "manifest.json").write_text(json.dumps({**manifest, "files": listed}))


def _package_notice(tmp_path: Path, upstream: dict, files: dict[str, bytes] | None = None) -> SourceNotice:
    files = files or {}
    licence_files = [rel for rel in files if rel.startswith(".licence/")]
    _recorded_source(tmp_path, "pkg", {"upstream": upstream, "licence_files": licence_files}, files)
    return source_notice(tmp_path, CardSource("pkg", "MIT", True, "package", "pkg"))


def test_a_code_span_is_fenced_longer_than_any_backtick_run_it_holds(tmp_path: Path) -> None:
    """Mutation notices._code: the fence `run + 1` backticks long -> `run` (at least one).

    A package author `Jane `JJ` Doe` in a one-backtick span ends the span at its first backtick: the
    name shows cut in two, with a stray code span."""
    n = _package_notice(tmp_path, {"distribution": "pkg", "version": "1.0", "author": "Jane `JJ` Doe"})
    assert "author: ``Jane `JJ` Doe``" in n.facts
    assert _code("``") == "``` `` ```"  # a span that starts or ends with a backtick is padded


def test_a_plain_project_url_stays_a_link_and_anything_else_is_a_code_span(tmp_path: Path) -> None:
    """Mutation notices._link: `url if re.fullmatch(...) else _code(url)` -> always `_code(url)`.

    A Markdown viewer links a bare http(s) URL; in a code span it is not a link."""
    urls = ["Homepage, https://example.org/pkg", "Source, javascript:alert(1)"]
    n = _package_notice(tmp_path, {"distribution": "pkg", "version": "1.0", "project_urls": urls})
    assert "homepage: https://example.org/pkg" in n.facts
    assert "source: `javascript:alert(1)`" in n.facts


def test_a_recorded_licence_file_saved_with_a_byte_order_mark_is_reproduced_without_it(
    tmp_path: Path,
) -> None:
    """Mutation notices._recorded: `decode("utf-8-sig")` -> `decode("utf-8")` (the BOM kept as U+FEFF,
    an invisible character before the licence's first word in NOTICE.md)."""
    licence = "MIT License\n\nCopyright (c) 2024 Jane Doe\n"
    files = {".licence/LICENSE": b"\xef\xbb\xbf" + licence.encode()}
    n = _package_notice(tmp_path, {"distribution": "pkg", "version": "1.0"}, files)
    assert [t.body for t in n.texts] == [licence]


def test_a_text_exactly_at_the_limit_is_whole_and_one_over_is_cut() -> None:
    """Mutation notices._cut: `len(body) <= limit` -> `<` (a text of exactly the limit said to be cut,
    "its first 5 of 5 characters")."""
    assert _cut("x" * 5, 5, "r") == ("x" * 5, "")
    body, note = _cut("x" * 6, 5, "r")
    assert body == "x" * 5 and note == " (its first 5 of 6 characters; the rest is in `r`)"


def test_a_cards_front_matter_ends_at_a_yaml_document_end_marker() -> None:
    """Mutation notices._front_matter_terms: the end lines `("---", "...")` -> `("---",)`.

    YAML ends a document at `...` too: the card's text after it is Markdown, and a line of it that
    reads like a key (`license: see below`) is no term of the front matter."""
    card = "---\nlicense: mit\npretty_name: X\n...\n# X\n\nlicense: see below\n---\n"
    assert _front_matter_terms(card) == "license: mit"


def test_a_terms_section_inside_one_already_taken_is_not_repeated() -> None:
    """Mutation notices._terms_sections: `if i < taken or not _TERMS_HEADING...` -> without `i < taken`.

    `### Citation` inside `## Licensing Information` is already reproduced with it: taken again, the
    BibTeX appeared twice in NOTICE.md."""
    card = "# D\n\n## Licensing Information\n\nCC-BY-4.0.\n\n### Citation\n\n@misc{x}\n\n## Contact\n\nme\n"
    assert _terms_sections(card) == ["## Licensing Information\n\nCC-BY-4.0.\n\n### Citation\n\n@misc{x}"]


def test_a_fence_closes_only_on_a_run_as_long_as_its_opening() -> None:
    """Mutation notices._terms_sections: a closing fence's `len(...) >= len(fence)` dropped.

    CommonMark closes a ```` fence only with four or more backticks: the ``` lines inside it are its
    text (a Markdown example in a card), and so is the `## License` between them, no heading."""
    card = "# D\n\n````markdown\n```\n## License\n```\n````\n\n## Contact\n\nme\n"
    assert _terms_sections(card) == []


def test_a_hub_download_that_reached_the_hub_with_a_licence_file_has_no_missing_line(tmp_path: Path) -> None:
    """Mutation notices._hub: `elif not texts:` -> `elif True:`.

    Every hub notice test read an offline cache (`read_offline`, a caveat instead). A download that
    reached the Hub and recorded the repo's LICENSE reproduces it, and must not also say "the repository
    holds no LICENSE, LICENCE, COPYING or NOTICE file at its root"."""
    licence = b"Apache License 2.0\n"
    manifest = {"revision": "c0ffee", "licence_files": [".licence/LICENSE"], "card": None}
    _recorded_source(tmp_path, "oasst1", manifest, {".licence/LICENSE": licence})
    n = source_notice(
        tmp_path, CardSource("oasst1", "Apache-2.0", True, "hf_dataset", "OpenAssistant/oasst1")
    )
    assert [t.body for t in n.texts] == [licence.decode()]
    assert n.missing == "" and n.caveat == ""
    assert n.facts == ["pinned at `c0ffee`"]


def test_a_package_with_an_author_email_only_is_credited_to_the_address(tmp_path: Path) -> None:
    """Mutation notices._package: `f"{author} <{email}>" if author else email` -> always the first.

    With no `Author:` field the credit read ` <jane@example.org>`, an address in angle brackets with
    nobody before it; alone, the address is the author."""
    up = {"distribution": "pkg", "version": "1.0", "author_email": "jane@example.org"}
    assert "author: `jane@example.org`" in _package_notice(tmp_path, up).facts
    up["author"] = "Jane Doe"
    assert "author: `Jane Doe <jane@example.org>`" in _package_notice(tmp_path / "b", up).facts


def test_a_cards_gated_prompt_and_indented_licence_lines_are_terms() -> None:
    """Mutations notices: `_CARD_KEY` without `extra_gated_prompt`, and _front_matter_terms keeping
    only a terms key's unindented lines.

    A gated repo's prompt is the terms a user accepted to download it; a `license_details: |` block
    is the licence's own words: each is reproduced whole, the other keys not."""
    card = (
        "---\nlicense:\n- other\nlicense_details: |\n  Free for research.\n  No redistribution.\n"
        "pretty_name: X\nextra_gated_prompt: You agree to cite us.\ntags:\n- chat\n---\n# X\n"
    )
    assert _front_matter_terms(card) == (
        "license:\n- other\nlicense_details: |\n  Free for research.\n  No redistribution.\n"
        "extra_gated_prompt: You agree to cite us."
    )


# --- pipeline/sources/contrib.py -------------------------------------------------------------------------


def test_declared_nanochatgpt_with_turn_markers_is_taken_though_it_starts_with_a_json_record(
    tmp_path: Path,
) -> None:
    """Mutation contrib.format_clash: `if found and not _MARKER.search(text)` -> `if found`.

    `format:` overrides the guess, so only plain evidence refuses it: a file of `<human>`/`<bot>`
    turns whose first line is a JSON header naming `messages` is nanochatgpt as declared (the header
    line goes to quarantine), not refused as openai."""
    body = '{"messages": 2, "exported": "2026-11-01"}\n\n<human> Hi <endOfText>\n<bot> Hello <endOfText>\n'
    _put(tmp_path, "chats.txt", body, sidecar={**MIT, "format": "nanochatgpt"})
    [cf] = scan_contrib(tmp_path)
    assert cf.format == "nanochatgpt"


def test_an_attribution_holding_a_lone_surrogate_is_refused_naming_it(tmp_path: Path) -> None:
    """Mutation contrib.one_line_text: the refused categories without "Cs" (a lone surrogate).

    YAML's `\\ud800` escape gives a surrogate no UTF-8 text can hold: accepted, it would go on to
    NOTICE.md (written as UTF-8, which cannot encode it), far from the sidecar that holds it."""
    sidecar = 'licence: CC-BY-4.0\ncommercial: true\ndescription: test\nattribution: "Jane \\ud800 Doe"\n'
    _put(tmp_path, "chats.txt", "<human> Hi <endOfText>\n<bot> Hello <endOfText>\n", sidecar=sidecar)
    with pytest.raises(SourceError) as err:
        scan_contrib(tmp_path)
    message = str(err.value)
    assert "`attribution:` must be one line of plain text" in message and "character 6 is U+D800" in message
