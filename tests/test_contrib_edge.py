"""Contributed files with odd but valid input, and sidecars with odd YAML.

Each case is one a contributor can plausibly produce (an editor's byte-order mark, old Mac line
endings, ids exported as null, a sidecar saved as `.YAML`); each must either read correctly or stop
with one line naming the file and the rule, and every row read must be accounted for per file.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import yaml

from pipeline.sources.adapters import contrib
from pipeline.sources.contrib import scan_contrib
from pipeline.sources.errors import SourceError
from pipeline.sources.normalize import NormalizeResult, normalize_rows, write_outputs
from pipeline.sources.registry import SourceSpec
from pipeline.sources.table import source_rows

SPEC = SourceSpec("contrib", "contrib", "data/contrib", "contrib", "per-file", False)
MIT = {"licence": "MIT", "commercial": True, "description": "test"}


def _put(folder: Path, name: str, body: str | bytes, sidecar: dict | str | None = MIT) -> Path:
    path = folder / name
    path.write_bytes(body.encode() if isinstance(body, str) else body)
    if sidecar is not None:
        text = sidecar if isinstance(sidecar, str) else yaml.safe_dump(sidecar)
        path.with_suffix(".yaml").write_text(text)
    return path


def _normalize(folder: Path) -> NormalizeResult:
    return normalize_rows(contrib.read(folder, SPEC, {}))


def _conversations(result: NormalizeResult) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for cid, text in result.turns.select("conversation_id", "text").iter_rows():
        out.setdefault(cid, []).append(text)
    return out


def _pair(q: str, a: str, **extra: object) -> str:
    messages = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return json.dumps({**extra, "messages": messages}) + "\n"


def _reconciles(report: dict) -> bool:
    return report["rows_read"] == report["rows_kept"] + report["rows_quarantined"] + sum(
        report["rows_filtered"].values()
    )


# ------------------------------------------------------------------------------------------- data files


def test_record_ids_that_are_empty_null_or_repeated_never_merge_conversations(tmp_path: Path) -> None:
    """An `id` is used only when it names one record: "" / null / a repeat fall back to the line."""
    _put(
        tmp_path,
        "a.jsonl",
        _pair("q1", "a1", id="")
        + _pair("q2", "a2", id=None)
        + _pair("q3", "a3", id=None)
        + _pair("q4", "a4", id="dup")
        + _pair("q5", "a5", id="dup")
        + _pair("q6", "a6")
        + _pair("q7", "a7", id=6),
    )
    result = _normalize(tmp_path)
    assert result.quarantine.height == 0, result.quarantine
    assert _conversations(result) == {
        "contrib/a:1": ["q1", "a1"],
        "contrib/a:2": ["q2", "a2"],
        "contrib/a:3": ["q3", "a3"],
        "contrib/a:dup": ["q4", "a4"],
        "contrib/a:dup@5": ["q5", "a5"],
        "contrib/a:6": ["q6", "a6"],
        "contrib/a:6@7": ["q7", "a7"],
    }


def test_sharegpt_repeated_ids_stay_separate(tmp_path: Path) -> None:
    records = [
        {"id": "x", "conversations": [{"from": "human", "value": f"h{i}"}, {"from": "gpt", "value": f"g{i}"}]}
        for i in range(2)
    ]
    _put(tmp_path, "s.json", json.dumps(records))
    assert _conversations(_normalize(tmp_path)) == {
        "contrib/s:x": ["h0", "g0"],
        "contrib/s:x@2": ["h1", "g1"],
    }


def test_record_with_an_empty_message_list_is_quarantined_not_dropped(tmp_path: Path) -> None:
    _put(tmp_path, "a.jsonl", _pair("q", "a") + '{"messages": []}\n')
    result = _normalize(tmp_path)
    q = result.quarantine
    assert q.select("check", "origin").rows() == [("missing_field", "a.jsonl:2")]
    assert "empty" in q["reason"][0]
    assert result.report["rows_read"] == 3 and _reconciles(result.report)


def test_json_list_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    body = json.dumps([{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}])
    _put(tmp_path, "bom.json", b"\xef\xbb\xbf" + body.encode() + b"\r\n")
    result = _normalize(tmp_path)
    assert result.quarantine.height == 0, result.quarantine
    assert _conversations(result) == {"contrib/bom:1": ["hi", "yo"]}


def test_one_bad_byte_quarantines_one_record_in_json_and_upper_case_jsonl(tmp_path: Path) -> None:
    """CONTRIBUTING promises invalid UTF-8 is quarantined record by record. A .json list with one
    Latin-1 byte was one quarantined record for the whole file, and a `.JSONL` name (the format
    guess ignores case, the reader did not) read a JSON-lines file as one JSON document."""
    records = [_pair(f"q{i}", f"a{i}", id=f"c{i}") for i in range(3)]
    bad = records[1].replace("q1", "caf\u00e9").encode().replace("caf\u00e9".encode(), b"caf\xe9")
    jsonl = records[0].encode() + bad + records[2].encode()
    as_list = b"[" + b",".join(line.strip() for line in jsonl.splitlines()) + b"]"
    for name, body in (("upper.JSONL", jsonl), ("list.json", as_list)):
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        _put(folder, name, body)
        result = _normalize(folder)
        stem = name.split(".")[0]
        assert sorted(_conversations(result)) == [f"contrib/{stem}:c0", f"contrib/{stem}:c2"], name
        assert result.quarantine["check"].to_list() == ["utf8"], name
        assert _reconciles(result.report)


@pytest.mark.parametrize(
    ("encoding", "words"),
    [
        ("utf-16", "UTF-16 (it starts with a UTF-16 byte-order mark)"),
        ("utf-16-be", "UTF-16 or UTF-32 (every other byte is a NUL"),
        ("utf-32", "UTF-32 (it starts with a UTF-32 byte-order mark)"),
    ],
)
def test_a_utf16_file_is_refused_as_such(tmp_path: Path, encoding: str, words: str) -> None:
    """Notepad's "Unicode" is UTF-16: read as UTF-8 it gave format errors with wrong line numbers
    (or, for .jsonl, advice to add `format:`), never the one problem it has."""
    _put(tmp_path, "notepad.txt", "<human> hi <endOfText>\n<bot> yo <endOfText>\n".encode(encoding))
    with pytest.raises(SourceError, match=re.escape(f"notepad.txt: the file is {words}")) as err:
        scan_contrib(tmp_path)
    assert "save it as UTF-8" in str(err.value)


def test_files_joined_by_cat_read_past_the_second_byte_order_mark(tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    one = bom + b"<human> hi <endOfText>\r\n<bot> yo <endOfText>\r\n\r\n"
    two = bom + b"<human> next <endOfText>\r\n<bot> fine <endOfText>\r\n"
    _put(tmp_path, "joined.txt", one + two)
    result = _normalize(tmp_path)
    assert result.quarantine.height == 0, result.quarantine
    assert list(_conversations(result).values()) == [["hi", "yo"], ["next", "fine"]]


def test_a_message_without_a_role_keeps_its_text_in_quarantine(tmp_path: Path) -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
        {"content": "an important question, role forgotten"},
    ]
    body = json.dumps({"messages": messages}) + "\n"
    body += json.dumps({"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "x"}]})
    _put(tmp_path, "roles.jsonl", body + "\n")
    q = _normalize(tmp_path).quarantine.filter(pl.col("check") == "missing_field")
    assert q["text"].to_list() == ["an important question, role forgotten", "42"]
    assert q["reason"].to_list()[1] == "`content` must be a string or a list of text parts, not 42"


def test_old_mac_line_endings_keep_conversations_apart(tmp_path: Path) -> None:
    """A file with lone CR line endings: blank lines still end conversations, lines are counted."""
    body = "<human> hi <endOfText>\r<bot> yo <endOfText>\r\r<human> next <endOfText>\r<bot> one <endOfText>\r"
    expected = {"contrib/mac:1": ["hi", "yo"], "contrib/mac:4": ["next", "one"]}
    _put(tmp_path, "mac.txt", body)
    assert _conversations(_normalize(tmp_path)) == expected
    # ... while CR CR LF (a CRLF file converted once more) still ends one line, not two
    _put(tmp_path, "mac.txt", body.replace("\r", "\r\r\n"))
    assert _conversations(_normalize(tmp_path)) == expected


def test_conversations_joined_on_one_line_stay_apart(tmp_path: Path) -> None:
    """A decoded token shard puts rendered conversations on one line, joined by <|endoftext|>.
    They shared the line's id, so normalize merged them (an unanswered human turn even joined the
    next conversation's first one) while every count still reconciled."""
    body = (
        "<|endoftext|><human>Hi A<endOfText><bot>Reply A<endOfText>"
        "<|endoftext|><human>Q1 never answered<endOfText>"
        "<|endoftext|><human>Hi B<endOfText><bot>Reply B<endOfText>\n"
        "<human>next line<endOfText><bot>ok<endOfText>\n"
    )
    _put(tmp_path, "joined.txt", body)
    result = _normalize(tmp_path)
    assert _conversations(result) == {
        "contrib/joined:1": ["Hi A", "Reply A"],
        # (1.2, a human turn alone, has no reply to learn: filtered, counted)
        "contrib/joined:1.3": ["Hi B", "Reply B", "next line", "ok"],  # a line end is no boundary
    }
    assert _reconciles(result.report)


