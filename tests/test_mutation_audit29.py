"""Mutation audit 29: the download side (pipeline/sources/archive.py, download.py, leftovers.py,
registry.py, errors.py). Each test names the mutation it kills; archives are a few bytes, built in
tmp_path, and nothing here uses the network."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipeline.sources.errors import SourceError


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A pax .tar at `path` of regular files; each name goes in a pax `path` record, which (unlike a
    ustar header) keeps any character, a NUL among them."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.pax_headers = len(data), {"path": name}
            tar.addfile(info, io.BytesIO(data))
    return path


def _zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members:
            z.writestr(name, data)
    return path


def _extract(archive: Path, patterns: tuple[str, ...], out: Path, key: str = "files") -> dict:
    from pipeline.sources.archive import extract

    return extract(archive, patterns, out, name="demo", origin=archive.name, key=key)


def _written(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) if out.exists() else []


def test_a_nul_in_a_member_name_refuses_the_archive_before_any_file_is_written(tmp_path: Path) -> None:
    """Kills archive._unsafe without its `"\\0" in name` test: the NUL member then reached open(),
    whose ValueError came after good.csv was written (partial output, and a vaguer message)."""
    archive = _tar(tmp_path / "a.tar", [("good.csv", b"x\n"), ("b\0c.csv", b"y\n")])
    out = tmp_path / "out"
    with pytest.raises(SourceError, match=r"^demo: archive a\.tar has a member named .* written outside"):
        _extract(archive, ("*.csv",), out)
    assert _written(out) == []


@pytest.mark.parametrize("order", [["d", "d/a.csv"], ["d/a.csv", "d"]])
def test_a_name_that_is_both_a_file_and_a_folder_is_refused_before_writing(
    tmp_path: Path, order: list[str]
) -> None:
    """Kills archive._check_wanted without its `if clash:` refusal: the second member then failed
    on the first's file or folder, after the first was written."""
    archive = _zip(tmp_path / "a.zip", [(n, b"x\n") for n in order])
    out = tmp_path / "out"
    with pytest.raises(SourceError, match=r"holds 'd' both as a file and as the folder of 'd/a\.csv'"):
        _extract(archive, ("d", "d/a.csv"), out)
    assert _written(out) == []


def test_every_files_glob_must_select_a_member(tmp_path: Path) -> None:
    """Kills archive.extract's `key == "files" and unmatched` reduced to `not wanted`: a misspelt
    glob beside a good one would drop its files without a word."""
    archive = _zip(tmp_path / "a.zip", [("train.csv", b"x\n")])
    out = tmp_path / "out"
    with pytest.raises(
        SourceError, match=r"^demo: archive a\.zip has no file matching valdiation\.csv; fix `files:`"
    ):
        _extract(archive, ("train.csv", "valdiation.csv"), out)
    assert _written(out) == []


def test_licence_files_globs_listed_in_hope_need_only_one_match(tmp_path: Path) -> None:
    """Kills archive.extract requiring every glob to match for `licence_files:` too (`key == "files"`
    dropped): LICENSE* and NOTICE* are listed in hope, and an archive without a NOTICE is fine."""
    archive = _zip(tmp_path / "a.zip", [("LICENSE", b"MIT\n"), ("d/a.csv", b"x\n")])
    out = tmp_path / "out"
    got = _extract(archive, ("LICENSE*", "NOTICE*"), out, key="licence_files")
    assert got == {"members_extracted": 1, "members_skipped": {}}
    assert _written(out) == ["LICENSE"]


def test_a_copied_hard_link_is_counted_as_extracted_not_as_skipped(tmp_path: Path) -> None:
    """Kills archive.extract without `skipped["hardlink"] -= len(linked)`: the manifest then said a
    hard link it had copied out was skipped."""
    path = tmp_path / "a.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("d/a.csv")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"x\n"))
        link = tarfile.TarInfo("d/b.csv")
        link.type, link.linkname = tarfile.LNKTYPE, "d/a.csv"
        tar.addfile(link)
    out = tmp_path / "out"
    got = _extract(path, ("d/*.csv",), out)
    assert got == {"members_extracted": 2, "members_skipped": {}}
    assert (out / "d/b.csv").read_bytes() == b"x\n"


