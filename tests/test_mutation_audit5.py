"""Fifth mutation-testing audit (session 31, s31-mut8): each test kills a deliberate mutation that the
related tests let pass; the mutation is named in the docstring.

Covered here: params.yaml readers (pipeline.paramcheck, pipeline.trainconfig), the normalize rules and
report (pipeline.sources.normalize), contributed files' sidecars (pipeline.sources.contrib) and the
download (pipeline.sources.download). Survivors judged equivalent are not tested (the session notes
say why).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.sources.contrib import ContribFile, parse_sidecar, scan_contrib
from pipeline.sources.errors import SourceError
from pipeline.sources.normalize import normalize_rows, summary_metrics
from pipeline.sources.rows import RawRows
from pipeline.trainconfig import TrainConfig, data_digest

# ---------------------------------------------------------------- pipeline.trainconfig


@pytest.mark.parametrize("key", ["dropout", "beta1", "beta2"])
def test_a_rate_of_exactly_one_is_refused(key: str) -> None:
    """Kills `0 <= x < 1` -> `0 <= x <= 1` for dropout and beta2: dropout 1 zeroes every activation
    and beta 1 never updates Adam's moment; [0, 1) is the documented range, its upper end excluded."""
    with pytest.raises(ValueError, match=rf"^params\.yaml train\.{key}: must be in \[0, 1\), got 1\.0$"):
        TrainConfig(**{key: 1.0}).validated()
    assert getattr(TrainConfig(**{key: 0.0}).validated(), key) == 0.0  # the lower end is in


def test_no_warmup_is_a_legal_setting() -> None:
    """Kills `warmup_iters >= 0` -> `> 0`: warmup_iters 0 (start at the full lr) must be accepted."""
    assert TrainConfig(warmup_iters=0).validated().warmup_iters == 0
    with pytest.raises(ValueError, match=r"^params\.yaml train\.warmup_iters: must be >= 0, got -1$"):
        TrainConfig(warmup_iters=-1).validated()


@pytest.mark.parametrize("device", ["cuda:", "cuda:x", "gpu", "cuda:0 ", "CPU"])
def test_a_device_that_names_no_device_is_refused(device: str) -> None:
    """Kills the device pattern `cuda(:\\d+)?` -> `cuda(:\\d*)?` (a bare `cuda:` would pass, and
    fail later inside torch)."""
    with pytest.raises(ValueError, match=r"^params\.yaml train\.device: must be auto, cpu, cuda or cuda:N"):
        TrainConfig(device=device).validated()


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_devices_that_name_a_device_are_accepted(device: str) -> None:
    assert TrainConfig(device=device).validated().device == device


def test_warmup_as_long_as_the_run_is_a_warning() -> None:
    """Kills `warmup_iters >= max_iters` -> `>`: with warmup_iters == max_iters the lr still never
    reaches its peak before the run ends (warmup's last step is max_iters itself)."""
    (warning,) = TrainConfig(warmup_iters=100, max_iters=100).warnings()
    assert warning.startswith("warmup_iters 100 >= max_iters 100:")
    assert TrainConfig(warmup_iters=99, max_iters=100).warnings() == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("seed", 7),
        ("lr", 1e-3),
        ("dropout", 0.1),
        ("variant", "commercial"),
        ("grad_accum", 2),
        ("dtype", "bfloat16"),
    ],
)
def test_a_setting_that_decides_the_weights_changes_the_fingerprint(key: str, value: object) -> None:
    """Kills adding `seed` to NON_TRAJECTORY_KEYS: a run resumed under another seed (or lr, variant,
    ...) would be taken for the same run. Logging knobs, by contrast, leave it alone."""
    base = TrainConfig()
    assert TrainConfig(**{key: value}).fingerprint(b"data") != base.fingerprint(b"data")


@pytest.mark.parametrize("key", ["eval_interval", "eval_iters", "ckpt_interval", "log_interval"])
def test_a_logging_knob_keeps_the_fingerprint(key: str) -> None:
    base = TrainConfig()
    assert TrainConfig(**{key: getattr(base, key) + 1}).fingerprint(b"data") == base.fingerprint(b"data")