def test_a_system_message_meets_the_text_rules_as_context(tmp_path: Path) -> None:
    """A system message became the context with only NFC/line-end cleaning: NUL and ESC bytes and a
    200,000-character persona reached the turn table (the same bytes in a user turn were
    quarantined), and a persona of zero-width spaces alone was kept as one."""

    def record(system: str, q: str) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": q}]
        return json.dumps({"messages": [*messages, {"role": "assistant", "content": "ok"}]}) + "\n"

    body = (
        record("You are \x00\x1b[31mred\x7f", "control")
        + record("p" * 20_000, "long")
        + record("\u200b\u200b", "invisible")
        + record("You are kind.", "fine")
    )
    _put(tmp_path, "sys.jsonl", body)
    result = _normalize(tmp_path)
    kept = {cid: ctx for cid, ctx in result.turns.select("conversation_id", "context").unique().iter_rows()}
    assert sorted(kept.values(), key=str) == [None, "You are kind."]
    checks = Counter(result.quarantine["check"].to_list())
    assert checks == {"context_no_control_chars": 2, "context_length": 2}  # each conversation's two turns
    reasons = set(result.quarantine["reason"].to_list())
    assert {
        "context holds control characters (the first, U+0000, at character 9)",
        "context longer than 16000 characters",
    } <= reasons
    assert _reconciles(result.report)


