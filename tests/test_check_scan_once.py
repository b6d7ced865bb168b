"""`nanochatgpt check` reads a folder once and writes its throwaway copy without fsyncs.

It cost ~35 ms a file (5,000 files: ~3 minutes): scan_contrib (every sidecar parsed with PyYAML,
every data file's head read) ran four times per check (check's own scan, the download's, the
contrib adapter's, its descriptions'), and the download's scratch copy fsynced every file. These
count what is done, not how long it takes, and check that the accounts and the cleanup are those
of before.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline import atomic, cli
from pipeline.sources import contrib

ROOT = Path(__file__).resolve().parents[1]
GOOD = "<human> hi there <endOfText>\n<bot> hello! <endOfText>\n\n"


@pytest.fixture(autouse=True)
def project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(ROOT))  # its sources.yaml and params.yaml


def corpus(folder: Path, n: int, bad: int | None = None) -> list[Path]:
    """`n` small files of the three formats, each with its sidecar; file `bad` has a conversation
    with no bot turn (its second record)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        stem = f"f{i:03d}"
        if i % 3 == 2:
            path = folder / f"{stem}.txt"
            path.write_text(GOOD * 2)
        else:
            key, turns = (
                ("messages", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
                if i % 3 == 0
                else ("conversations", [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}])
            )
            records = [{key: turns}, {key: turns[:1] if i == bad else turns}]
            path = folder / f"{stem}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in records))
        (folder / f"{stem}.yaml").write_text(f"licence: CC-BY-4.0\ncommercial: true\ndescription: file {i}\n")
        files.append(path)
    return files


