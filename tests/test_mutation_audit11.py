"""Tests from mutation audit 11 (hfexport, runlog, sources.readers, sources.table, ...): each kills a
hand-made mutant that the suite let through; its docstring names the mutation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pipeline import checkpoint, hfexport
from pipeline.model import GPT, GPTConfig
from pipeline.tokenizer import BOT, BOT_ID, END_OF_TURN, END_OF_TURN_ID, HUMAN, HUMAN_ID

# ---------------------------------------------------------------- hfexport


def _tiny(block_size: int = 48) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=block_size, n_layer=1, n_head=2, n_embd=16)).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model of block_size 48 (not GPT-2's 1024) exported once for the checks below."""
    out = tmp_path_factory.mktemp("hf") / "hf"
    hfexport.export_hf(_tiny(48), out)
    return out


def test_the_exported_config_states_the_context_length_in_both_gpt2_keys(exported: Path) -> None:
    """Mutation hfexport.hf_config: "n_ctx": cfg.block_size -> cfg.block_size + 1. transformers reads
    n_positions, but other GPT-2 readers (GGUF converters among them) take n_ctx as the context
    length: both must be the model's block size."""
    config = json.loads((exported / "config.json").read_text(encoding="utf-8"))
    assert config["n_positions"] == config["n_ctx"] == 48


def test_the_exported_tokenizer_truncates_at_the_models_block_size(exported: Path) -> None:
    """Mutation hfexport.tokenizer_files: "model_max_length": block_size -> 1024 (GPT-2's). A
    tokenizer that allowed more tokens than the model has positions let truncation=True make inputs
    the model cannot take."""
    config = json.loads((exported / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["model_max_length"] == 48
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(exported)
    assert tok.model_max_length == 48
    assert len(tok("word " * 200, truncation=True)["input_ids"]) == 48


def test_added_tokens_json_lists_every_chat_token_past_gpt2s_vocabulary(exported: Path) -> None:
    """Mutation hfexport.tokenizer_files: `if i >= GPT2_VOCAB` -> `if i > GPT2_VOCAB`, which dropped
    <human> (id 50257, GPT-2's vocabulary size) from added_tokens.json, the file older (slow)
    tokenizer loaders take the added tokens from; <|endoftext|> is GPT-2's own and not listed."""
    added = json.loads((exported / "added_tokens.json").read_text(encoding="utf-8"))
    assert added == {HUMAN: HUMAN_ID, BOT: BOT_ID, END_OF_TURN: END_OF_TURN_ID}


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        ({"params": True}, r"metrics\.json: params true is not what train writes"),
        ({"data_changed": "no"}, r'metrics\.json: data_changed "no" is not what train writes'),
    ],
    ids=["params-bool", "data_changed-text"],
)
def test_export_run_refuses_a_metric_of_a_type_train_never_writes(
    tmp_path: Path, wrong: dict, message: str
) -> None:
    """Mutations hfexport.export_run: `isinstance(value, bool) or` dropped from the metrics type check
    (a bool is an int to isinstance, so `"params": true` would pass and the card would show "True"
    parameters), and the `data_changed` bool check skipped (`if False:`; a string such as "no" is
    truthy: the card would then call the weights fit for no commercial use on a value train never
    wrote). The export says to re-run train instead, and writes nothing."""
    checkpoint.save_model(_tiny(), tmp_path / "ckpt")
    metrics = {"params": 1, "init_from": "scratch", "iters": 2, "tokens_per_iter": 8}
    metrics |= {"initial_val_loss": 9.0, "val_loss": 8.0, **wrong}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    tokens = tmp_path / "tokens" / "full"
    tokens.mkdir(parents=True)
    with pytest.raises(ValueError, match=message):
        hfexport.export_run(tmp_path / "ckpt", tmp_path / "hf", tmp_path / "metrics.json", tokens)
    assert not (tmp_path / "hf").exists()