def test_a_turn_cut_by_an_unreadable_line_says_so(tmp_path: Path) -> None:
    """Invalid UTF-8 in the middle of a turn was reported as the turn "not closed by <endOfText>"
    and its closing line as "text outside a turn": two wrong reasons beside the real one."""
    body = b"<human> first line\nsecond caf\xe9 line\nthird line <endOfText>\n<bot> ok <endOfText>\n"
    _put(tmp_path, "cut.txt", body)
    q = _normalize(tmp_path).quarantine.sort("origin")
    reasons = dict(zip(q["origin"].to_list(), q["reason"].to_list(), strict=True))
    assert reasons["cut.txt:1"] == "<human> turn cut by line 2, which is unreadable (utf8)"
    assert reasons["cut.txt:2"].startswith("invalid UTF-8")
    assert reasons["cut.txt:3"] == "the rest of the turn of line 1, which an unreadable line cut"
    assert "outside" not in " ".join(reasons.values())


def test_old_mac_line_endings_in_json_lines(tmp_path: Path) -> None:
    """A JSON Lines file with lone CR line endings: one record per line, numbered as lines."""
    _put(tmp_path, "mac.jsonl", (_pair("q1", "a1") + _pair("q2", "a2")).replace("\n", "\r"))
    result = _normalize(tmp_path)
    assert result.quarantine.height == 0, result.quarantine
    assert _conversations(result) == {"contrib/mac:1": ["q1", "a1"], "contrib/mac:2": ["q2", "a2"]}
    # a CR inside an LF file is JSON whitespace, as before
    _put(tmp_path, "mac.jsonl", _pair("q1", "a1").replace(", ", ",\r") + _pair("q2", "a2"))
    assert len(_conversations(_normalize(tmp_path))) == 2


def test_crlf_bom_and_windows_1252_bytes(tmp_path: Path) -> None:
    """CRLF + BOM read as usual; a Windows-1252 line is quarantined by file:line and cuts its conversation."""
    body = (
        b"\xef\xbb\xbf<human> Hi <endOfText>\r\n<bot> Hello <endOfText>\r\n\r\n"
        b"<human> caf\xe9 <endOfText>\r\n<bot> x <endOfText>\r\n"
    )
    _put(tmp_path, "win.txt", body)
    result = _normalize(tmp_path)
    assert _conversations(result) == {"contrib/win:1": ["Hi", "Hello"]}
    q = result.quarantine
    assert q.select("check", "origin").rows() == [("utf8", "win.txt:4"), ("conversation_broken", "win.txt:5")]
    assert _reconciles(result.report)


def test_a_file_of_only_a_byte_order_mark_is_empty(tmp_path: Path) -> None:
    _put(tmp_path, "e.txt", b"\xef\xbb\xbf\r\n\r\n")
    with pytest.raises(SourceError, match=r"e\.txt: the file is empty"):
        scan_contrib(tmp_path)


