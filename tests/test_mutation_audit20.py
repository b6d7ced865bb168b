"""Tests from mutation audit 20 (sources.readers' parquet bounds, tokenview's CLI, the nanochatgpt
adapter and adapters/_lines) and the letter case of data file suffixes: each mutation test kills a
hand-made mutant that the suite let through; its docstring names the mutation."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest
from test_adapters import _spec

from pipeline.sources.adapters import get_adapter
from pipeline.sources.normalize import normalize_rows


def _read(adapter: str, folder: Path, options: dict | None = None):
    return normalize_rows(get_adapter(adapter)(folder, _spec(adapter, options), {}), max_turn_chars=16_000)


def _texts(result) -> list[str]:
    return result.turns.get_column("text").to_list()


# ---------------------------------------------------------------- suffixes in any letter case
# A file's suffix names its format whatever its letter case (Windows tools write X.JSONL, X.TXT):
# upstream renaming train.jsonl to TRAIN.JSONL must not make an adapter skip the file without a word.


def test_data_files_takes_a_suffix_in_any_letter_case(tmp_path: Path) -> None:
    """Fix: readers.data_files compared suffixes case-sensitively, so an upstream `B.JSONL` (or
    `c.Jsonl.GZ`) was no data file: every adapter skipped it silently, its rows lost."""
    from pipeline.sources.readers import data_files

    for name in ("a.jsonl", "B.JSONL", "c.Jsonl.GZ", "d.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in data_files(tmp_path, (".jsonl",))] == ["B.JSONL", "a.jsonl", "c.Jsonl.GZ"]


def test_a_gz_suffix_in_capitals_is_decompressed(tmp_path: Path) -> None:
    """Fix: readers.open_binary and data_name took only a lower-case `.gz` for gzip, so `X.TXT.GZ`
    was read as its compressed bytes: one line of binary noise quarantined, the file's lines lost."""
    from pipeline.sources.readers import data_name, iter_lines

    path = tmp_path / "X.TXT.GZ"
    path.write_bytes(gzip.compress(b"one\ntwo\n"))
    assert data_name(path) == "X.TXT"
    assert [r.value for r in iter_lines(path)] == ["one", "two"]


def test_table_records_pick_the_reader_by_a_suffix_in_any_letter_case(tmp_path: Path) -> None:
    """Fix: readers.iter_table_records matched `.csv`/`.parquet` case-sensitively, so `T.CSV` went to
    the JSON reader (one json_parse quarantine for the whole file), and iter_json_records read
    `J.JSONL` as one JSON document (which JSON lines are not)."""
    from pipeline.sources.readers import iter_table_records

    (tmp_path / "T.CSV").write_text("a,b\n1,2\n", encoding="utf-8")
    pl.DataFrame({"a": [1]}).write_parquet(tmp_path / "P.PARQUET")
    (tmp_path / "J.JSONL").write_text('{"a": 1}\n{"a": 2}\n', encoding="utf-8")
    assert [r.value for r in iter_table_records(tmp_path / "T.CSV")] == [{"a": "1", "b": "2"}]
    assert [r.value for r in iter_table_records(tmp_path / "P.PARQUET")] == [{"a": 1}]
    assert [r.value for r in iter_table_records(tmp_path / "J.JSONL")] == [{"a": 1}, {"a": 2}]


def test_an_adapter_reads_a_data_file_whose_suffix_is_in_capitals(tmp_path: Path) -> None:
    """Fix: the nanochatgpt adapter (read_each_file over data_files) found no `.txt` in `CHAT.TXT`
    and read nothing, without a quarantine or a word."""
    (tmp_path / "CHAT.TXT").write_text("<human> hi <endOfText>\n<bot> hello <endOfText>\n", encoding="utf-8")
    assert _texts(_read("nanochatgpt", tmp_path)) == ["hi", "hello"]