def test_the_card_of_weights_that_learned_an_earlier_build_does_not_allow_commercial_use(
    tmp_path: Path,
) -> None:
    """Mutation hfexport.export_run: ModelFacts(earlier_data=earlier_data) -> earlier_data=False. The
    LICENSE.md said "not established" but the card (README.md, its `license:` header included) said
    commercial use allowed for weights resumed across a change of their training data."""
    import yaml

    checkpoint.save_model(_tiny(), tmp_path / "ckpt")
    metrics = {"params": 1, "init_from": "scratch", "iters": 2, "tokens_per_iter": 8}
    metrics |= {"initial_val_loss": 9.0, "val_loss": 8.0, "data_changed": True}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    tokens = tmp_path / "tokens" / "commercial"
    tokens.mkdir(parents=True)
    (tokens / "sources.csv").write_text("source,tokens,loss_tokens,conversations\nmit,100,40,3\n")
    stats = {"sources": {"mit": {"licence": "MIT", "commercial": True, "kind": "package"}}}
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    out = tmp_path / "hf"
    hfexport.export_run(tmp_path / "ckpt", out, tmp_path / "metrics.json", tokens, tmp_path / "stats.json")
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "**Commercial use: not established.**" in card and "**Commercial use: allowed.**" not in card
    assert yaml.safe_load(card.split("---\n")[1])["license"] == "unknown"