def test_a_file_with_no_records_stops_in_one_line(tmp_path: Path) -> None:
    _put(tmp_path, "e.json", "[]\n", {**MIT, "format": "sharegpt"})
    with pytest.raises(SourceError) as err:
        contrib.read(tmp_path, SPEC, {})
    assert str(err.value).startswith(f"{SPEC.location}/e.json: no conversation") and "\n" not in str(
        err.value
    )


def test_each_file_reconciles_on_its_own(tmp_path: Path) -> None:
    """by_source counts rows read and filtered per file, so each file's counts add up."""
    _put(tmp_path, "good.jsonl", _pair("q", "a"))
    system_only = json.dumps({"messages": [{"role": "system", "content": "persona only"}]}) + "\n"
    _put(tmp_path, "sys.jsonl", system_only)
    _put(tmp_path, "bad.txt", b"<human> \xe9 <endOfText>\n")
    by = _normalize(tmp_path).report["by_source"]
    assert set(by) == {"contrib/good", "contrib/sys", "contrib/bad"}
    assert by["contrib/sys"]["rows_filtered"] == {"system_message_as_context": 1}
    assert by["contrib/bad"]["rows_quarantined"] == 1 and by["contrib/bad"]["rows_kept"] == 0
    for name, counts in by.items():
        assert _reconciles(counts), name


def test_sources_table_shows_a_file_not_yet_normalized_as_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "sources.yaml").write_text((repo / "sources.yaml").read_text())
    (tmp_path / "params.yaml").write_text((repo / "params.yaml").read_text())
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    folder = tmp_path / "data" / "contrib"
    folder.mkdir(parents=True)
    _put(folder, "old.jsonl", _pair("q", "a"))
    write_outputs(_normalize(folder), "contrib", tmp_path)
    _put(folder, "new.jsonl", _pair("q", "a"))
    rows = {r["name"]: r["rows"] for r in source_rows(tmp_path)[0]}
    assert rows["contrib/old"] == 2
    assert rows["contrib/new"] == "-"


# ------------------------------------------------------------------------------------------- sidecars


def test_licence_and_license_together_are_refused(tmp_path: Path) -> None:
    """Two spellings of one field could disagree (MIT vs CC-BY-NC-4.0): never pick one silently."""
    _put(tmp_path, "a.txt", "<human> a <endOfText>\n", {**MIT, "license": "CC-BY-NC-4.0"})
    with pytest.raises(SourceError, match=r"a\.yaml: .*both `licence:` and `license:`"):
        scan_contrib(tmp_path)


def test_sidecar_suffix_case_is_ignored(tmp_path: Path) -> None:
    _put(tmp_path, "a.txt", "<human> a <endOfText>\n", None)
    (tmp_path / "a.YAML").write_text(yaml.safe_dump(MIT))
    [cf] = scan_contrib(tmp_path)
    assert cf.sidecar.name == "a.YAML" and cf.licence == "MIT"


def test_two_sidecars_for_one_file_are_refused(tmp_path: Path) -> None:
    _put(tmp_path, "a.txt", "<human> a <endOfText>\n")
    (tmp_path / "a.yml").write_text(yaml.safe_dump({"licence": "CC-BY-NC-4.0", "commercial": False}))
    with pytest.raises(SourceError, match=r"a\.txt: two sidecars \(a\.yaml, a\.yml\)"):
        scan_contrib(tmp_path)


def test_sidecar_yaml_error_names_its_line(tmp_path: Path) -> None:
    _put(tmp_path, "a.txt", "<human> a <endOfText>\n", "licence: MIT\ncommercial: true\n\tdescription: x\n")
    with pytest.raises(SourceError, match=r"a\.yaml:3: not valid YAML") as err:
        scan_contrib(tmp_path)
    assert "\n" not in str(err.value)


def test_a_key_given_twice_in_a_sidecar_is_refused_naming_both_lines(tmp_path: Path) -> None:
    """PyYAML keeps the last of two equal keys: a template's `licence: MIT` / `commercial: true`
    left below the real CC-BY-NC-4.0 terms put the file in the commercial variant, unseen."""
    sidecar = "licence: CC-BY-NC-4.0\ncommercial: false\n# template\nlicence: MIT\ncommercial: true\n"
    _put(tmp_path, "a.txt", "<human> a <endOfText>\n", sidecar)
    with pytest.raises(
        SourceError,
        match=r"a\.yaml:4: not valid YAML \(found duplicate key 'licence' "
        r"\(first given on line 1\)\)",
    ):
        scan_contrib(tmp_path)