def test_oasst1_and_empathetic_dialogues_read_capitalised_suffixes(tmp_path: Path) -> None:
    """Fix: oasst1 filtered data_files again with a case-sensitive suffix test, and
    empathetic_dialogues chose its CSV reader by one (`E.CSV` went to the parquet reader)."""
    oasst, ed = tmp_path / "oasst", tmp_path / "ed"
    oasst.mkdir()
    ed.mkdir()
    msgs = [
        {"message_id": "a", "parent_id": None, "message_tree_id": "t", "role": "prompter", "text": "hi"},
        {
            "message_id": "b",
            "parent_id": "a",
            "message_tree_id": "t",
            "role": "assistant",
            "text": "yo",
            "rank": 0,
        },
    ]
    (oasst / "M.JSONL").write_text("".join(json.dumps(m) + "\n" for m in msgs), encoding="utf-8")
    assert _texts(_read("oasst1", oasst)) == ["hi", "yo"]
    (ed / "E.CSV").write_text(
        "conv_id,utterance_idx,context,prompt,speaker_idx,utterance\nc1,1,x,p,1,hello\nc1,2,x,p,2,there\n",
        encoding="utf-8",
    )
    assert _texts(_read("empathetic_dialogues", ed)) == ["hello", "there"]


# ---------------------------------------------------------------- readers: parquet bounds


def test_a_map_slice_counts_only_its_own_entries() -> None:
    """Mutation readers._list_entries: the MapArray's `.slice(start, end - start)` dropped, so a slice
    of a map column (a batch's rows) counted every entry of the whole array: a row of two short
    strings counted the 1,000-character keys of its neighbours too, and a file whose batches are
    slices could be refused as a parquet bomb (its rows quarantined) for text it does not hold."""
    import pyarrow as pa

    from pipeline.sources.readers import _dense_nbytes, _list_entries

    kind = pa.map_(pa.string(), pa.string())
    whole = pa.array([[("a" * 1000, "x")], [("k", "v")], [("b" * 1000, "y")]], type=kind)
    alone = pa.array([[("k", "v")]], type=kind)
    assert [e.to_pylist() for e in _list_entries(whole.slice(1, 1))] == [["k"], ["v"]]
    assert _dense_nbytes(whole.slice(1, 1)) == _dense_nbytes(alone) < 100


def _dictionary_file(path: Path, column: list[str]) -> Path:
    """A parquet file of one dictionary-encoded text column `t`, in row groups of 4 rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"t": column}), path, row_group_size=4)
    return path


def test_expanding_columns_follow_the_longest_value_of_every_row_group(tmp_path: Path) -> None:
    """Mutations readers._expanding_columns: `longest = max([longest, *lengths])` -> the last row
    group's longest only, and `values` summed over the row groups -> their max. Either way a column
    whose 100-byte dictionary value (8 rows, 800 bytes expanded) sits in the first of two row groups
    was read expanded, past the limit (500 here) the dictionary read exists to count first."""
    import pyarrow.parquet as pq

    from pipeline.sources.readers import _expanding_columns

    path = _dictionary_file(tmp_path / "long.parquet", ["x" * 100] * 4 + ["y"] * 4)
    assert _expanding_columns(path, pq.ParquetFile(path), 500) == ["t"]


def test_a_column_whose_values_are_short_is_not_read_as_a_dictionary(tmp_path: Path) -> None:
    """Mutations readers._expanding_columns: the final `longest * values(name) > limit` filter dropped
    (or flipped). A column the footer cannot clear (8 values, chunks of 127 bytes: 1,016 > 500) but
    whose longest value is 10 bytes (80 expanded) was read as Arrow dictionaries, which hash plain
    pages value by value (twice the read time of ordinary text, benchmarks.parquet_read)."""
    import pyarrow.parquet as pq

    from pipeline.sources.readers import _expanding_columns

    path = _dictionary_file(tmp_path / "short.parquet", [f"value{i:05d}" for i in range(8)])
    assert _expanding_columns(path, pq.ParquetFile(path), 500) == []
    assert _expanding_columns(path, pq.ParquetFile(path), 50) == ["t"]  # 80 > 50: counted first


def test_dense_nbytes_counts_an_offset_for_every_value_a_row_refers_to() -> None:
    """Mutations readers._dense_nbytes: `+ 8 * len(array)` dropped for a dictionary's text, and for
    a list's rows; `values.take(array.indices)` -> `values` for a dictionary of numbers. 100,000 references to an empty string (or 100,000 empty lists) counted 0 bytes,
    where the rows read take an offset each at least: a file of such rows passed the limit unseen."""
    import pyarrow as pa

    from pipeline.sources.readers import _dense_nbytes

    refs = pa.DictionaryArray.from_arrays(pa.array([0] * 100_000, pa.int32()), pa.array([""]))
    assert _dense_nbytes(refs) == 8 * 100_000
    lists = pa.array([[]] * 100_000, pa.list_(pa.string()))
    assert _dense_nbytes(lists) >= 8 * 100_000
    # a dictionary of numbers counts each reference too (`values.take(indices)`), not its one value
    numbers = pa.DictionaryArray.from_arrays(pa.array([0] * 100_000, pa.int32()), pa.array([7], pa.int64()))
    assert _dense_nbytes(numbers) == 8 * 100_000


@pytest.mark.parametrize("shape", ["struct", "list"])
def test_expanding_columns_find_dictionaries_inside_structs_and_lists(tmp_path: Path, shape: str) -> None:
    """Mutations readers._dictionaries: the StructArray (or the list) branch dropped. The probe then
    found no dictionary value in a nested text column, so one whose 100-byte value repeats past the
    limit was read expanded, uncounted, as the flat column of the same values is not."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.sources.readers import _expanding_columns

    values = ["x" * 100] * 4 + ["y"] * 4
    column = (
        pa.StructArray.from_arrays([pa.array(values)], names=["t"])
        if shape == "struct"
        else pa.array([[v] for v in values])
    )
    path = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"c": column}), path, row_group_size=4)
    assert _expanding_columns(path, pq.ParquetFile(path), 500) == [
        "c.t" if shape == "struct" else "c.list.element"
    ]


