"""Tests from mutation audit 15 (check, chat, streamencoding, attention, transcripts): each kills a
hand-made mutant that the suite let through; its docstring names the mutation."""

from __future__ import annotations

import io
import json
import sys
import warnings
from pathlib import Path

import pytest
import torch

from pipeline import streamencoding, transcripts

# ---------------------------------------------------------------- transcripts


def test_an_ampersand_that_starts_no_entity_reference_stays_as_written() -> None:
    """Kills transcripts._MARKUP `&(?=#?[0-9A-Za-z]+;)` -> `&` (every `&` escaped): "a & b" read
    `a \\& b` in the file, which the module promises to leave as written; only an entity reference
    ("&amp;", "&#42;"), which Markdown would render as another character, gets its backslash."""
    assert transcripts.markdown_text("fish & chips, R&D, a &b") == "fish & chips, R&D, a &b"
    assert transcripts.markdown_text("&amp; &#42;") == "\\&amp; \\&#42;"
    assert transcripts.plain_text(transcripts.markdown_text("&amp; & x")) == "&amp; & x"


# ---------------------------------------------------------------- streamencoding


def test_an_encoding_is_compared_by_its_codec_not_by_how_it_is_spelt() -> None:
    """Kills streamencoding._codec `codecs.lookup(encoding).name` -> `encoding` (the name as given):
    a stream or locale names its encoding in any spelling (`US-ASCII`, `ANSI_X3.4-1968`, `UTF-8`),
    and then an ASCII stdin was left decoding UTF-8 text as U+FFFD, and a UTF-8 message was refused
    as "UTF-8 text, but this locale reads UTF-8"."""
    stdin = io.TextIOWrapper(io.BytesIO("café\n".encode()), encoding="US-ASCII", errors="replace")
    streamencoding.read_utf8_for_ascii(stdin)
    assert stdin.readline() == "café\n"
    assert streamencoding.utf8_in_disguise("café", "UTF-8", "the message") is None
    assert streamencoding.utf8_in_disguise("café", "UTF8", "the message") is None
    assert (
        streamencoding.utf8_in_disguise("plain ascii", "ISO-8859-1", "x") is None
    )  # (also kills `text.isascii() or` dropped)
    assert "is UTF-8 text (caf\\xe9)" in streamencoding.utf8_in_disguise("cafÃ©", "ISO-8859-1", "x")