def test_a_key_given_twice_in_sources_yaml_or_params_yaml_is_refused(tmp_path: Path) -> None:
    from pipeline.params import load_yaml
    from pipeline.sources.registry import load_registry

    entry = (
        "kind: url\nlocation: https://x/y.txt\nadapter: twitter\nlicence: CC-BY-NC-4.0\ncommercial: false\n"
    )
    registry = tmp_path / "sources.yaml"
    registry.write_text("s:\n" + "".join(f"  {line}\n" for line in (entry + "licence: MIT\n").splitlines()))
    with pytest.raises(SourceError, match=r"sources\.yaml:7: not valid YAML \(found duplicate key 'licence'"):
        load_registry(registry)
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  lr: 1\n  lr: 2\n")
    with pytest.raises(ValueError, match=r"params\.yaml:3: not valid YAML \(found duplicate key 'lr'"):
        load_yaml(params)


@pytest.mark.parametrize(
    ("sidecar", "message"),
    [
        ("licence: MIT\n", "`commercial:` is missing"),
        ('licence: MIT\ncommercial: "yes"\n', r"`commercial:` must be true or false, not 'yes'"),
    ],
)
def test_commercial_flag_errors_say_what_was_found(tmp_path: Path, sidecar: str, message: str) -> None:
    _put(tmp_path, "a.txt", "<human> a <endOfText>\n", sidecar)
    with pytest.raises(SourceError, match=message):
        scan_contrib(tmp_path)


def test_licence_text_files_are_notes_not_corpus_files(tmp_path: Path) -> None:
    _put(tmp_path, "a.txt", "<human> a <endOfText>\n<bot> b <endOfText>\n")
    for name in ("LICENSE.txt", "licence.txt", "README.txt"):
        (tmp_path / name).write_text("terms\n")
    assert [cf.source for cf in scan_contrib(tmp_path)] == ["contrib/a"]


def test_odd_file_names_are_sources(tmp_path: Path) -> None:
    _put(tmp_path, "my chats é.jsonl", _pair("q", "a"))
    result = _normalize(tmp_path)
    assert _conversations(result) == {"contrib/my chats é:1": ["q", "a"]}
    assert Counter(result.turns["source"]) == Counter({"contrib/my chats é": 2})
    assert result.turns.schema["source"] == pl.String


# ------------------------------------------------------------------------------- hostile contributions