def test_the_exported_tokenizer_decodes_the_text_as_it_was_spelled(exported: Path) -> None:
    """Mutation hfexport.tokenizer_files: "clean_up_tokenization_spaces": False -> True. transformers
    4.x applies that clean-up to GPT-2's BPE too, dropping the space before , . ? ! and in " n't" /
    " 's", so decode(encode(text)) was not the text (our engine's decode is). transformers 5 ignores
    the flag for BPE tokenizers, so the installed one cannot show it: the file says it instead."""
    config = json.loads((exported / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["clean_up_tokenization_spaces"] is False
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(exported)
    text = "Hi , there . Do n't ask ? It 's fine !"
    assert tok.decode(tok(text)["input_ids"]) == text


# ---------------------------------------------------------------- sources.readers


def test_a_last_line_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    """Mutation readers._bounded_lines: `len(chunk) <= cap` -> `len(chunk) < cap`. A file's last line
    (no LF after it) of exactly `max_bytes` bytes was quarantined as over-long; it is within the limit."""
    from pipeline.sources.readers import iter_lines

    path = tmp_path / "a.txt"
    path.write_bytes(b"ab\nabcde")
    got = [(r.line, r.value, r.check) for r in iter_lines(path, max_bytes=5)]
    assert got == [(1, "ab", None), (2, "abcde", None)]
    path.write_bytes(b"ab\nabcdef")  # one byte more is over it
    assert [r.check for r in iter_lines(path, max_bytes=5)] == [None, "line_length"]


def test_a_byte_order_mark_at_the_start_of_any_line_is_not_read_as_text(tmp_path: Path) -> None:
    """Mutations readers.iter_lines: the BOM strip skipped (`if chunk.startswith(BOM)` -> `if False`),
    and the CR of a CR LF ending kept (`.rstrip(b"\\r")` dropped: "hello\\r" was the first line).
    A JSONL file saved by a Windows editor (BOM first), or two such files joined by `cat` (a BOM at
    the start of a later line), had those lines quarantined as broken JSON, and a text file's first
    line began with an invisible U+FEFF."""
    from pipeline.sources.readers import BOM, iter_jsonl, iter_lines

    path = tmp_path / "a.jsonl"
    path.write_bytes(BOM + b'{"a": 1}\n' + BOM + b'{"b": 2}\n')
    assert [(r.value, r.check) for r in iter_jsonl(path)] == [({"a": 1}, None), ({"b": 2}, None)]
    text = tmp_path / "a.txt"
    text.write_bytes(BOM + b"hello\r\nworld\n")
    assert [r.value for r in iter_lines(text)] == ["hello", "world"]


def test_blank_lines_in_json_lines_are_not_records(tmp_path: Path) -> None:
    """Mutation readers.iter_jsonl: the blank-line skip dropped. An empty or whitespace-only line
    (a trailing blank line, records separated by one) was quarantined as a broken JSON record."""
    from pipeline.sources.readers import iter_jsonl

    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"a": 1}\n\n  \t\n{"b": 2}\n\n')
    assert [(r.line, r.value, r.check) for r in iter_jsonl(path)] == [
        (1, {"a": 1}, None),
        (4, {"b": 2}, None),
    ]


def test_a_record_with_several_repeated_keys_is_named_by_the_first_in_the_file(tmp_path: Path) -> None:
    """Mutations readers.first_repeat: `reversed(item.values())` -> `item.values()`, and
    `reversed(item)` -> `item`. The walk is depth-first from a stack: without the reversal it
    reached the last object first, and the reason named a later key than the one to fix first."""
    from pipeline.sources.readers import iter_json_records

    path = tmp_path / "a.json"
    path.write_text(
        '[{"x": {"a": 1, "a": 2}, "y": {"b": 1, "b": 2}}, {"m": [{"c": 1, "c": 2}, {"d": 1, "d": 2}]}]'
    )
    got = [(r.check, r.reason) for r in iter_json_records(path)]
    assert [check for check, _ in got] == ["duplicate_key", "duplicate_key"]
    assert got[0][1].startswith("key 'a' is given twice") and got[1][1].startswith("key 'c' is given twice")


def test_a_json_file_holding_json_lines_is_read_as_json_lines(tmp_path: Path) -> None:
    """Mutation readers.iter_json_records: the "Extra data" fallback to iter_jsonl skipped. A .json
    file that holds one object a line (common on the Hub) became one `json_parse` record for the
    whole file instead of its records."""
    from pipeline.sources.readers import iter_json_records

    path = tmp_path / "a.json"
    path.write_text('{"a": 1}\n{"b": 2}\n')
    assert [(r.line, r.value, r.check) for r in iter_json_records(path)] == [
        (1, {"a": 1}, None),
        (2, {"b": 2}, None),
    ]


def test_a_long_repeated_key_is_cut_short_in_the_reason() -> None:
    """Mutation readers.repeated_key_reason: `len(key) <= 60` -> always the whole key. A repeated key
    of any length (a whole turn's text used as a key) went into the quarantine reason in full."""
    from pipeline.sources.readers import repeated_key_reason

    assert repeated_key_reason("k" * 60).startswith("key '" + "k" * 60 + "' is given twice")
    long = repeated_key_reason("k" * 61 + "tail")
    assert long.startswith("key '" + "k" * 60 + "'… is given twice") and "tail" not in long


def test_a_json_record_holding_invalid_utf8_is_quarantined_alone(tmp_path: Path) -> None:
    """Mutation readers.iter_json_records: `damaged = ...` -> `damaged = False`. Invalid UTF-8 inside
    a string of a .json list reached the rows as lone surrogates (which the parquet writer cannot
    encode) instead of quarantining that record (`utf8`); the records around it are read."""
    from pipeline.sources.readers import iter_json_records

    path = tmp_path / "a.json"
    path.write_bytes(b'[{"a": "ok"}, {"a": "bad \xff byte"}, {"a": "\xc3\xa9"}]')
    got = [(r.line, r.value, r.check) for r in iter_json_records(path)]
    assert got == [(1, {"a": "ok"}, None), (2, None, "utf8"), (3, {"a": "\u00e9"}, None)]


def test_a_csv_files_byte_order_mark_is_not_part_of_its_first_column_name(tmp_path: Path) -> None:
    """Mutation readers.iter_csv: encoding "utf-8-sig" -> "utf-8". A CSV saved by Excel starts with a
    BOM, which then began the first column's name ("\\ufeffquestion"): an adapter looking for
    `question` found no such field in any row."""
    from pipeline.sources.readers import BOM, iter_csv

    path = tmp_path / "a.csv"
    path.write_bytes(BOM + b"question,answer\r\nhi,yo\r\n")
    (rec,) = iter_csv(path)
    assert rec.ok and rec.value == {"question": "hi", "answer": "yo"}


def test_a_short_csv_records_text_holds_only_the_fields_it_has(tmp_path: Path) -> None:
    """Mutation readers.iter_csv: the `if v is not None` filter dropped from the joined text. A row with
    fewer fields than the header (csv.DictReader fills the rest with None) was shown as "hi,None",
    a word the file never held, in the record's text (what quarantine shows of it)."""
    from pipeline.sources.readers import iter_csv

    path = tmp_path / "a.csv"
    path.write_text("question,answer\nhi\n")
    (rec,) = iter_csv(path)
    assert rec.raw == "hi" and rec.value == {"question": "hi", "answer": None}


def test_data_files_leave_out_the_manifest_and_everything_under_a_hidden_folder(tmp_path: Path) -> None:
    """Mutations readers.data_files: the manifest.json exclusion dropped, and the hidden-part test
    narrowed to the file's own name (`rel.name.startswith(".")`), and the sort dropped. The download's
    manifest.json, and the licence files it keeps in data/raw/<name>/.licence/, were read as
    conversations; and the files came in the directory's order (creation or hash order), so row
    order, and the build's per-source caps, changed from one machine to another."""
    from pipeline.sources.readers import data_files

    raw = tmp_path / "raw"
    for rel in ("manifest.json", ".licence/LICENSE.txt", "data/.hidden.json", "data/b.jsonl", "a.json"):
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).write_text("{}")
    assert [p.relative_to(raw).as_posix() for p in data_files(raw)] == ["a.json", "data/b.jsonl"]
    names = ["g", "c", "h", "a", "f", "b", "e", "d"]  # made out of order: listed sorted
    for name in names:
        (raw / "data" / f"{name}.json").write_text("{}")
    got = [p.relative_to(raw).as_posix() for p in data_files(raw)]
    assert got == ["a.json", *sorted([*(f"data/{n}.json" for n in names), "data/b.jsonl"])]
    assert got[1:4] == ["data/a.json", "data/b.json", "data/b.jsonl"]


