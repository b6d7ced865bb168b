"""Tests from mutation audit 33 (the source adapters few audits touched: openai_messages, arithmetic,
babylm, personachat, sharegpt, twitter, ubuntu, the line/message readers they share, and pipeline/model.py):
each kills a hand-made mutant that the suite let through, or pins a bug fixed; its docstring names which."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_mutation_audit14 import _jsonl, _read, _turns

from pipeline.model import GPT, GPT2_PRESETS, GPTConfig
from pipeline.sources.adapters.ubuntu import header_problem
from pipeline.trainsetup import HUB_SHAPES


def _quarantined(result) -> list[tuple[str | None, str, str]]:
    """(conversation id, origin, check) of each quarantined row, in order."""
    return result.quarantine.select("conversation_id", "origin", "check").rows()


def _reconciles(report: dict) -> bool:
    return report["rows_read"] == report["rows_kept"] + report["rows_quarantined"] + sum(
        report["rows_filtered"].values()
    )


# ---------------------------------------------------------------- openai / _messages


def test_openai_reads_a_json_list_file(tmp_path: Path) -> None:
    """Mutation openai_messages.read: suffixes (".jsonl", ".json") -> (".jsonl",). A `.json` file (a JSON
    list of records, as exports write them) was not read at all: its conversations were lost uncounted."""
    records = [
        {"id": "r1", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    ]
    (tmp_path / "chat.json").write_text(json.dumps(records))
    result = _read("openai", tmp_path)
    assert _turns(result) == {"openai:chat:r1": [("human", "hi"), ("bot", "yo")]}
    assert result.report["rows_read"] == 2


def test_an_id_of_spaces_alone_is_no_id(tmp_path: Path) -> None:
    """Mutation _messages.record_key: `record_id.strip()` -> `record_id`. An `"id": "  "` (an export's
    blank) became the conversation id `openai:chat:  `, a name no one can type or find, instead of the
    record's line."""
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    (tmp_path / "chat.jsonl").write_text(_jsonl({"id": "  ", "messages": msgs}))
    assert list(_turns(_read("openai", tmp_path))) == ["openai:chat:1"]


# ---------------------------------------------------------------- arithmetic


def _arith(tmp_path: Path, *records: dict, name: str = "a.jsonl"):
    (tmp_path / name).write_text(_jsonl(*records))
    return _read("arithmetic", tmp_path)


def test_arithmetic_question_scaffolding_after_leading_space_is_removed(tmp_path: Path) -> None:
    """Mutation arithmetic._QUESTION: `^\\s*Question:` -> `^Question:`. A context starting with a space
    or newline kept its "Question:" label in the human turn."""
    result = _arith(tmp_path, {"context": "\n Question: What is 2 plus 3?\nAnswer:", "completion": " 5"})
    assert _turns(result) == {"arithmetic:a:1": [("human", "What is 2 plus 3?"), ("bot", "5")]}


def test_arithmetic_only_the_trailing_answer_label_is_removed(tmp_path: Path) -> None:
    """Mutation arithmetic._ANSWER: the `$` anchor dropped. An "Answer:" inside the question (not the
    closing label) was cut out with the spaces around it, joining the words either side."""
    result = _arith(tmp_path, {"context": "Question: Say Answer: yes\nAnswer:", "completion": " yes"})
    assert _turns(result)["arithmetic:a:1"][0] == ("human", "Say Answer: yes")


def test_arithmetic_completion_is_the_bot_turn_as_written(tmp_path: Path) -> None:
    """Mutation arithmetic.read: `as_question(value) if role == "human" else value` -> `as_question(value)`.
    The completion is the answer as written: scaffolding words in it are its text, not labels to cut."""
    result = _arith(tmp_path, {"context": "Question: Echo?\nAnswer:", "completion": " Question: Answer:"})
    assert _turns(result)["arithmetic:a:1"] == [("human", "Echo?"), ("bot", "Question: Answer:")]