@pytest.mark.parametrize("shape", ["struct", "map", "list"])
def test_nested_dictionary_columns_are_read_across_row_groups(tmp_path: Path, shape: str) -> None:
    """Mutations readers._dense: the dictionary (or struct, or map) branch returning `kind` as it is;
    readers.iter_parquet: a batch per row group only `if expanding` (`or dense != schema` dropped).
    A column stored as a dictionary inside a struct, map or list (pandas categoricals, or Arrow
    dictionaries, keep that type in the file's schema) then came in batches spanning row groups, which
    Arrow refuses ("Nested data conversions not implemented for chunked array outputs"): the whole
    file was one `parquet_read` quarantine, all its 12 rows lost."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.sources.readers import iter_parquet

    words = pa.array(["x", "y", "z", "x"] * 3).dictionary_encode()
    column = {
        "struct": lambda: pa.StructArray.from_arrays([words], names=["t"]),
        "map": lambda: pa.MapArray.from_arrays(pa.array(range(13), pa.int32()), pa.array(["k"] * 12), words),
        "list": lambda: pa.ListArray.from_arrays(pa.array(range(13), pa.int32()), words),
    }[shape]()
    path = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"c": column}), path, row_group_size=5)
    records = list(iter_parquet(path))
    assert all(r.ok for r in records) and len(records) == 12
    values = [r.value["c"] for r in records]
    expected = {"struct": {"t": "y"}, "map": [("k", "y")], "list": ["y"]}[shape]
    assert values[5] == expected  # row 6 is in the second row group


# ---------------------------------------------------------------- tokenview's command line


@pytest.fixture
def tokens_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """test_tokenview's bare project: three conversations' shards and their dataset rows."""
    from test_tokenview import write_project

    monkeypatch.setenv("NANOCHATGPT_ROOT", str(write_project(tmp_path)))
    return tmp_path


@pytest.mark.parametrize("extra", [["--index", "2"], ["--count", "2"]])
def test_windows_refuse_index_and_count(
    tokens_project: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    """Mutations tokenview._run_windows: `or args.index` and `or args.count != 1` dropped from the
    refusal. --windows draws windows as the trainer does; an --index or --count given with it was
    ignored without a word, the user reading drawn windows as the conversations they asked for."""
    from pipeline import cli

    assert cli.main(["tokens", "--windows", "1", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tokens: --windows takes 1 or more") and "--index or --count" in err


def test_a_negative_index_is_refused_as_a_usage_error(
    tokens_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutation tokenview.run: `args.index < 0 or` dropped. `--index -1` then reached islice, whose
    ValueError ("Indices for islice() must be None or an integer") was printed as a failure (exit 1)
    instead of the usage error (exit 2) naming the option."""
    from pipeline import cli

    assert cli.main(["tokens", "--index", "-1"]) == 2
    assert capsys.readouterr().err == "tokens: --index takes 0 or more, --count 1 or more\n"


# ---------------------------------------------------------------- conversation keys of same-stem files


def _ids(result) -> dict[str, list[str]]:
    """conversation id -> its turns' texts, in turn order."""
    out: dict[str, list[str]] = {}
    for cid, text in result.turns.select("conversation_id", "text").iter_rows():
        out.setdefault(cid, []).append(text)
    return out