def test_shards_without_meta_json_are_hashed_val_split_too(tmp_path: Path) -> None:
    """Kills data_digest hashing only `train/`: val shards replaced between a kill and the rerun
    (no meta.json to say so) would let the run resume on other data."""
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "000.bin").write_bytes(b"a")
    before = data_digest(tmp_path)
    (tmp_path / "val" / "000.bin").write_bytes(b"b")
    assert data_digest(tmp_path) != before


@pytest.mark.parametrize("init_from", ["", "   ", "\t"])
def test_a_blank_init_from_is_refused(init_from: str) -> None:
    """Kills `init_from.strip() != ""` -> `init_from != ""`: blank space names no start."""
    with pytest.raises(ValueError, match=r"^params\.yaml train\.init_from: must name scratch"):
        TrainConfig(init_from=init_from).validated()


# ---------------------------------------------------------------- pipeline.sources.normalize


def _rows(*turns: tuple[str, str, str]) -> pl.DataFrame:
    """RawRows of (conversation key, role, text) rows of one source."""
    r = RawRows("s", "MIT", True)
    for i, (key, role, text) in enumerate(turns):
        r.add(key, text, f"s.jsonl:{i + 1}", role=role)
    return r.frame()


@pytest.mark.parametrize("min_turns", [0, 1])
def test_min_turns_below_two_counts_as_two(min_turns: int) -> None:
    """Kills `max(2, min_turns)` -> `max(1, min_turns)`: a lone human turn (no reply to learn from)
    must never reach the turn table, whatever params.yaml normalize.min_turns says."""
    result = normalize_rows(
        _rows(("1", "human", "hi"), ("2", "human", "q"), ("2", "bot", "a")), min_turns=min_turns
    )
    assert result.turns.get_column("conversation_id").to_list() == ["s:2", "s:2"]
    assert result.quarantine.get_column("check").to_list() == ["has_bot_turn"]


def test_an_empty_row_does_not_cut_its_conversation() -> None:
    """Kills emptying _NON_BREAKING: an empty row (text_present) would cut the rest of its
    conversation as conversation_broken, where it carries nothing later turns depend on."""
    result = normalize_rows(
        _rows(("1", "human", "q"), ("1", "human", "  "), ("1", "bot", "a"), ("1", "human", "more"))
    )
    assert result.turns.get_column("text").to_list() == ["q", "a", "more"]
    assert result.quarantine.get_column("check").to_list() == ["text_present"]
    assert result.report["rows_kept"] == 3 and result.report["rows_quarantined"] == 1


def test_a_merged_turn_counts_its_line_breaks_against_the_limit() -> None:
    """Kills the merged turn's length without its "\\n" separators (sum of lengths + rows - 1 ->
    sum of lengths) and `_turn_len > max` -> `>=`: "ab\\ncd" is 5 characters, exactly the limit,
    and kept; "abc\\ncd" is 6, one past it, and quarantined as text_length (not a turn table that
    fails its own schema)."""
    at_limit = normalize_rows(
        _rows(("1", "human", "ab"), ("1", "human", "cd"), ("1", "bot", "a")), max_turn_chars=5
    )
    assert at_limit.turns.get_column("text").to_list() == ["ab\ncd", "a"]
    past = normalize_rows(
        _rows(
            ("1", "human", "abc"),
            ("1", "human", "cd"),
            ("1", "bot", "a"),
            ("2", "human", "q"),
            ("2", "bot", "a"),
        ),
        max_turn_chars=5,
    )
    assert past.turns.get_column("conversation_id").to_list() == ["s:2", "s:2"]
    assert past.quarantine.get_column("check").to_list() == [
        "text_length",
        "text_length",
        "conversation_broken",
    ]
    assert "2 rows merged into a turn of 6 characters (limit 5)" in past.quarantine.get_column("reason")[0]