def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root (real registry and params) with an empty data/contrib/; returns that folder."""
    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "sources.yaml").write_text((repo / "sources.yaml").read_text())
    (tmp_path / "params.yaml").write_text((repo / "params.yaml").read_text())
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "data" / "contrib"
    folder.mkdir(parents=True)
    return folder


@pytest.mark.parametrize("linked", ["chat.txt", "chat.yaml"])
def test_a_symlink_in_contrib_is_refused_by_every_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, linked: str
) -> None:
    """A pull request committing `data/contrib/chat.txt -> /proc/self/environ` must not copy the
    maintainer's environment into data/raw: download, the registry stage's hashes, `check` and
    `sources` all refuse the link, in one line naming it, before reading a byte of its target."""
    from pipeline.check import check_files
    from pipeline.sources.download import download
    from pipeline.sources.fetchspec import fetch_spec
    from pipeline.sources.registry import load_registry

    folder = _project(tmp_path, monkeypatch)
    secret = tmp_path / "environ"
    secret.write_text(
        "<human> HF_TOKEN=hf_FAKE_SECRET <endOfText>\n" if linked == "chat.txt" else yaml.safe_dump(MIT)
    )
    _put(folder, "chat.txt", "<human> hi <endOfText>\n<bot> yo <endOfText>\n")
    (folder / linked).unlink()
    (folder / linked).symlink_to(Path("..", "..", "environ"))  # as git checks such a link out
    (folder / "README.md").symlink_to(secret.resolve())  # a note is never read: a link there is harmless
    spec = load_registry(tmp_path / "sources.yaml")["contrib"]
    message = (
        f"data/contrib/{linked}: a symbolic link (to '../../environ'); commit the file itself, not a link"
    )

    with pytest.raises(SourceError) as err:
        download(spec, tmp_path)
    assert str(err.value) == message
    assert not (tmp_path / "data" / "raw" / "contrib").exists()
    assert fetch_spec(spec, tmp_path)["contents"] == []  # the registry stage hashes nothing of it
    with pytest.raises(SourceError, match=re.escape(message)):
        scan_contrib(folder)
    with pytest.raises(SourceError, match=re.escape(message)):
        check_files([], tmp_path)  # `nanochatgpt check`, all of data/contrib/
    with pytest.raises(SourceError, match=re.escape(message)):
        check_files([folder], tmp_path)
    assert message in source_rows(tmp_path)[1]  # `nanochatgpt sources` lists the problem


def test_sidecar_yaml_aliases_are_refused_in_one_short_line(tmp_path: Path) -> None:
    """A 322-byte "billion laughs" sidecar expands into 10^8 strings: it must not become a 58 MB
    error line (nor a 58 MB description)."""
    levels = ['&a ["x","x","x","x","x","x","x","x","x","x"]']
    levels += [f"&{c} [{','.join(['*' + p] * 10)}]" for p, c in zip("abcdef", "bcdefg", strict=True)]
    _put(tmp_path, "a.txt", "<human> hi <endOfText>\n", f"licence: [{', '.join(levels)}]\ncommercial: true\n")
    with pytest.raises(SourceError) as err:
        scan_contrib(tmp_path)
    assert str(err.value).endswith(
        "a.yaml:1: YAML aliases (*a) are not allowed in a sidecar; write the value out"
    )


@pytest.mark.parametrize(
    ("sidecar", "message"),
    [
        (
            "licence: " + "[" * 50_000 + "]" * 50_000 + "\ncommercial: true\n",
            "a.yaml:1: nested more than 8 levels deep; a sidecar holds plain fields",
        ),
        (
            "licence: MIT\ncommercial: true\ndescription: [" + ", ".join(["long text"] * 10_000) + "]\n",
            "`description:` must be text, not ['long text', 'long text', 'long text', 'long text', ...]",
        ),
        (
            "licence: MIT\ncommercial: true\nformat: [" + ", ".join(["x" * 100] * 1000) + "]\n",
            "format ['xxxxxxx",
        ),
        ("licence: " + "y" * 100_000 + "\ncommercial: true\n", "licence 'yyyyyyyyyyyyyyyyyyyyyyyyy"),
    ],
)
def test_odd_sidecar_values_give_one_short_line(tmp_path: Path, sidecar: str, message: str) -> None:
    _put(tmp_path, "a.txt", "<human> hi <endOfText>\n", sidecar)
    with pytest.raises(SourceError) as err:
        scan_contrib(tmp_path)
    assert message in str(err.value) and len(str(err.value)) < 400 and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("[" * 100_000 + "]" * 100_000, "broken JSON line (nested too deeply)"),
        ('{"messages": [], "id": ' + "7" * 5000 + "}", "broken JSON line (Exceeds the limit (4300 digits)"),
    ],
)
def test_json_that_python_cannot_hold_is_quarantined(tmp_path: Path, bad: str, reason: str) -> None:
    """One line nested 100k deep (json.loads raises RecursionError) or holding a 5000-digit number
    (ValueError) is one quarantined row; the records around it still read, and the counts add up."""
    _put(tmp_path, "a.jsonl", _pair("q1", "a1") + bad + "\n" + _pair("q3", "a3"))
    result = _normalize(tmp_path)
    assert _conversations(result) == {"contrib/a:1": ["q1", "a1"], "contrib/a:3": ["q3", "a3"]}
    [(origin, check, why)] = result.quarantine.select("origin", "check", "reason").rows()
    assert (origin, check) == ("a.jsonl:2", "json_parse") and why.startswith(reason)
    assert _reconciles(result.report) and result.report["rows_read"] == 5


def test_a_deeply_nested_json_list_file_is_one_quarantined_record(tmp_path: Path) -> None:
    _put(tmp_path, "a.json", "[" * 100_000 + "]" * 100_000, {**MIT, "format": "openai"})
    _put(tmp_path, "b.jsonl", _pair("q", "a"))
    result = _normalize(tmp_path)
    assert result.quarantine.select("origin", "check", "reason").rows() == [
        ("a.json:1", "json_parse", "broken JSON (nested too deeply)")
    ]
    assert _conversations(result) == {"contrib/b:1": ["q", "a"]} and _reconciles(result.report)


@pytest.mark.parametrize("name", ["a.jsonl.gz", "a.txt"])
def test_an_over_long_line_is_quarantined_without_being_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A 300 KB .jsonl.gz can hold one 300 MB line: a line over readers.MAX_LINE_BYTES (lowered here)
    is quarantined as `line_length` and counted, and the lines after it still read."""
    from pipeline.sources import readers

    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 4096)
    if name.endswith(".gz"):
        # line 2: one record padded to 100 KB, line 3 blank; the sidecar is a.jsonl.yaml
        body = _pair("q1", "a1") + " " * 100_000 + _pair("q2", "a2") + "\n" + _pair("q3", "a3")
        _put(tmp_path, name, gzip.compress(body.encode()), {**MIT, "format": "openai"})
        kept = {"contrib/a.jsonl:1": ["q1", "a1"], "contrib/a.jsonl:4": ["q3", "a3"]}
        origin = f"{name}:2"
    else:
        body = "<human> q1 <endOfText>\n<bot> a1 <endOfText>\n\n<human> " + "x" * 100_000 + " <endOfText>\n"
        body += "<bot> lost with its question <endOfText>\n\n<human> q3 <endOfText>\n<bot> a3 <endOfText>\n"
        _put(tmp_path, name, body)
        kept = {"contrib/a:1": ["q1", "a1"], "contrib/a:7": ["q3", "a3"]}
        origin = f"{name}:4"
    result = _normalize(tmp_path)
    assert _conversations(result) == kept
    bad = result.quarantine.filter(pl.col("check") == "line_length")
    assert bad.select("origin").to_series().to_list() == [origin]
    assert bad["reason"][0].startswith("line of 10") and "over the limit of 4,096 bytes" in bad["reason"][0]
    assert len(bad["text"][0]) < 300  # a preview, not the line
    assert _reconciles(result.report)