def test_only_the_selected_members_are_written(tmp_path: Path) -> None:
    """Kills archive.extract's second pass writing every regular member (`dests = [rel] + ...`
    instead of `[rel] if rel in wanted`): `files:` must bound what lands in data/raw/<name>."""
    archive = _zip(tmp_path / "a.zip", [("d/a.csv", b"x\n"), ("d/notes.txt", b"n\n"), ("big.bin", b"b")])
    out = tmp_path / "out"
    got = _extract(archive, ("d/*.csv",), out)
    assert got["members_extracted"] == 1
    assert _written(out) == ["d", "d/a.csv"]


def _corrupt_bzip2_zip(path: Path) -> Path:
    """A zip of d/a.csv, bzip2-compressed, damaged inside the member's compressed stream."""
    import random

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_BZIP2) as z:
        z.writestr("d/a.csv", random.Random(0).randbytes(3000) + b"x,y\n" * 50_000)
    data = bytearray(buf.getvalue())
    data[60:120] = b"\xff" * 60
    path.write_bytes(bytes(data))
    return path


def test_a_corrupt_bzip2_zip_member_is_one_line(tmp_path: Path) -> None:
    """Kills archive.extract without OSError among the errors it turns into one line: a damaged
    bzip2 member of a zip raises OSError ('Invalid data stream'), which then escaped as a traceback."""
    archive = _corrupt_bzip2_zip(tmp_path / "a.zip")
    with pytest.raises(SourceError, match=r"^demo: cannot extract archive a\.zip \(OSError: 'Invalid data"):
        _extract(archive, ("d/*.csv",), tmp_path / "out")


def test_a_download_whose_archive_fails_midway_leaves_no_folder(tmp_path: Path) -> None:
    """Kills download.download fetching into data/raw/<name> itself (`fetch(spec, root, target)`
    for `tmp`): the damaged member's partial copy then stayed there. Through atomic_dir, a refused
    archive leaves no data/raw/<name>/ and no temporary beside it."""
    from pipeline.sources.download import download
    from pipeline.sources.registry import parse_entry

    _corrupt_bzip2_zip(tmp_path / "a.zip")
    spec = parse_entry("demo", _url_entry(sha256=None, local_path="a.zip"))
    with pytest.raises(SourceError, match=r"^demo: cannot extract archive .*a\.zip \(OSError"):
        download(spec, tmp_path, durable=False)
    assert list((tmp_path / "data" / "raw").iterdir()) == []


def _raw_download(root: Path, name: str, manifest: str) -> Path:
    folder = root / "data" / "raw" / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(manifest, encoding="utf-8")
    return folder


def _spec_with_local_path(local_path: str):
    import dataclasses

    from pipeline.sources.registry import load_registry

    spec = load_registry(Path(__file__).resolve().parents[1] / "sources.yaml")["chatterbot"]
    return dataclasses.replace(spec, local_path=local_path)


def test_leftovers_under_a_local_path_folder_stay(tmp_path: Path) -> None:
    """Kills leftovers._protected without `path.is_relative_to(target)`: a disabled source's download
    lying under the folder another source's `local_path:` names was offered for removal."""
    from pipeline.sources.leftovers import find_leftovers

    folder = _raw_download(tmp_path, "old", '{"source": "old"}')
    assert find_leftovers(tmp_path, [], [_spec_with_local_path("data/raw")]) == {}
    assert find_leftovers(tmp_path, [], []) == {"old": [folder]}


def test_leftovers_protect_a_local_path_when_the_root_is_reached_through_a_link(tmp_path: Path) -> None:
    """Kills leftovers.find_leftovers keeping `local_path:` targets unresolved: with the checkout
    reached through a symbolic link, the resolved leftover never equalled the unresolved target,
    and the folder that `local_path:` names was offered for removal."""
    from pipeline.sources.leftovers import find_leftovers

    _raw_download(tmp_path / "real", "old", '{"source": "old"}')
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    assert find_leftovers(tmp_path / "link", [], [_spec_with_local_path("data/raw/old")]) == {}