def test_arithmetic_missing_field_is_quarantined_with_its_role(tmp_path: Path) -> None:
    """Mutation arithmetic.read: `role=role` dropped from the `missing_field` row. The quarantine then
    did not say which half of the pair (the human question or the bot answer) was missing."""
    result = _arith(tmp_path, {"context": "Question: 1 plus 1?\nAnswer:"}, {"completion": " 2"})
    bad = result.quarantine.filter(result.quarantine["check"] == "missing_field")
    assert bad.select("origin", "role").rows() == [
        ("a.jsonl:1/completion", "bot"),
        ("a.jsonl:2/context", "human"),
    ]
    assert _reconciles(result.report)


def test_arithmetic_reads_a_json_file(tmp_path: Path) -> None:
    """Mutation arithmetic.read: ".json" dropped from the suffixes. A `.json` file of records (a list)
    was not read: its pairs were lost uncounted."""
    (tmp_path / "add.json").write_text(
        json.dumps([{"context": "Question: 1 plus 2?\nAnswer:", "completion": " 3"}])
    )
    result = _read("arithmetic", tmp_path)
    assert _turns(result) == {"arithmetic:add:1": [("human", "1 plus 2?"), ("bot", "3")]}


# ---------------------------------------------------------------- babylm (_lines)


def test_babylm_reads_dev_and_test_files(tmp_path: Path) -> None:
    """Mutation babylm.read: ".dev" and ".test" dropped from the suffixes. The 2023 BabyLM zip's dev and
    test splits (the module docstring names all four suffixes) were not read, and not counted."""
    (tmp_path / "aochildes.dev").write_text("hi there\nhello\n")
    (tmp_path / "aochildes.test").write_text("bye\nsee you\n")
    result = _read("babylm", tmp_path)
    assert _turns(result) == {
        "babylm:aochildes.dev:1": [("human", "hi there"), ("bot", "hello")],
        "babylm:aochildes.test:1": [("human", "bye"), ("bot", "see you")],
    }


def test_a_line_of_spaces_alone_ends_a_conversation(tmp_path: Path) -> None:
    """Mutation _lines.read_line_dialogues: `if not rec.value.strip()` -> `if not rec.value`. A line of
    spaces (a blank line as editors leave it) was an utterance, not a boundary: the two conversations
    became one and every later unlabeled line changed speaker."""
    (tmp_path / "c.txt").write_text("a\nb\n   \nc\nd\n")
    result = _read("babylm", tmp_path)
    assert _turns(result) == {
        "babylm:c.txt:1": [("human", "a"), ("bot", "b")],
        "babylm:c.txt:4": [("human", "c"), ("bot", "d")],
    }
    assert result.quarantine.height == 0


# ---------------------------------------------------------------- personachat


def test_personachat_blank_lines_are_no_records(tmp_path: Path) -> None:
    """Mutation personachat.read_file: the blank-line skip dropped. A blank line (a trailing one, or one
    between conversations) was quarantined as a `format` error that cut its conversation."""
    (tmp_path / "p.txt").write_text("1 your persona: i ski.\n2 hi\thello\n\n3 how ?\tfine\n\n")
    result = _read("personachat", tmp_path)
    assert _turns(result) == {
        "personachat:p:1": [("human", "hi"), ("bot", "hello"), ("human", "how ?"), ("bot", "fine")]
    }
    assert result.quarantine.height == 0


def test_personachat_an_unreadable_line_cuts_its_conversation_where_it_stands(tmp_path: Path) -> None:
    """Mutation personachat.read_file: an unreadable line quarantined at once (`rows.bad` on reading it)
    instead of in turn with the buffered lines. It then came before the turns read ahead of it, so it
    cut its whole conversation: the good turns before it were lost as `conversation_broken`."""
    (tmp_path / "p.txt").write_bytes(b"1 your persona: i ski.\n2 hi\thello\n3 bad \xff\tx\n4 so ?\tyes\n")
    result = _read("personachat", tmp_path)
    assert _turns(result) == {"personachat:p:1": [("human", "hi"), ("bot", "hello")]}
    assert [(o, c) for _, o, c in _quarantined(result)] == [
        ("p.txt:3", "utf8"),
        ("p.txt:4/1", "conversation_broken"),
        ("p.txt:4/2", "conversation_broken"),
    ]
    assert _reconciles(result.report)