def test_an_invalid_utf8_line_names_the_byte_where_the_damage_starts(tmp_path: Path) -> None:
    """Mutation readers._decode: `e.start` -> `e.end` in the reason. The quarantine pointed one byte
    past the bad one (at the byte after a lone 0xff)."""
    from pipeline.sources.readers import iter_lines

    path = tmp_path / "a.txt"
    path.write_bytes(b"ok\nab\xffcd\n")
    assert [(r.check, r.reason) for r in iter_lines(path)] == [
        (None, None),
        ("utf8", "invalid UTF-8 at byte 2 of the line"),
    ]


def test_a_true_or_false_record_is_named_in_jsons_words() -> None:
    """Mutation readers._JSON_KINDS: the `bool: "true/false"` entry dropped. A record that is `true`
    was called "a JSON bool" (Python's word) in its quarantine reason."""
    from pipeline.sources.readers import json_kind

    assert [json_kind(v) for v in (True, False, 1, None, "s", [])] == [
        "a JSON true/false",
        "a JSON true/false",
        "a JSON number",
        "a JSON null",
        "a JSON string",
        "a JSON list",
    ]


def test_table_records_read_a_csv_file_as_csv(tmp_path: Path) -> None:
    """Mutation readers.iter_table_records: the .csv dispatch dropped. A CSV file (plain or .gz) of a
    table source (oasst1, chatbot_arena, arithmetic, hackernews) was parsed as JSON: one broken
    record for the whole file."""
    import gzip

    from pipeline.sources.readers import iter_table_records

    for name in ("a.csv", "b.csv.gz"):
        path = tmp_path / name
        body = b"q,a\nhi,yo\n"
        path.write_bytes(gzip.compress(body) if name.endswith(".gz") else body)
        assert [(r.line, r.value, r.check) for r in iter_table_records(path)] == [
            (2, {"q": "hi", "a": "yo"}, None)
        ]


# ---------------------------------------------------------------- runlog


def _curve(live: Path, steps: range) -> Path:
    tsv = live / "plots" / "metrics" / "train" / "loss.tsv"
    tsv.parent.mkdir(parents=True, exist_ok=True)
    tsv.write_text("step\tloss\n" + "".join(f"{s}\t{1.0 / s}\n" for s in steps))
    return tsv


def test_a_resumed_run_drops_the_logged_steps_after_its_checkpoint(tmp_path: Path) -> None:
    """Mutations runlog.RunLogger.__init__ (the `trim_plots(live_dir, initial)` call on resume dropped)
    and runlog.trim_plots (`<= step` -> `< step`; the rewrite skipped). A run resumed at step 4 from a
    checkpoint without a plot snapshot (written before snapshots were kept) redoes steps 5-6: the
    rows its killed predecessor logged for them went into the curve twice; step 4's row is kept."""
    from pipeline.runlog import RunLogger

    live, ckpt = tmp_path / "live", tmp_path / "step-00000004"
    ckpt.mkdir()
    tsv = _curve(live, range(1, 7))
    logger = RunLogger(live, is_main=True, total=8, initial=4, resume=True, history=ckpt)
    logger.close()
    assert tsv.read_text() == "step\tloss\n" + "".join(f"{s}\t{1.0 / s}\n" for s in range(1, 5))