def test_a_source_whose_only_leftovers_have_two_dots_is_found(tmp_path: Path) -> None:
    """Kills leftovers._names_present taking `p.stem` for the name: old.report.json gave
    `old.report`, and a disabled source whose parquet was gone kept its report and metrics."""
    from pipeline.sources.leftovers import find_leftovers

    normalized = tmp_path / "data" / "normalized"
    normalized.mkdir(parents=True)
    for f in ("old.report.json", "old.metrics.json"):
        (normalized / f).write_text("{}")
    assert find_leftovers(tmp_path, [], []) == {
        "old": [normalized / "old.report.json", normalized / "old.metrics.json"]
    }


def test_a_hidden_file_beside_the_outputs_is_nobodys(tmp_path: Path) -> None:
    """Kills leftovers._names_present without `names.discard("")`: `.report.json` (a file of the
    user's) split to the name "", whose normalize outputs .parquet/.report.json were then removed."""
    from pipeline.sources.leftovers import find_leftovers

    normalized = tmp_path / "data" / "normalized"
    normalized.mkdir(parents=True)
    (normalized / ".report.json").write_text("{}")
    assert find_leftovers(tmp_path, [], []) == {}


def test_a_manifest_that_is_not_json_is_not_ours(tmp_path: Path) -> None:
    """Kills leftovers._recorded_source catching OSError only: a data/raw/<name>/manifest.json that is
    not JSON (ValueError) crashed the registry stage instead of marking the folder not the pipeline's."""
    from pipeline.sources.leftovers import find_leftovers

    _raw_download(tmp_path, "old", "{not json")
    assert find_leftovers(tmp_path, [], []) == {}


def test_removing_a_leftover_that_links_to_a_folder_removes_the_link_only(tmp_path: Path) -> None:
    """Kills leftovers.remove_leftovers without `not path.is_symlink()`: a normalize output that is a
    link to a folder went to rmtree (which refuses a link: OSError) instead of being unlinked."""
    from pipeline.sources.leftovers import find_leftovers, remove_leftovers

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("k")
    normalized = tmp_path / "data" / "normalized"
    normalized.mkdir(parents=True)
    (normalized / "old.parquet").symlink_to(mine, target_is_directory=True)
    found = find_leftovers(tmp_path, [], [])
    assert found == {"old": [normalized / "old.parquet"]}
    remove_leftovers(found["old"])
    assert not (normalized / "old.parquet").is_symlink() and (mine / "keep.txt").read_text() == "k"


def test_every_files_glob_must_select_a_file_of_a_local_path_folder(tmp_path: Path) -> None:
    """Kills download._select_each checking `not files` alone (`or unmatched` dropped): a misspelt
    glob beside a good one dropped its files without a word."""
    import dataclasses

    from pipeline.sources.download import files_on_disk

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "train.csv").write_text("x\n")
    spec = dataclasses.replace(_spec_with_local_path("corpus"), files=("train.csv", "valdiation.csv"))
    with pytest.raises(
        SourceError, match=r"^chatterbot: local_path .* holds no files matching valdiation\.csv;"
    ):
        files_on_disk(spec, tmp_path)


def _url_entry(**fields: object) -> dict[str, object]:
    """A valid url entry of sources.yaml (empathetic_dialogues' shape), with `fields` laid over it."""
    entry: dict[str, object] = {
        "kind": "url",
        "location": "https://example.org/corpus.tar.gz",
        "sha256": "56f234d77b7dd1f005fd365bb17769cfe346c3c84295b69bc069c8ccb83be03d",
        "archive": True,
        "files": ["d/*.csv"],
        "adapter": "empathetic_dialogues",
        "licence": "CC-BY-NC-4.0",
        "commercial": False,
        "commercial_reason": "non-commercial",
    }
    return {**entry, **fields}