def test_personachat_lines_before_the_first_conversation_start_are_quarantined(tmp_path: Path) -> None:
    """Mutation personachat.read_file: `m.group(1) == "1"` -> `... or key is None`. Dialogue lines before
    any line numbered 1 (a file cut at its start) belong to a conversation whose persona and first turns
    are missing: they are quarantined and counted, not kept as a conversation without its persona."""
    (tmp_path / "p.txt").write_text("2 hello\thi\n1 your persona: x.\n2 a\tb\n")
    result = _read("personachat", tmp_path)
    assert _turns(result) == {"personachat:p:2": [("human", "a"), ("bot", "b")]}
    assert [(o, c) for _, o, c in _quarantined(result)] == [
        ("p.txt:1/1", "conversation_id_present"),
        ("p.txt:1/2", "conversation_id_present"),
    ]
    assert _reconciles(result.report)


# ---------------------------------------------------------------- sharegpt


@pytest.mark.parametrize(
    ("asker", "answerer"),
    [
        ("human", "gpt"),
        ("user", "chatgpt"),
        ("Human", "bing"),
        ("human", "bard"),
        ("user", "assistant"),
        ("human", "model"),
        ("user", "bot"),
    ],
)
def test_sharegpt_reads_every_role_name_its_exports_use(tmp_path: Path, asker: str, answerer: str) -> None:
    """Mutations sharegpt.ROLE_MAP: the "user", "chatgpt", "bard", "model" and "assistant" entries each
    dropped. Exports of ShareGPT-format data (the module docstring names them) write these; an unmapped
    one quarantined every such message as `role_valid`, and each conversation with it."""
    record = {"id": "c", "conversations": [{"from": asker, "value": "q"}, {"from": answerer, "value": "a"}]}
    (tmp_path / "s.jsonl").write_text(_jsonl(record))
    result = _read("sharegpt", tmp_path)
    assert _turns(result) == {"sharegpt:s:c": [("human", "q"), ("bot", "a")]}


# ---------------------------------------------------------------- ubuntu

_DIALOGUE_HEADER = "folder,dialogueID,date,from,to,text\n"


def test_ubuntu_dialogue_row_with_an_unquoted_comma_is_quarantined_not_cut(tmp_path: Path) -> None:
    """Bug: ubuntu._read_file read a dialogueText row with more fields than its header (a comma left
    unquoted in its text) as if whole: the text was cut at the comma and the rest (DictReader's `None`
    key) dropped unseen, the turn kept as "hello". It is quarantined as `csv_fields`, as
    empathetic_dialogues does, and cuts its dialogue; every row is counted."""
    (tmp_path / "dialogueText.csv").write_text(
        _DIALOGUE_HEADER + "1,d.tsv,x,alice,,hi\n1,d.tsv,x,bob,alice,yo\n1,d.tsv,x,alice,bob,hello, world\n"
        "1,d.tsv,x,bob,alice,ok\n"
    )
    result = _read("ubuntu", tmp_path)
    assert _turns(result) == {"ubuntu:1/d.tsv": [("human", "hi"), ("bot", "yo")]}
    assert _quarantined(result) == [
        ("ubuntu:1/d.tsv", "dialogueText.csv:4", "csv_fields"),
        ("ubuntu:1/d.tsv", "dialogueText.csv:5", "conversation_broken"),
    ]
    bad = result.quarantine.row(0, named=True)
    assert bad["text"] == "1,d.tsv,x,alice,bob,hello, world" and "7 fields, the header has 6" in bad["reason"]
    assert _reconciles(result.report)