def counting(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> Counter[str]:
    """Replace `owner.name` by a wrapper that counts its calls by their first argument (a path's name)."""
    calls: Counter[str] = Counter()
    real: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        first = args[0] if args else ""
        calls[Path(first).name if isinstance(first, (str, os.PathLike)) else repr(first)] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


def test_check_parses_each_sidecar_once_and_scans_the_folder_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files = corpus(tmp_path / "mine", 9)
    parsed = counting(monkeypatch, contrib, "parse_sidecar")  # scan_contrib calls it by this name
    listed: list[Path] = []
    real_entries = contrib.contrib_entries
    monkeypatch.setattr(contrib, "contrib_entries", lambda f: listed.append(f) or real_entries(f))
    assert cli.main(["check", str(tmp_path / "mine")]) == 0
    assert parsed == Counter({f.name: 1 for f in files})  # was 4 each: check, download, read, descriptions
    # Each scan lists its folder once at most: the scratch copy is scanned once (or, file by file,
    # from the names copied into it), the download's copy of it never (the folder named, and
    # data/contrib/, are listed to choose the files).
    scratch = [f for f in listed if "nanochatgpt-check-" in str(f)]
    assert [f.name for f in scratch] in ([], ["contrib"])
    assert capsys.readouterr().out.count("rows read 4: 4 kept") == 9


def test_check_fsyncs_nothing_it_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scratch copy is deleted before check returns: durability is for what outlives the run."""
    corpus(tmp_path / "mine", 6)
    synced = counting(monkeypatch, os, "fsync")
    assert cli.main(["check", str(tmp_path / "mine")]) == 0
    assert not synced  # was one per file and folder of the download's copy


def test_the_pipelines_download_still_fsyncs_and_normalize_scans_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `dvc repro` runs keeps its durability, and normalize@contrib reads each sidecar once
    (it read them twice: for the rows, then for the descriptions)."""
    from pipeline.sources.download import download
    from pipeline.sources.normalize import normalize_source
    from pipeline.sources.registry import get_source, load_registry

    files = corpus(tmp_path / "inbox", 4)
    spec = get_source("contrib", load_registry(ROOT / "sources.yaml"))
    here = dataclasses.replace(spec, location=str(tmp_path / "inbox"), local_path=None)
    synced = counting(monkeypatch, os, "fsync")
    raw = download(here, root=tmp_path)
    assert sum(synced.values()) >= len(files) * 2  # every data file and sidecar, and the folders
    parsed = counting(monkeypatch, contrib, "parse_sidecar")
    result = normalize_source(here, raw, {})
    assert parsed == Counter({f.name: 1 for f in files})
    assert {s: v.get("description") for s, v in result.report["by_source"].items()} == {
        f"contrib/{f.stem}": f"file {i}" for i, f in enumerate(files)
    }


def test_atomic_dir_without_durability_still_swaps_the_folder_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    synced = counting(monkeypatch, os, "fsync")
    with atomic.atomic_dir(target, durable=False) as tmp:
        (tmp / "new.txt").write_text("new")
        os.chmod(tmp / "new.txt", 0o600)  # as safetensors writes: the umask's mode is still given
    assert not synced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert (target / "new.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_one_bad_file_among_many_is_named_with_its_row_and_rule_and_nothing_is_left_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus(tmp_path / "mine", 60, bad=30)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    data = sorted((p.relative_to(ROOT), p.stat().st_mtime_ns) for p in (ROOT / "data").rglob("*"))
    assert cli.main(["check", "--strict", str(tmp_path / "mine")]) == 1
    out = capsys.readouterr().out
    assert out.count("0 quarantined") == 59
    assert "f030.jsonl:2/messages[0]  has_bot_turn: conversation has 1 turn(s)" in out
    assert list(scratch.iterdir()) == []  # the scratch folder went
    assert sorted((p.relative_to(ROOT), p.stat().st_mtime_ns) for p in (ROOT / "data").rglob("*")) == data


# --- one refused file among many: found by a scan of each file, the rest checked in one batch ---


def per_file(
    spec: Any, folder: Path, chosen: list[Path], params: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[Any]]:
    """check._check_folder as it was: the folder in one scratch copy and, where that is refused,
    each file with its sidecars alone in one of its own (the accounts the batch must give)."""
    from pipeline import check
    from pipeline.sources.errors import SourceError

    try:
        summaries, q = check._check_scratch(spec, folder, chosen, params)
        return summaries, [q]
    except SourceError as e:
        whole = e
    units = check._by_stem(chosen)
    summaries, quarantines = [], []
    for unit in units if len(units) > 1 else []:
        try:
            mine, q = check._check_scratch(spec, folder, unit, params)
        except SourceError as e:
            summaries.append(check._refused(folder, unit, e))
            continue
        summaries += mine
        quarantines.append(q)
    if not any("error" in s for s in summaries):
        summaries.append(check._refused(folder, chosen, whole, each=False))
    return summaries, quarantines


def spoil(folder: Path, stem: str, how: str) -> None:
    """Make `stem` of a corpus() folder one the pipeline refuses: at the scan (no sidecar, a sidecar
    without a licence, one that is not YAML, two data files of the stem, a sidecar alone) or in
    normalize (a .json list holding nothing, its format declared, so that the scan takes it)."""
    data = next(p for p in folder.glob(f"{stem}.*") if p.suffix != ".yaml")
    sidecar = folder / f"{stem}.yaml"
    if how == "no sidecar":
        sidecar.unlink()
    elif how == "bad sidecar":
        sidecar.write_text("commercial: true\n")
    elif how == "not yaml":
        sidecar.write_text("licence: [unclosed\n")
    elif how == "two data files":
        (folder / f"{stem}.csv").write_text("a,b\n")
    elif how == "sidecar alone":
        data.unlink()
    elif how == "nothing read":  # normalize's refusal: the scan takes it
        data.unlink()
        (folder / f"{stem}.json").write_text("[]\n")
        sidecar.write_text("licence: CC-BY-4.0\ncommercial: true\nformat: openai\n")
    else:
        raise ValueError(how)


def outputs(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = cli.main(argv)
    got = capsys.readouterr()
    return rc, got.out, got.err


CASES = {
    "clean": {},
    "no sidecar": {"f007": "no sidecar"},
    "bad sidecar": {"f004": "bad sidecar"},
    "normalize refuses": {"f010": "nothing read"},
    "several of each": {
        "f000": "nothing read",
        "f001": "no sidecar",
        "f003": "bad sidecar",
        "f005": "nothing read",
        "f006": "not yaml",
        "f008": "two data files",
        "f009": "no sidecar",
        "f011": "sidecar alone",
        "f013": "bad sidecar",
        "f014": "nothing read",
    },
}


@pytest.mark.parametrize("case", CASES)
def test_the_batch_says_byte_for_byte_what_checking_each_file_alone_says(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline import check

    monkeypatch.chdir(tmp_path)  # the messages name the folder as typed, relative to here
    corpus(tmp_path / "mine", 15, bad=4)  # a quarantined row too
    for stem, how in CASES[case].items():
        spoil(tmp_path / "mine", stem, how)
    argv = ["check", "--strict", "mine", "mine/f004.jsonl"]  # a folder, and a file of it named again
    got = outputs(argv, capsys)
    monkeypatch.setattr(check, "_check_folder", per_file)
    assert got == outputs(argv, capsys)
    assert got[0] == 1 and ("refused" in got[2]) == bool(CASES[case])


def test_files_refused_only_together_get_the_folders_error_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refusal of the files together and of none alone (none in the pipeline now: the branch is
    kept) still ends with the folder's error, after every file's account."""
    from pipeline import check
    from pipeline.sources import normalize
    from pipeline.sources.errors import SourceError

    monkeypatch.chdir(tmp_path)
    corpus(tmp_path / "mine", 7)
    real = normalize.normalize_source

    def two_clash(spec: Any, folder: Path, params: Any, scanned: Any = None) -> Any:
        if len(scanned) > 1:
            raise SourceError(f"{spec.location}/{scanned[0].path.name}: refused beside another file")
        return real(spec, folder, params, scanned)

    monkeypatch.setattr(normalize, "normalize_source", two_clash)
    got = outputs(["check", "mine"], capsys)
    assert got[2].splitlines() == [
        "check: mine/f000.jsonl: refused beside another file",
        "check: 1 of 8 files refused: mine/f000.jsonl",
    ]
    monkeypatch.setattr(check, "_check_folder", per_file)
    assert got == outputs(["check", "mine"], capsys)


@pytest.mark.parametrize("how", ["no sidecar", "bad sidecar", "nothing read"])
def test_one_refused_file_among_many_takes_a_few_scratch_runs_not_one_a_file(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each file alone in a scratch copy of its own (~0.1 s a file: 2,000 files ~200 s against
    ~15 s for the folder at once) ran download and normalize once a file."""
    from pipeline.sources import download, normalize

    corpus(tmp_path / "mine", 40)
    spoil(tmp_path / "mine", "f017", how)
    normalized = counting(monkeypatch, normalize, "normalize_source")  # by the source's name
    downloaded = counting(monkeypatch, download, "download")
    assert cli.main(["check", str(tmp_path / "mine")]) == 1
    assert "f017" in capsys.readouterr().err
    # the scan's refusals: one run of the rest; normalize's: the halves that hold it, down to it
    runs = 1 if how != "nothing read" else 1 + 2 * 6  # 40 files: 6 halvings
    assert sum(normalized.values()) <= runs and sum(downloaded.values()) <= runs  # were 41 each


def test_every_file_refused_by_the_scan_runs_nothing_and_a_bad_setting_does_not_recurse(
    tmp_path: Path,
) -> None:
    """With every stem refused by the scan, an empty batch went through download and normalize;
    a params.yaml `normalize` setting they refuse then refused the empty batch, whose halves are
    empty too: a RecursionError traceback instead of each file's error."""
    from pipeline import check
    from pipeline.sources.registry import get_source, load_registry

    folder = tmp_path / "mine"
    corpus(folder, 2)
    for stem in ("f000", "f001"):
        spoil(folder, stem, "no sidecar")
    spec = get_source("contrib", load_registry(ROOT / "sources.yaml"))
    chosen = contrib.contrib_entries(folder)
    params = {"min_turns": "two"}
    got = check._check_folder(spec, folder, chosen, params)
    assert got == per_file(spec, folder, chosen, params)
    assert [": no sidecar;" in s["error"] for s in got[0]] == [True, True]