@pytest.mark.parametrize("bad", ["upper", "long", "number"])
def test_a_sha256_pin_of_another_form_is_refused_when_read(bad: str) -> None:
    """Kills registry._SHA256_RE taking A-F too (hashlib's hexdigest is lower-case, so such a pin
    could never match), _SHA256_RE without its `$` (65 digits passed), and parse_entry without
    `not isinstance(sha, str)` (a YAML number passed, to fail later): refused in sources.yaml, not as
    a sha256 mismatch or a TypeError after the download."""
    from pipeline.sources.registry import parse_entry

    good = str(_url_entry()["sha256"])
    assert parse_entry("demo", _url_entry()).sha256 == good
    pin = {"upper": good.upper(), "long": good + "0", "number": 1234}[bad]
    with pytest.raises(SourceError, match=r"^sources\.yaml: demo: `sha256:` must be 64 lower-case hex"):
        parse_entry("demo", _url_entry(sha256=pin))


def test_a_data_file_named_like_a_notice_is_not_recorded_as_one(tmp_path: Path) -> None:
    """Kills download._is_licence_name without its data-suffix test: AUTHORS.csv beside the corpus
    was taken as a notice file (and NOTICE.md would reproduce a data file as licence text)."""
    import dataclasses

    from pipeline.sources.download import files_on_disk

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for f in ("train.csv", "AUTHORS.csv", "LICENSE.md"):
        (corpus / f).write_text("x\n")
    spec = dataclasses.replace(_spec_with_local_path("corpus"), files=("train.csv",))
    base, files = files_on_disk(spec, tmp_path)
    assert sorted(f.relative_to(base).as_posix() for f in files) == ["LICENSE.md", "train.csv"]


def test_an_unpacked_folder_of_a_pinned_archive_is_taken_as_local_path(tmp_path: Path) -> None:
    """Kills two mutants of download._from_local, each dropping an `and one_file`: the pinned sha256
    checked for a `local_path:` folder too (its first file hashed as if it were the archive, and
    refused), and `archive: true` extracting from a folder's first file (not an archive: refused)."""
    from pipeline.sources.download import download
    from pipeline.sources.registry import parse_entry

    (tmp_path / "unpacked" / "d").mkdir(parents=True)
    (tmp_path / "unpacked" / "d" / "a.csv").write_text("x\n")
    spec = parse_entry("demo", _url_entry(local_path="unpacked"))
    folder = download(spec, tmp_path, durable=False)
    assert (folder / "d" / "a.csv").read_text() == "x\n"


def test_a_revision_ending_in_a_slash_is_refused_when_read() -> None:
    """Kills registry._REVISION_RE without its `(?<!/)`: `main/` is no ref name, and huggingface_hub
    would join it into its cache paths (refs/main/) as it is."""
    from pipeline.sources.registry import parse_entry

    assert parse_entry("demo", _url_entry(revision="refs/convert/parquet")).revision == "refs/convert/parquet"
    with pytest.raises(SourceError, match=r"^sources\.yaml: demo: `revision:` 'main/' is not a commit sha"):
        parse_entry("demo", _url_entry(revision="main/"))


def test_licence_files_on_a_plain_url_file_are_refused_when_read() -> None:
    """Kills registry.parse_entry taking `licence_files:` for any url source (`and archive` dropped):
    a plain downloaded file has no members, so the globs would be silently ignored."""
    from pipeline.sources.registry import parse_entry

    assert parse_entry("demo", _url_entry(licence_files=["LICENSE"])).licence_files == ("LICENSE",)
    with pytest.raises(SourceError, match=r"^sources\.yaml: demo: `licence_files:` selects the members"):
        parse_entry("demo", _url_entry(archive=False, files=["corpus.csv"], licence_files=["LICENSE"]))


def test_a_local_path_under_the_home_folder_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills registry.local_target without `expanduser()`: `local_path: ~/corpus` then meant a folder
    named `~` in the checkout."""
    from pipeline.sources.registry import local_target

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    spec = _spec_with_local_path("~/corpus")
    assert local_target(spec, tmp_path / "repo") == tmp_path / "home" / "corpus"