def test_a_stream_that_names_no_encoding_is_taken_as_utf8(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills streamencoding.writes_utf8 `or "utf-8"` -> `or "ascii"`: a stdout that names no
    encoding (io.StringIO, a notebook's or a test's capture) had `--json` output's non-ASCII text
    escaped (`caf\\u00e9`) and was reconfigured to escape what it writes, where it takes any text."""
    from pipeline import jsonout

    assert streamencoding.writes_utf8(io.StringIO())
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert jsonout.dumps({"word": "café"}) == '{\n  "word": "café"\n}'


def test_a_package_under_a_non_ascii_folder_that_encodes_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills streamencoding.unloadable_package's `origin.encode("utf-8"); continue` dropped: a
    package under a non-ASCII folder whose name is real text (a Latin-1 or UTF-8 locale) was said
    not to load; only a name holding lone surrogates (an ASCII locale) cannot."""
    import importlib.util
    import types

    def spec(origin: str):
        return lambda name: types.SimpleNamespace(origin=origin)

    monkeypatch.setattr(importlib.util, "find_spec", spec("/opt/prøve/torch/__init__.py"))
    assert streamencoding.unloadable_package("torch") is None
    monkeypatch.setattr(importlib.util, "find_spec", spec("/opt/pr\udcc3\udcb8ve/torch/__init__.py"))
    assert "torch cannot load from there" in streamencoding.unloadable_package("torch")


def test_a_path_byte_that_is_no_utf8_is_named_as_that_byte() -> None:
    """Kills streamencoding._not_ascii_here `backslashreplace` -> `replace`: a folder's byte that is
    no UTF-8 (0xFF) was shown as U+FFFD, which names no byte the user could look for."""
    if sys.getfilesystemencoding().lower().replace("-", "") != "utf8":
        pytest.skip("file names here do not decode as UTF-8")
    assert "/p/\\\\xff is not ASCII" in streamencoding._not_ascii_here("/p/\udcff")


# ---------------------------------------------------------------- check

ROOT = Path(__file__).resolve().parents[1]


def _contrib(folder: Path, name: str, text: str) -> Path:
    """`name` holding `text`, with a sidecar (MIT, commercial) beside it."""
    (folder / name).write_text(text)
    (folder / f"{Path(name).stem}.yaml").write_text("licence: MIT\ncommercial: true\ndescription: t\n")
    return folder / name


def test_check_counts_every_filtered_row_not_every_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills check._account `sum((counts.get("rows_filtered") or {}).values())` -> `len(...)`: two
    rows filtered for one reason were reported as 1 filtered, and the line "rows read 3: 1 kept,
    1 filtered, 0 quarantined" no longer added up."""
    from pipeline.check import check_files, format_summary

    monkeypatch.setenv("NANOCHATGPT_ROOT", str(ROOT))
    system_only = json.dumps({"messages": [{"role": "system", "content": "persona only"}]}) + "\n"
    pair = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    f = _contrib(tmp_path, "sys.jsonl", system_only * 2 + pair + "\n")
    [summary], _ = check_files([f], ROOT)
    assert summary["rows_filtered"] == 2
    assert (
        summary["rows_read"] == summary["rows_kept"] + summary["rows_filtered"] + summary["rows_quarantined"]
    )
    assert ", 2 filtered, 0 quarantined" in format_summary(summary)


def test_check_asks_for_a_credit_only_under_a_licence_that_asks_for_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills check._attribution_warnings `or not needs_attribution(cf.licence)` dropped: every file
    whose sidecar names no `attribution:` was told its licence asks for a credit, MIT's too."""
    from pipeline.check import check_files

    monkeypatch.setenv("NANOCHATGPT_ROOT", str(ROOT))
    f = _contrib(tmp_path, "mit.txt", "<human> hi <endOfText>\n<bot> hello <endOfText>\n\n")
    [summary], _ = check_files([f], ROOT)
    assert summary["licence"] == "MIT" and summary["attribution"] is None
    assert summary["warnings"] == []


# ---------------------------------------------------------------- attention


def _warned(*messages: str) -> list[warnings.WarningMessage]:
    return [warnings.WarningMessage(UserWarning(m), UserWarning, "x.py", 1) for m in messages]


def test_a_refused_kernel_without_reasons_of_its_own_gets_torchs_error() -> None:
    """Kills attention._refusal `and "not used" not in reason` dropped: where torch's warning about
    this kernel is followed by the next kernel's header, not a reason, that header ("Memory
    efficient not used because:") was given as why flash refused."""
    from pipeline import attention

    caught = _warned("Flash attention not used because:", "Memory efficient not used because:", "odd dim")
    error = RuntimeError("No available kernel. Aborting execution.")
    assert attention._refusal("flash", caught, error) == "No available kernel. Aborting execution."
    assert attention._refusal("efficient", caught, error) == "odd dim"


def test_torchs_priority_is_explained_by_a_failed_reference_only() -> None:
    """Kills attention.Choice.describe `and "reference" in p.why` dropped: with torch's priority in
    force because the float32 reference failed, each kernel's own refusal was listed as if it were
    why, not the reference's failure alone."""
    from pipeline import attention

    probes = (
        attention.Probe("flash", None, None, "head_dim too large"),
        attention.Probe("math", None, None, "reference failed: CUDA out of memory"),
    )
    assert attention.Choice("auto", None, probes).describe() == (
        "attention: torch's kernel priority (train.attention: auto; reference failed: CUDA out of memory)"
    )


def test_fastest_is_the_quickest_of_the_kernels_that_agree() -> None:
    """Kills attention.fastest `min(usable, key=ms)` -> `max(...)`: the suite's probes had one
    usable kernel at most, so the slowest agreeing kernel could be chosen unseen."""
    from pipeline import attention

    probes = [
        attention.Probe("flash", 5.0, 1e-2),
        attention.Probe("cudnn", 1.0, 0.5, "disagrees"),
        attention.Probe("efficient", 2.0, 1e-2),
        attention.Probe("math", 9.0, 0.0),
    ]
    assert attention.fastest(probes) == "efficient"


def test_an_unknown_kernel_is_refused_before_any_switch_changes() -> None:
    """Kills attention.allow_only's `kernel not in switches` check dropped: "bogus" turned every
    kernel but math off and then ended in a KeyError, not the one-line ValueError."""
    from pipeline import attention

    saved = attention.snapshot()
    try:
        with pytest.raises(ValueError, match="'bogus': this torch has no switch"):
            attention.allow_only("bogus")
        assert attention.snapshot() == saved
    finally:
        attention.restore(saved)


def test_the_description_times_only_kernels_that_agree() -> None:
    """Kills attention.Choice.describe `if p.usable` -> `if p.ms is not None`: a kernel that ran but
    disagreed with the reference was listed among the timings as if it had been a candidate."""
    from pipeline import attention

    probes = (attention.Probe("flash", 2.0, 1e-2), attention.Probe("cudnn", 1.0, 0.5, "disagrees"))
    assert attention.Choice("auto", "flash", probes).describe() == (
        "attention: flash (train.attention: auto; flash 2.00 ms)"
    )


def test_auto_probes_at_most_probe_batch_sequences(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills attention.configure `min(batch, PROBE_BATCH)` -> `batch`: the float32 reference holds
    the whole attention matrix, and a run's batch of 64 probed all 64 sequences (CUDA only, so the
    probe is stood in for here)."""
    from pipeline import attention

    seen: list[int] = []

    def fake_probe(dev, batch, *rest, **kw):  # the real one needs CUDA
        seen.append(batch)
        return [attention.Probe("math", 1.0, 0.0)]

    monkeypatch.setattr(attention, "probe", fake_probe)
    monkeypatch.setattr(attention, "allow_only", lambda kernel: None)
    choice = attention.configure(
        "auto", torch.device("cuda"), batch=64, heads=2, block=32, head_dim=8, dtype=torch.bfloat16
    )
    assert seen == [attention.PROBE_BATCH] and choice.kernel == "math"