def test_the_report_counts_merged_rows() -> None:
    """Kills `rows_merged = rows_kept - turns_kept` -> `turns_kept - rows_kept`: three rows kept in
    two turns is one merge, a positive count (metrics.json carries it)."""
    report = normalize_rows(_rows(("1", "human", "a"), ("1", "human", "b"), ("1", "bot", "c"))).report
    assert (report["rows_kept"], report["turns_kept"], report["rows_merged"]) == (3, 2, 1)
    assert summary_metrics(report)["rows_merged"] == 1


def test_one_contributed_file_is_reported_per_file() -> None:
    """Kills `len(sources) > 1 or any("/" in s ...)` -> `len(sources) > 1`: a folder of one
    contributed file still gets its `by_source` entry, with its own licence and flag (the build's
    stats.json and dataset card list every file from it)."""
    r = RawRows("contrib/a", "CC-BY-4.0", False)
    r.add("1", "q", "a.txt:1", role="human")
    r.add("1", "a", "a.txt:1", role="bot")
    per = normalize_rows(r.frame()).report["by_source"]
    assert per["contrib/a"]["licence"] == "CC-BY-4.0" and per["contrib/a"]["commercial"] is False
    assert per["contrib/a"]["rows_read"] == per["contrib/a"]["rows_kept"] == 2


@pytest.mark.parametrize("context", ["   ", "\u200b", "\n\u00a0"])
def test_a_context_of_nothing_visible_is_no_context(context: str) -> None:
    """Kills `context=pl.when(~blank(context)).then(context)` -> `context=context`: an empty or
    invisible persona would reach the turn table (and the chat template) as a context."""
    r = RawRows("s", "MIT", True)
    r.add("1", "q", "s:1", role="human", context=context)
    r.add("1", "a", "s:1", role="bot")
    assert normalize_rows(r.frame()).turns.get_column("context").to_list() == [None, None]


def test_a_row_of_an_unknown_role_cuts_its_conversation() -> None:
    """Kills role_valid's quarantine with breaks=False: the rows after a row of an unknown role
    would be kept, joining turns across the gap it leaves."""
    result = normalize_rows(_rows(("1", "human", "q"), ("1", "wizard", "x"), ("1", "bot", "a")))
    assert result.turns.height == 0
    assert result.quarantine.get_column("check").to_list() == [
        "conversation_broken",
        "role_valid",
        "conversation_broken",
    ]


def test_metrics_sum_the_filtered_rows_over_their_reasons() -> None:
    """Kills metrics.json's `rows_filtered` as the number of reasons (len) instead of rows (sum)."""
    r = RawRows("s", "MIT", True)
    r.add("1", "q", "s:1", role="human")
    r.add("1", "a", "s:1", role="bot")
    for i in range(3):
        r.skip(f"s:{i + 2}", "deleted")
    report = normalize_rows(r.frame()).report
    assert report["rows_filtered"] == {"deleted": 3}
    assert summary_metrics(report)["rows_filtered"] == 3


def test_an_empty_conversation_key_is_no_conversation() -> None:
    """Kills the conversation id's `key != ""` test: rows of an empty id would form one conversation
    `s:` of every such row of the source, instead of being quarantined as without an id."""
    result = normalize_rows(_rows(("", "human", "q"), ("", "bot", "a")))
    assert result.turns.height == 0
    assert result.quarantine.get_column("check").to_list() == ["conversation_id_present"] * 2


# ---------------------------------------------------------------- pipeline.sources.contrib


def _sidecar(tmp_path: Path, text: str, data: str = "<human> hi\n<bot> hello\n") -> ContribFile:
    (tmp_path / "a.txt").write_text(data, encoding="utf-8")
    (tmp_path / "a.yaml").write_text(text, encoding="utf-8")
    return parse_sidecar(tmp_path / "a.txt", tmp_path / "a.yaml")


def test_the_us_spelling_license_is_read_as_licence(tmp_path: Path) -> None:
    """Kills dropping `meta["licence"] = meta.pop("license")`: a sidecar with `license:` (the US
    spelling CONTRIBUTING.md accepts) would be refused as having no licence."""
    cf = _sidecar(tmp_path, "license: MIT\ncommercial: true\ndescription: d\n")
    assert (cf.licence, cf.commercial, cf.format) == ("MIT", True, "nanochatgpt")