def test_files_sharing_a_stem_keep_their_conversations_apart(tmp_path: Path) -> None:
    """Bug: adapters/_records.read_each_file keyed conversations by the file's path without its suffix,
    so chat.json and chat.jsonl both gave `chat:1`, and their first records were merged into one
    conversation of four turns (q2 a2 q1 a1), silently. With suffixes read in any letter case,
    chat.txt and chat.TXT collided the same way. Such files are now keyed by their whole path."""
    msgs = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]
    (tmp_path / "chat.jsonl").write_text(json.dumps({"messages": msgs}) + "\n", encoding="utf-8")
    other = [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]
    (tmp_path / "chat.json").write_text(json.dumps([{"messages": other}]), encoding="utf-8")
    (tmp_path / "solo.jsonl").write_text(json.dumps({"messages": msgs}) + "\n", encoding="utf-8")
    assert _ids(_read("openai", tmp_path)) == {
        "openai:chat.json:1": ["q2", "a2"],
        "openai:chat.jsonl:1": ["q1", "a1"],
        "openai:solo:1": ["q1", "a1"],  # a stem of its own keeps its key
    }
    text = tmp_path / "text"
    text.mkdir()
    (text / "a.txt").write_text("<human> hi <endOfText>\n<bot> one <endOfText>\n", encoding="utf-8")
    (text / "a.TXT").write_text("<human> yo <endOfText>\n<bot> two <endOfText>\n", encoding="utf-8")
    assert _ids(_read("nanochatgpt", text)) == {
        "nanochatgpt:a.TXT:1": ["yo", "two"],
        "nanochatgpt:a.txt:1": ["hi", "one"],
    }


def test_chatterbot_files_sharing_a_stem_keep_their_conversations_apart(tmp_path: Path) -> None:
    """Bug: chatterbot keyed conversations by the file's path without its suffix, so x.yml and
    x.yaml both gave `x:1` and their first dialogues were merged into one conversation."""
    (tmp_path / "x.yml").write_text("conversations:\n- - hi\n  - one\n", encoding="utf-8")
    (tmp_path / "x.yaml").write_text("conversations:\n- - yo\n  - two\n", encoding="utf-8")
    ids = _ids(_read("chatterbot", tmp_path))
    assert sorted(ids.values()) == [["hi", "one"], ["yo", "two"]]