def test_ubuntu_v2_row_with_an_unquoted_comma_is_quarantined_not_misread(tmp_path: Path) -> None:
    """Bug: ubuntu._read_file read a v2 row with more fields than its header as if whole: a comma left
    unquoted in its Context shifted the tail of the Context into the response column and the response
    into Label, so a made-up exchange was kept as real turns."""
    (tmp_path / "train.csv").write_text(
        "Context,Utterance,Label\n"
        "hi there __eou__ __eot__,yo __eou__,1\n"
        "hi, you __eou__ __eot__,yo __eou__,1\n"
    )
    result = _read("ubuntu", tmp_path)
    assert _turns(result) == {"ubuntu:train:2": [("human", "hi there"), ("bot", "yo")]}
    assert _quarantined(result) == [("ubuntu:train:3", "train.csv:3", "csv_fields")]
    assert _reconciles(result.report)


def test_ubuntu_label_with_spaces_around_it_still_marks_a_distractor(tmp_path: Path) -> None:
    """Mutation ubuntu._read_v2: `.strip()` dropped from the Label. A Label of ` 0` (a CSV written with
    a space after each comma) read the wrong answer as the real reply."""
    (tmp_path / "train.csv").write_text("Context,Utterance,Label\nhi __eou__ __eot__,wrong __eou__, 0\n")
    result = _read("ubuntu", tmp_path)
    assert result.turns.height == 0
    assert result.report["rows_filtered"] == {"ubuntu_distractor": 2}


def test_ubuntu_an_empty_utterance_cuts_nothing(tmp_path: Path) -> None:
    """Mutation ubuntu._read_file: `r.get("text") is None` -> `not r.get("text")`. An empty text (a
    utterance that holds nothing) was quarantined as `missing_field`, which cuts its dialogue; as an
    empty row (`text_present`) it cuts nothing and the speaker's rows either side of it join."""
    (tmp_path / "dialogueText.csv").write_text(
        _DIALOGUE_HEADER + "1,d.tsv,x,alice,,hi\n1,d.tsv,x,bob,alice,\n1,d.tsv,x,bob,alice,yo\n"
    )
    result = _read("ubuntu", tmp_path)
    assert _turns(result) == {"ubuntu:1/d.tsv": [("human", "hi"), ("bot", "yo")]}
    assert [c for _, _, c in _quarantined(result)] == ["text_present"]


def test_ubuntu_a_v2_file_with_utterance_and_distractors_needs_no_label() -> None:
    """Mutation ubuntu.header_problem: `and not distractors` dropped. A v2 file answering in `Utterance`
    beside Distractor_N columns is laid out as valid/test (the distractors are the wrong answers, the
    response the right one): it needs no Label and was refused whole."""
    assert header_problem(["Context", "Utterance", "Distractor_0"]) is None
    assert header_problem(["Context", "Utterance"]) is not None


# ---------------------------------------------------------------- model


def test_gpt2_presets_are_the_hub_shapes_with_64_wide_heads() -> None:
    """Mutation model.GPT2_PRESETS: gpt2-xl's `n_head=25` -> 16. Every GPT-2 size has heads 64 wide
    (768/12 ... 1600/25), and the presets (used by the benchmarks) must be the shapes trainsetup's
    HUB_SHAPES and the Hub's weights have: with 16 heads of 100 the benchmarked model was no GPT-2."""
    assert set(GPT2_PRESETS) == set(HUB_SHAPES)
    for name, preset in GPT2_PRESETS.items():
        assert (preset["n_layer"], preset["n_embd"]) == HUB_SHAPES[name], name
        assert preset["n_embd"] == 64 * preset["n_head"], name


def test_crop_block_size_keeps_the_first_positions() -> None:
    """Mutation model.GPT.crop_block_size: `wpe.weight[:block_size]` -> `[-block_size:]`. A cropped
    model must keep the embeddings of positions 0..block_size-1, which its tokens are read at; the
    last ones (positions it never sees again) gave every token a position it was not trained at."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=16, n_layer=1, n_head=1, n_embd=8))
    before = model.transformer.wpe.weight.detach().clone()
    model.crop_block_size(3)
    assert torch.equal(model.transformer.wpe.weight.detach(), before[:3])
    assert model.config.block_size == 3 and model.transformer.wpe.num_embeddings == 3