def test_a_checkpoints_plot_snapshot_replaces_the_live_plots(tmp_path: Path) -> None:
    """Mutations runlog.restore_plots (the rmtree of the live plots dropped; the summary copy skipped;
    the live folder's mkdir dropped)
    and runlog.snapshot_plots (the plots copy or the summary copy skipped). A run resumed from a
    checkpoint gets back the curves and dvclive summary as they were at that checkpoint, whatever
    the live folder held (a later, killed attempt's rows)."""
    from pipeline.runlog import SUMMARY, restore_plots, snapshot_plots

    first, ckpt = tmp_path / "first", tmp_path / "ckpt"
    ckpt.mkdir()
    want = _curve(first, range(1, 4)).read_text()
    (first / SUMMARY).write_text('{"step": 3}')
    snapshot_plots(first, ckpt)
    later = tmp_path / "later"
    _curve(later, range(1, 9))
    (later / "plots" / "metrics" / "stale.tsv").write_text("step\tstale\n7\t1\n")
    (later / SUMMARY).write_text('{"step": 8}')
    restore_plots(ckpt, later)
    assert (later / "plots/metrics/train/loss.tsv").read_text() == want
    assert not (later / "plots/metrics/stale.tsv").exists()
    assert (later / SUMMARY).read_text() == '{"step": 3}'
    # into a live folder DVC deleted: made anew
    restore_plots(ckpt, tmp_path / "gone")
    assert (tmp_path / "gone" / SUMMARY).read_text() == '{"step": 3}'
    # a checkpoint holding a summary and no curves (a run stopped before its first logged step)
    (ckpt / "plots").rename(tmp_path / "moved")
    restore_plots(ckpt, tmp_path / "gone2")
    assert (tmp_path / "gone2" / SUMMARY).read_text() == '{"step": 3}'


def test_each_logged_value_is_recorded_at_the_step_it_was_logged_for(tmp_path: Path) -> None:
    """Mutation runlog.RunLogger.log: `self.live.step = step` dropped. dvclive then numbers the rows
    itself (0, 1, ...): values logged for steps 5 and 10 were plotted at steps 0 and 1."""
    from pipeline.runlog import RunLogger

    logger = RunLogger(tmp_path / "live", is_main=True, total=10, initial=0, resume=False)
    logger.log(5, {"val/loss": 2.5})
    logger.log(10, {"val/loss": 2.0})
    logger.close()
    rows = (tmp_path / "live/plots/metrics/val/loss.tsv").read_text().splitlines()
    assert [r.split("\t")[0] for r in rows] == ["step", "5", "10"]


# ---------------------------------------------------------------- sources.table


def _contrib_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...]) -> Path:
    """A project in tmp_path (the repository's sources.yaml and params.yaml) whose data/contrib holds
    one MIT-licensed JSONL file per name."""
    import yaml

    repo = Path(__file__).resolve().parents[1]
    for name in ("sources.yaml", "params.yaml"):
        (tmp_path / name).write_text((repo / name).read_text())
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    folder = tmp_path / "data" / "contrib"
    folder.mkdir(parents=True)
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    for name in names:
        (folder / f"{name}.jsonl").write_text(json.dumps({"messages": messages}) + "\n")
        sidecar = {"licence": "MIT", "commercial": True, "description": "test"}
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(sidecar))
    (tmp_path / "data" / "normalized").mkdir(parents=True)
    return tmp_path


def test_a_contributed_files_count_that_is_not_a_whole_number_is_not_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation table._per_file: the `type(entry.get("rows_kept")) is int` filter dropped. A report
    edited by hand (or merged badly) showed "3" or True as a file's rows kept; such an entry is not
    a count, and the file's row shows "-", as for a file not normalized yet."""
    from pipeline.sources.table import source_rows

    root = _contrib_project(tmp_path, monkeypatch, ("a", "b", "c"))
    by_source = {
        "contrib/a": {"rows_kept": "3"},
        "contrib/b": {"rows_kept": True},
        "contrib/c": {"rows_kept": 2},
    }
    report = {"rows_kept": 2, "by_source": by_source}
    (root / "data/normalized/contrib.report.json").write_text(json.dumps(report))
    rows = {r["name"]: r["rows"] for r in source_rows(root)[0]}
    assert (rows["contrib"], rows["contrib/a"], rows["contrib/b"], rows["contrib/c"]) == (2, "-", "-", 2)