OPENAI_LINE = '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'
SHAREGPT_LINE = '{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}\n'


@pytest.mark.parametrize(
    "name, body, declared, why",
    [
        (
            "chats.txt",
            "<human> Hi <endOfText>\n<bot> Hello <endOfText>\n",
            "openai",
            "holds `<human>`/`<bot>` turns and no JSON records, which is nanochatgpt",
        ),
        ("chats.jsonl", OPENAI_LINE, "nanochatgpt", "it holds JSON records with `messages`, which is openai"),
        (
            "chats.jsonl",
            OPENAI_LINE,
            "sharegpt",
            "first record has `messages` and no `conversations`, which is openai",
        ),
        (
            "chats.json",
            "[\n" + SHAREGPT_LINE.strip() + "\n]\n",
            "openai",
            "`conversations` and no `messages`, which is sharegpt",
        ),
        (
            "chats.jsonl.gz",
            gzip.compress(OPENAI_LINE.encode()),
            "sharegpt",
            "`messages` and no `conversations`, which is openai",
        ),
    ],
)
def test_a_format_the_file_contradicts_is_refused_naming_the_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str | bytes, declared: str, why: str
) -> None:
    """CONTRIBUTING's template carried `format: openai`; copied beside a .txt file, every line went
    to quarantine as broken JSON ("rows read 1" of 20), `check` exited 0 and the file was lost."""
    monkeypatch.chdir(tmp_path)
    _put(tmp_path, name, body, sidecar={**MIT, "format": declared})
    with pytest.raises(SourceError) as err:
        scan_contrib(tmp_path)
    message = str(err.value)
    sidecar = Path(name).with_suffix(".yaml")
    assert message.startswith(f"{sidecar}: `format: {declared}` does not fit chats.") and why in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "name, body, declared",
    [
        ("chats.txt", "\ufeff<human> Hi <endOfText>\n<bot> Hello <endOfText>\n", "nanochatgpt"),
        ("chats.jsonl", "\ufeff" + OPENAI_LINE, "openai"),
        ("chats.jsonl", SHAREGPT_LINE, "sharegpt"),
        ("chats.jsonl", '{"id": 1}\n' + OPENAI_LINE, "openai"),  # the first record has neither key
        ("chats.txt", OPENAI_LINE, "openai"),  # JSON lines under another suffix: the declaration says
        # A review's cases: the declaration overrides a guess, so only plain evidence refuses it.
        ("chats.jsonl", '{"meta": {"conversations": 2}, ' + OPENAI_LINE[1:], "openai"),  # nested key
        ("chats.jsonl", '{"conversations": 1, ' + OPENAI_LINE[1:], "openai"),  # both keys: it reads
        ("chats.jsonl", "# exported 2026-11-01\n" + OPENAI_LINE, "openai"),  # a header line: quarantined
        ("chats.txt", "{intro}\n\n<human> Hi <endOfText>\n<bot> Hello <endOfText>\n", "nanochatgpt"),
        ("chats.txt", "[2026-11-01] <human> Hi <endOfText>\n<bot> Hello <endOfText>\n", "nanochatgpt"),
    ],
)
def test_a_format_that_fits_the_file_is_taken(tmp_path: Path, name: str, body: str, declared: str) -> None:
    _put(tmp_path, name, body, sidecar={**MIT, "format": declared})
    [cf] = scan_contrib(tmp_path)
    assert cf.format == declared