def test_nesting_one_past_the_limit_is_refused_as_nesting(tmp_path: Path) -> None:
    """Kills `depth > SIDECAR_MAX_DEPTH` -> `depth > SIDECAR_MAX_DEPTH + 1`: the sidecar's mapping
    and eight lists are nine levels, one past the limit; eight levels pass that check (and are
    refused for what they hold instead)."""
    base = "licence: MIT\ncommercial: true\ndescription: "
    with pytest.raises(SourceError, match=r"a\.yaml:3: nested more than 8 levels deep"):
        _sidecar(tmp_path, base + "[" * 8 + "x" + "]" * 8 + "\n")
    with pytest.raises(SourceError) as caught:
        _sidecar(tmp_path, base + "[" * 7 + "x" + "]" * 7 + "\n")
    assert "nested" not in str(caught.value)


def test_the_licence_is_recorded_without_surrounding_space(tmp_path: Path) -> None:
    """Kills `str(meta["licence"]).strip()` -> `str(meta["licence"])`: `licence: "MIT "` passes the
    registry's check, and the rows, stats.json and NOTICE.md must say `MIT`, not `MIT `."""
    assert _sidecar(tmp_path, 'licence: " MIT "\ncommercial: true\ndescription: d\n').licence == "MIT"


@pytest.mark.parametrize(("char", "name"), [("\u2029", "PARAGRAPH SEPARATOR"), ("\u2028", "LINE SEPARATOR")])
def test_an_attribution_with_a_unicode_break_is_refused(tmp_path: Path, char: str, name: str) -> None:
    """Kills dropping "Zp" from one_line_text's refused categories: a paragraph separator would
    break the credit NOTICE.md reproduces as one line. The message names the character and where."""
    text = f'licence: MIT\ncommercial: true\ndescription: d\nattribution: "ab{char}c"\n'
    with pytest.raises(
        SourceError, match=rf"`attribution:` must be one line.*character 3 is U\+202[89] \({name}\)"
    ):
        _sidecar(tmp_path, text.replace(char, f"\\u{ord(char):04x}"))


def test_utf16_text_without_a_byte_order_mark_is_refused(tmp_path: Path) -> None:
    """Kills the NUL threshold `> len(head) // 4` -> `> len(head) // 2`: ASCII text saved as UTF-16
    LE without a mark has a NUL in exactly half its bytes, and must be named as UTF-16, not read as
    UTF-8 lines of format errors."""
    (tmp_path / "a.txt").write_bytes("<human> hi\n<bot> hello\n".encode("utf-16-le"))
    (tmp_path / "a.yaml").write_text("licence: MIT\ncommercial: true\ndescription: d\n")
    with pytest.raises(
        SourceError, match=r"a\.txt: the file is UTF-16 or UTF-32 \(every other byte is a NUL"
    ):
        scan_contrib(tmp_path)


def test_an_unknown_field_lists_the_known_ones_once(tmp_path: Path) -> None:
    """Kills listing SIDECAR_FIELDS whole in the message: `license` is the other spelling of
    `licence`, not a field of its own, and is left out of the list."""
    with pytest.raises(SourceError) as caught:
        _sidecar(tmp_path, "licence: MIT\ncommercial: true\ndescription: d\nlicense_url: x\n")
    assert str(caught.value).endswith(
        "(known: licence, commercial, commercial_reason, description, format, attribution)"
    )


def test_the_commercial_reason_is_kept(tmp_path: Path) -> None:
    """Kills `commercial_reason=meta.get("commercial_reason")` -> `None`: the sidecar's reason is
    what the file's record carries on."""
    cf = _sidecar(
        tmp_path, "licence: MIT\ncommercial: false\ncommercial_reason: author asked\ndescription: d\n"
    )
    assert cf.commercial_reason == "author asked"