def test_without_a_train_variant_the_full_variant_is_shown(
    tokens_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutation tokenview.run: the default variant `"full"` (params.yaml without train.variant)
    changed. train's own default is full; another default showed (or failed to find) other shards."""
    from pipeline import cli

    (tokens_project / "params.yaml").write_text("train: {}\n")
    assert cli.main(["tokens", "--color", "never"]) == 0
    assert "== data/tokens/full/train conversation 0 of 3" in capsys.readouterr().out


def test_windows_of_another_variant_are_not_step_ones_rows(
    tokens_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutation tokenview.training_windows: `in_step_one` without `(variant or cfg.variant) ==
    cfg.variant`. Windows drawn from another variant's shards with train.seed were called "row r of
    step 1's batch", rows the run never trained on (it trains on train.variant's shards)."""
    import shutil

    from test_tokenview import ROOT

    from pipeline import cli
    from pipeline.params import load_params

    shutil.copy(ROOT / "params.yaml", tokens_project / "params.yaml")  # the real profile and seed
    trained = load_params(tokens_project / "params.yaml")["train"].get("variant", "full")
    other = "commercial" if trained == "full" else "full"
    tokens = tokens_project / "data" / "tokens"
    if trained != "full":
        shutil.copytree(tokens / "full", tokens / trained)
    shutil.copytree(tokens / "full", tokens / other, dirs_exist_ok=True)
    flags = {}
    for variant in (trained, other):
        assert cli.main(["tokens", "--windows", "1", "--variant", variant, "--json"]) == 0
        flags[variant] = json.loads(capsys.readouterr().out)[0]["first_step"]
    assert flags == {trained: True, other: False}


def test_windows_with_an_unknown_training_setting_say_which(
    tokens_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutation tokenview._run_windows: KeyError dropped from the caught errors. TrainConfig refuses
    an unknown train setting with a KeyError, which then ended `tokens --windows` in a traceback
    instead of one line naming the setting."""
    from pipeline import cli

    params = "train:\n  variant: full\n  profile: p\n  block_sise: 64\ntrain_profiles:\n  p: {}\n"
    (tokens_project / "params.yaml").write_text(params)
    assert cli.main(["tokens", "--windows", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tokens: ") and "train.block_sise: unknown training setting" in err


def test_windows_of_an_empty_train_split_say_so(
    tokens_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutation tokenview.training_windows: the `n_conversations == 0` refusal dropped. The sampler
    then failed on a split of no conversation with its own words, naming neither split nor cause."""
    import shutil

    from test_tokenview import ROOT

    from pipeline import cli
    from pipeline.shards import ShardWriter

    shutil.copy(ROOT / "params.yaml", tokens_project / "params.yaml")
    split = tokens_project / "data" / "tokens" / "full" / "train"
    shutil.rmtree(split)
    ShardWriter(split, 1000).close()
    assert cli.main(["tokens", "--windows", "1", "--variant", "full"]) == 1
    assert capsys.readouterr().err == "tokens: data/tokens/full/train: holds no conversation\n"


def test_json_keeps_text_readable_and_the_header_states_the_loss_share(
    tokens_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutations tokenview._show: jsonout.dumps -> json.dumps (`café 🙂` became `caf\\u00e9
    \\ud83d\\ude42`, which jsonout's docstring says --json keeps readable), and
    format_conversation's loss share changed (no test read the `(NN%)` of the header)."""
    from pipeline import cli
    from pipeline.tokenizer import encode_conversations

    assert cli.main(["tokens", "--json"]) == 0
    out = capsys.readouterr().out
    assert "hello! 🙂 café" in out and "\\u00e9" not in out
    assert cli.main(["tokens", "--color", "never"]) == 0
    head = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("== "))
    enc = encode_conversations([None], [2], [False, True], ["hi there", "hello! 🙂 café"])
    share = 100 * int(enc.mask.sum()) / len(enc.ids)
    assert head.endswith(f"{int(enc.mask.sum())} in the loss ({share:.0f}%)")


# ---------------------------------------------------------------- nanochatgpt adapter


def test_colon_turns_name_only_kept_turns(tmp_path: Path) -> None:
    """Mutation nanochatgpt.colon_turns: the `check is null` filter dropped. A quarantined turn (here
    one never closed) was counted among the turns `check` warns start with ':', though the row is not
    kept and its own quarantine already names it."""
    from pipeline.sources.adapters.nanochatgpt import colon_turns

    path = tmp_path / "c.txt"
    path.write_text("<human>: kept <endOfText>\n<bot>: never closed\n", encoding="utf-8")
    assert colon_turns(path, "c.txt") == ["c.txt:1"]


# ---------------------------------------------------------------- adapters/_lines


def test_a_long_text_before_colon_tab_is_no_speaker_label(tmp_path: Path) -> None:
    """Mutation _lines.SPEAKER: the label's `{1,24}` -> `{1,}`. A sentence ending in ":<TAB>" was then
    read as a speaker's name: its words were lost from the text and its "speaker" broke the A/B
    alternation of the unlabeled lines around it."""
    from pipeline.sources.adapters._lines import read_line_dialogues
    from pipeline.sources.rows import RawRows

    path = tmp_path / "t.txt"
    line = "and the thing I said next was this:\tyes"
    path.write_text(f"A:\thi\n{line}\n", encoding="utf-8")
    rows = RawRows("s", "MIT", True)
    read_line_dialogues(path, "t.txt", rows)
    frame = rows.frame()
    assert frame.get_column("text").to_list() == ["hi", line]
    assert frame.get_column("speaker").to_list() == ["A", "B"]


@pytest.mark.parametrize("pairs", [False, True])
def test_an_unlabeled_line_after_a_labeled_one_is_the_other_speaker(tmp_path: Path, pairs: bool) -> None:
    """Mutations _lines._add: `"AB"[(position - 1) % 2]` -> `"AB"[position % 2]`, and _read_pairs'
    position `rec.line - first + 1` -> `+ 2`. The reply after a post labeled `A:` was then speaker A
    too, and normalize merged post and reply into one turn: a conversation of one speaker, lost."""
    from pipeline.sources.adapters._lines import read_line_dialogues
    from pipeline.sources.rows import RawRows

    path = tmp_path / "t.txt"
    path.write_text("A:\thow are you?\nfine, thanks\n", encoding="utf-8")
    rows = RawRows("s", "MIT", True)
    read_line_dialogues(path, "t.txt", rows, pairs=pairs)
    assert rows.frame().get_column("speaker").to_list() == ["A", "B"]