def test_invisible_characters_between_turns_are_no_text_in_a_txt_file(tmp_path: Path) -> None:
    """A zero-width space between two turns, or a line of a word joiner or a Hangul filler alone,
    is no text (pipeline.invisible, as for a turn or the dedup key): the space after `<endOfText>`
    is ignored and the line is a blank line. Found by fuzzing contributed files: each was
    quarantined as `format`, "text outside a <human>/<bot> turn", a text nobody could see, and
    cut its conversation."""
    body = (
        "<human> a <endOfText>\u200b<bot> b <endOfText>\n"
        "\u2060\n"
        "<human> c <endOfText>\n<bot> d <endOfText>\n"
        "\u3164 \u200b\n"
        "<human> e <endOfText>\n<bot> f <endOfText>\n"
    )
    _put(tmp_path, "zw.txt", body)
    result = _normalize(tmp_path)
    assert result.quarantine.height == 0, result.quarantine.select("check", "origin", "reason").rows()
    assert _conversations(result) == {
        "contrib/zw:1": ["a", "b"],
        "contrib/zw:3": ["c", "d"],
        "contrib/zw:6": ["e", "f"],
    }
    # Inside a conversation such a line ends it, as a line of spaces does: two broken halves.
    _put(tmp_path, "zw.txt", "<human> a <endOfText>\n\u200b\n<bot> b <endOfText>\n")
    spaces = tmp_path / "sp"
    spaces.mkdir()
    _put(spaces, "zw.txt", "<human> a <endOfText>\n \n<bot> b <endOfText>\n")
    got, want = _normalize(tmp_path).quarantine, _normalize(spaces).quarantine
    assert got.select("check", "origin", "reason").rows() == want.select("check", "origin", "reason").rows()
    assert set(got["check"]) == {"has_bot_turn", "first_turn_human"}


def test_a_colon_in_a_data_file_name_is_refused(tmp_path: Path) -> None:
    """A conversation id is `contrib/<stem>:<id>`: a.jsonl's record `"id": "b:1"` and line 1 of
    a:b.txt were both `contrib/a:b:1`, one conversation made of two files, and normalize stopped
    on the turn schema's check with a traceback (found by fuzzing contributed files)."""
    _put(tmp_path, "a.jsonl", _pair("q from a", "ans a", id="b:1"))
    _put(tmp_path, "a:b.txt", "<human> q from a:b <endOfText>\n<bot> ans ab <endOfText>\n")
    with pytest.raises(SourceError, match=r"a:b\.txt: a ':' in a data file's name is not allowed") as e:
        _normalize(tmp_path)
    assert "\n" not in str(e.value)


SOURCES_TWO_CONTRIB = """\
contrib:
  kind: contrib
  location: data/contrib
  adapter: contrib
  licence: per-file
  commercial: false
team:
  kind: contrib
  location: data/contrib
  local_path: upstream/team
  adapter: contrib
  licence: per-file
  commercial: false
"""


def test_a_contrib_entry_of_another_name_keeps_its_rows_under_its_own_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second contrib-kind entry (`team`, reading upstream/team/ by `local_path:`) labelled its
    rows `contrib/<stem>`, as data/contrib/'s: the build takes an entry's rows only as
    `<entry>/<file>`, so it quarantined every one of them (source_registered), and an a.txt in both
    folders gave two conversations one id, both quarantined (conversation_id_unique). Found by
    fuzzing contributed files."""
    from pipeline.build import build_variant
    from pipeline.buildinputs import BuildConfig
    from pipeline.sources.download import download, raw_dir
    from pipeline.sources.normalize import normalize_source
    from pipeline.sources.registry import load_registry

    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    (tmp_path / "sources.yaml").write_text(SOURCES_TWO_CONTRIB)
    for folder, word in (("data/contrib", "one"), ("upstream/team", "two")):
        (tmp_path / folder).mkdir(parents=True)
        _put(tmp_path / folder, "a.txt", f"<human> q {word} <endOfText>\n<bot> a {word} <endOfText>\n")
    registry = load_registry(tmp_path / "sources.yaml")
    for name in ("contrib", "team"):
        download(registry[name], tmp_path)
        result = normalize_source(registry[name], raw_dir(name, tmp_path), {})
        write_outputs(result, name, tmp_path)
    assert set(result.turns["conversation_id"]) == {"team/a:1"}
    assert set(result.report["by_source"]) == {"team/a"}
    assert result.report["by_source"]["team/a"]["licence"] == "MIT"
    cfg = BuildConfig(variant="full", val_fraction=0.0, seed=1, caps={})
    stats = build_variant(tmp_path, ["contrib", "team"], registry, cfg).stats
    train = pl.read_parquet(tmp_path / "data/dataset/full/train.parquet")
    assert sorted(train["conversation_id"]) == ["contrib/a:1", "team/a:1"]
    assert stats["totals"]["rows_quarantined"] == 0