def test_a_table_larger_than_its_report_records_is_not_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation table._describes_table: `st_size == recorded` -> `st_size >= recorded`. A turn table
    of another size than its report records, larger as well as smaller, is not the table the
    report counted: its rows are not shown and `sources` names the problem."""
    from pipeline.sources.normalize import OUTPUTS_KEY
    from pipeline.sources.table import source_rows

    root = _contrib_project(tmp_path, monkeypatch, ("a",))
    (root / "data/normalized/contrib.parquet").write_bytes(b"x" * 100)
    for recorded, shown in ((100, 1), (99, "-"), (101, "-")):
        report = {"rows_kept": 1, OUTPUTS_KEY: {"turns": {"bytes": recorded}}}
        (root / "data/normalized/contrib.report.json").write_text(json.dumps(report))
        rows, problems = source_rows(root)
        assert {r["name"]: r["rows"] for r in rows}["contrib"] == shown, recorded
        assert any("contrib.parquet is not the table its report" in p for p in problems) == (shown == "-")


def test_a_source_read_from_its_local_path_says_so_in_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation table.source_rows: the "(local_path)" mark on `kind` dropped. A source read from a
    folder of this machine instead of its registry location looked, in `sources`, like a download."""
    import yaml

    from pipeline.sources.table import source_rows

    root = _contrib_project(tmp_path, monkeypatch, ("a",))
    registry = yaml.safe_load((root / "sources.yaml").read_text())
    registry["contrib"]["local_path"] = "data/contrib"
    (root / "sources.yaml").write_text(yaml.safe_dump(registry))
    kinds = {r["name"]: r["kind"] for r in source_rows(root)[0]}
    assert kinds["contrib"] == "contrib (local_path)" and kinds["contrib/a"] == "contrib file (openai)"
    assert kinds["oasst1"] == "hf_dataset"


def test_the_files_of_a_contrib_source_left_out_of_params_are_not_enabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation table.source_rows: a contributed file's "enabled" -> True. With `contrib` left out of
    params.yaml's `sources:`, its files were listed as enabled though the build reads none of them."""
    from pipeline.sources.table import source_rows

    root = _contrib_project(tmp_path, monkeypatch, ("a",))
    (root / "params.yaml").write_text("sources: [oasst1]\n")
    enabled = {r["name"]: r["enabled"] for r in source_rows(root)[0]}
    assert (enabled["oasst1"], enabled["contrib"], enabled["contrib/a"]) == (True, False, False)
    (root / "params.yaml").write_text("sources: [contrib]\n")
    enabled = {r["name"]: r["enabled"] for r in source_rows(root)[0]}
    assert (enabled["oasst1"], enabled["contrib"], enabled["contrib/a"]) == (False, True, True)


def test_the_sources_table_cells_are_yes_no_and_one_line() -> None:
    """Mutations table._cell: `"yes" if value else "no"` -> str(value), and the whitespace folding
    (`" ".join(str(value).split())`) dropped. A flag showed as True/False, and a line break in a
    contributor's description split its row in two."""
    from pipeline.sources.table import render

    row = {"name": "contrib/a", "kind": "k", "licence": "MIT", "commercial": True, "enabled": False}
    out = render(
        [{**row, "rows": 3, "reason": "line one\nline  two"}], ("name", "commercial", "enabled", "reason")
    )
    assert out.splitlines() == [
        "name       commercial  enabled  reason",
        "contrib/a  yes         no       line one line two",
    ]


def test_sources_with_reasons_adds_the_reason_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutation table.run: `--reasons` ignored (columns always COLUMNS). The option printed the same
    table as without it."""
    import argparse

    from pipeline.sources import table

    _contrib_project(tmp_path, monkeypatch, ("a",))
    assert table.run(argparse.Namespace(json=False, reasons=True)) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[-1] == "reason"
    assert any("each contributed file declares its own licence" in r for r in rows)


# ---------------------------------------------------------------- sources.http


def test_a_kept_archive_that_no_longer_matches_its_pin_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation http.cached_url: the kept file's hash check dropped (`if kept.is_file()` alone). An
    archive kept in the download cache that changed on disk (a bad disk, an edit by hand) was
    extracted as if it were the pinned one; it is deleted and fetched again (here: a port nothing
    listens on, so the fetch fails in one line)."""
    import hashlib

    from pipeline.sources.errors import SourceError
    from pipeline.sources.http import cached_url

    monkeypatch.setenv("NANOCHATGPT_DOWNLOAD_CACHE", str(tmp_path / "cache"))
    pin = hashlib.sha256(b"the archive").hexdigest()
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / pin).write_bytes(b"the archive, changed")
    with pytest.raises(SourceError, match=r"^x: cannot download http://127\.0\.0\.1:9/a\.zip \("):
        cached_url("http://127.0.0.1:9/a.zip", pin, name="x", timeout=5)
    assert not (tmp_path / "cache" / pin).exists()
    (tmp_path / "cache" / pin).write_bytes(b"the archive")  # one that matches is used as it is
    assert cached_url("http://127.0.0.1:9/a.zip", pin, name="x", timeout=5) == tmp_path / "cache" / pin
