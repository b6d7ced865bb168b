"""Every adapter on a fixture in its exact upstream schema (tests/fixtures/sources/<adapter>/).

Each fixture holds good rows and the bad rows an upstream dump really has: missing fields,
empty text, wrong role order, a broken JSON line, invalid UTF-8. The tests append a 1 MB turn
(in that format) to a copy. Valid rows must normalize into a table that passes the pandera
gate; bad rows must land in quarantine with their check; the counts must reconcile.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.schema import QUARANTINE_SCHEMA, TURN_SCHEMA, validate
from pipeline.sources import readers
from pipeline.sources.adapters import ADAPTERS, get_adapter
from pipeline.sources.normalize import normalize_rows
from pipeline.sources.registry import SourceSpec

FIXTURES = Path(__file__).parent / "fixtures" / "sources"
BIG = "x" * 1_000_000  # the 1 MB turn


def _append(rel: str, data: str) -> Callable[[Path], None]:
    def inject(folder: Path) -> None:
        with open(folder / rel, "a", encoding="utf-8") as f:
            f.write(data)

    return inject


def _chitchat_big(folder: Path) -> None:
    path = folder / "dataset.json"
    data = json.loads(path.read_text())
    data["big"] = {
        "messages": [[{"text": BIG, "sender": "a", "timestamp": "t"}], [{"text": "ok", "sender": "b"}]]
    }
    path.write_text(json.dumps(data))


def _jsonl(obj: object) -> str:
    return json.dumps(obj) + "\n"


# adapter -> (options, how to append a 1 MB turn + its reply, expected quarantine checks without the
#            big turn, expected {conversation_id: [turn texts]} subset, expected rows_filtered)
CASES: dict[str, dict] = {
    "chitchat": {
        "big": _chitchat_big,
        "checks": {"has_bot_turn": 2, "text_present": 1, "missing_field": 2, "conversation_broken": 1},
        "turns": {
            "chitchat:c1": [
                "Hello\nHow are you doing today?",
                "im doing good",
                "Im alright, I just took a nap.",
            ],
            "chitchat:c3": ["hi", "hey", "what's up"],
            "chitchat:c4": ["question", "answer"],
        },
        "filtered": {},
    },
    "chatterbot": {
        "big": _append("data/english/fixture.yml", f"- - {BIG}\n  - ok\n"),
        "checks": {
            "text_present": 1,
            "has_bot_turn": 2,
            "missing_field": 2,
            "conversation_broken": 2,
            "utf8": 1,
        },
        "turns": {
            "chatterbot:data/english/fixture:1": ["Are you a robot?", "Yes"],
            "chatterbot:data/english/fixture:2": ["What is 6 times 7?", "42"],
        },
        "filtered": {},
    },
    "nanochatgpt": {
        "big": _append("fixture.txt", f"\n<human> {BIG} <endOfText>\n<bot> ok <endOfText>\n"),
        "checks": {
            "first_turn_human": 1,
            "text_present": 1,
            "has_bot_turn": 1,
            "format": 1,
            "conversation_broken": 3,
            "utf8": 1,
        },
        "turns": {
            "nanochatgpt:fixture:1": [
                "Hi there!",
                "Hello! How can I help?",
                "Tell me a joke.",
                "Why did the chicken cross the road?",
            ],
            "nanochatgpt:fixture:6": ["Then I answer.", "And I reply."],
            "nanochatgpt:fixture:10": ["first part\nsecond part", "merged reply\nthat spans two lines"],
            "nanochatgpt:fixture:24": ["rendered on one line", "also fine"],
        },
        "filtered": {},
    },
    "openai": {
        "big": _append(
            "fixture.jsonl",
            _jsonl({"messages": [{"role": "user", "content": BIG}, {"role": "assistant", "content": "ok"}]}),
        ),
        "checks": {
            "first_turn_human": 2,
            "missing_field": 2,
            "conversation_broken": 4,
            "text_present": 1,
            "role_valid": 1,
            "json_parse": 1,
            "utf8": 1,
        },
        "turns": {
            "openai:fixture:1": ["Hi", "Hello."],
            "openai:fixture:conv-2": ["Part one\npart two", "ok", "more\nand more", "done"],
            "openai:fixture:3": ["hm", "yes"],
        },
        "context": {"openai:fixture:1": "You are terse."},
        "filtered": {"system_message_as_context": 1},
    },
    "sharegpt": {
        "big": _append(
            "more.jsonl",
            _jsonl(
                {
                    "id": "big",
                    "conversations": [{"from": "human", "value": BIG}, {"from": "gpt", "value": "ok"}],
                }
            ),
        ),
        "checks": {
            "first_turn_human": 2,
            "missing_field": 2,
            "conversation_broken": 1,
            "text_present": 1,
            "json_parse": 1,
            "utf8": 1,
        },
        "turns": {
            "sharegpt:fixture:sg1": ["Hey", "Hi!"],
            "sharegpt:fixture:sg2": ["q", "a"],
            "sharegpt:more:sg6": ["line format", "works"],
        },
        "context": {"sharegpt:fixture:sg1": "Be kind."},
        "filtered": {"system_message_as_context": 1},
    },
    "oasst1": {
        "options": {"language": "en"},
        "big": _append(
            "2023-04-12_oasst_all.messages.jsonl",
            _jsonl(
                {
                    "message_id": "pb",
                    "parent_id": None,
                    "message_tree_id": "pb",
                    "role": "prompter",
                    "text": BIG,
                    "lang": "en",
                }
            )
            + _jsonl(
                {
                    "message_id": "ab",
                    "parent_id": "pb",
                    "message_tree_id": "pb",
                    "role": "assistant",
                    "text": "ok",
                    "lang": "en",
                    "rank": 0,
                }
            ),
        ),
        "checks": {
            "missing_field": 1,
            "json_parse": 1,
            "utf8": 1,
            "parent_missing": 1,
            "text_present": 1,
            "first_turn_human": 1,
        },
        "turns": {
            "oasst1:p1": [
                "Can you explain tides?",
                "Best answer: the moon's gravity.",
                "And the sun?",
                "The sun matters too, less so.",
            ],
            "oasst1:t6": ["Name a prime.", "Two, the only even prime.", "Thanks!"],
        },
        "filtered": {
            "oasst_deleted": 1,
            "oasst_lang": 2,
            "oasst_not_selected": 3,
            "oasst_parent_dropped": 1,
            "oasst_review_failed": 1,
        },
    },
    "chatbot_arena": {
        "options": {"language": "English"},
        "big": _append(
            "train.jsonl",
            _jsonl(
                {
                    "question_id": "big",
                    "language": "English",
                    "conversation_a": [
                        {"role": "user", "content": BIG},
                        {"role": "assistant", "content": "ok"},
                    ],
                    "conversation_b": [],
                }
            ),
        ),
        # one side per battle (the preferred one); the big record's empty side b is not kept and has no rows
        "checks": {"missing_field": 1, "first_turn_human": 2, "text_present": 1, "json_parse": 1, "utf8": 1},
        "turns": {
            "chatbot_arena:q1:b": ["What is the capital of France?", "The capital is Paris."],
            "chatbot_arena:q4:a": ["Only side a", "fine"],
            "chatbot_arena:q5:a": ["y", "z"],
        },
        "filtered": {"language": 4, "moderation_flagged": 4, "arena_not_preferred": 8, "arena_both_bad": 4},
    },
    "empathetic_dialogues": {
        "big": _append(
            "empatheticdialogues/train.csv", f"hit:9_conv:9,1,x,p,1,{BIG},,\nhit:9_conv:9,2,x,p,0,ok,,\n"
        ),
        "checks": {
            "text_present": 1,
            "csv_fields": 2,
            "missing_field": 1,
            # hit:2_conv:3's line 1 has too few fields: its conversation is cut there (line 2 too)
            "conversation_broken": 2,
            "utf8": 1,
        },
        "turns": {
            "empathetic_dialogues:hit:0_conv:1": [
                "I remember going to see the fireworks with my best friend., It was fun.",
                "Was this a friend you were in love with, or just a best friend?",
                "This was a best friend. I miss her.",
                "Where has she gone?",
            ],
            "empathetic_dialogues:hit:1_conv:2": ["I was scared\nof the dark", "That's normal."],
            # valid.csv: 9 fields (inline label candidates), read as 8
            "empathetic_dialogues:hit:6_conv:12": [
                "A car nearly hit me this morning, on my way to work.",
                "Oh no! Are you fine now?",
                "Yes, just shaken.",
            ],
        },
        "filtered": {},
    },
    "ubuntu": {
        "big": _append("dialogueText.csv", f"3,big.tsv,d,alice,,{BIG}\n3,big.tsv,d,bob,alice,ok\n"),
        "checks": {"missing_field": 1, "conversation_broken": 1, "utf8": 1},
        "turns": {
            "ubuntu:3/126125.tsv": [
                'Hello folks, please help me: "Order here your unique music."\nAny ideas?',
                "try 'order your unique music here'",
                "thanks!",
            ],
            "ubuntu:3/8888.tsv": ["multi\nline question", "reply"],
            "ubuntu:train:2": [
                "i think we could import the old comments via rsync , but from there we need "
                "to go via email .",
                "how ?\nany idea ?",
                "basically each xfree86 upload will not force users to upgrade",
            ],
            "ubuntu:valid:2": ["how do i mount a usb drive ?", "use the mount command"],
        },
        "filtered": {"ubuntu_distractor": 4},
    },
    "hackernews": {
        "big": _append(
            "items.jsonl",
            _jsonl({"id": 100, "type": "comment", "by": "big", "parent": 1, "text": BIG, "kids": [101]})
            + _jsonl({"id": 101, "type": "comment", "by": "small", "parent": 100, "text": "ok"}),
        ),
        "checks": {
            "json_parse": 1,
            "utf8": 1,
            "has_bot_turn": 2,
            "missing_field": 1,
            "conversation_broken": 1,
            "text_present": 1,
        },
        "turns": {"hackernews:2": ["I think this > that.\nSecond para", "Disagree: link", "Fair 'point'"]},
        "context": {"hackernews:2": "Hacker News: Ask HN: What & why?"},
        "filtered": {
            "hn_deleted": 1,
            "hn_not_on_thread": 1,
            "hn_parent_deleted": 1,
            "hn_story": 1,
            "hn_unsupported_type": 1,
        },
    },
    "babylm": {
        "options": {"max_lines": 3},
        "big": _append("switchboard.train", f"\nA:\t{BIG}\nB:\tok\n"),
        "checks": {"has_bot_turn": 1, "text_present": 1, "conversation_broken": 1, "utf8": 1},
        "turns": {
            "babylm:switchboard.train:1": ["Okay.\nSo what do you think?", "Well, I don't know."],
            "babylm:switchboard.train:6": ["this speaker B starts", "and A answers"],
            "babylm:aochildes.train:1": ["what's that ?", "it's a ball .", "throw it !"],
            "babylm:aochildes.train:4": ["okay .", "where did it go ?"],
        },
        "filtered": {},
    },
    "twitter": {
        "options": {"pairs": True},
        # pairs go by position: the blank line 8 is the (empty) reply to line 7, not a boundary
        "big": _append("twitter_en.txt", f"\n{BIG}\nok\n"),
        "big_checks": {"text_present": 1, "text_length": 1, "conversation_broken": 1},
        "checks": {"conversation_broken": 1, "has_bot_turn": 1, "utf8": 1},
        "turns": {
            "twitter:twitter_en.txt:1": ["just had the best coffee of my life", "which cafe?"],
            "twitter:twitter_en.txt:5": ["new phone who dis", "lol"],
        },
        "filtered": {},
    },
    "arithmetic": {
        "big": _append("two_digit_addition.jsonl", _jsonl({"context": BIG, "completion": " ok"})),
        "checks": {
            "conversation_broken": 1,
            "missing_field": 1,
            "has_bot_turn": 1,
            "text_present": 1,
            "json_parse": 1,
            "utf8": 1,
        },
        "turns": {"arithmetic:two_digit_addition:1": ["What is 98 plus 45?", "143"]},
        "filtered": {},
    },
    "personachat": {
        "big": _append("train_self_original.txt", f"1 your persona: big.\n2 {BIG}\tok\t\tq\n"),
        "checks": {"first_turn_human": 1, "format": 1, "conversation_broken": 4, "utf8": 1},
        "turns": {
            "personachat:train_self_original:1": [
                "hi , how are you ?",
                "i am good , just back from skiing .",
                "nice ! i love dogs .",
                "me too , i have one .",
            ],
            "personachat:train_self_original:5": ["yes , i am here .", "great , what do you do ?"],
        },
        "context": {
            "personachat:train_self_original:1": "i like to ski.\ni have a dog.",
            "personachat:train_self_original:5": "i am a teacher.",
        },
        "filtered": {"partner_persona": 1, "persona_used_as_context": 5, "silence": 1},
    },
    "dailydialog": {
        "big": _append("ijcnlp_dailydialog/dialogues_text.txt", f"{BIG} __eou__ ok __eou__\n"),
        # an empty utterance (line 3), a cut line (4), invalid UTF-8 (5), one speaker alone (6)
        "checks": {"text_present": 1, "format": 1, "utf8": 1, "has_bot_turn": 1},
        "turns": {
            "dailydialog:ijcnlp_dailydialog/dialogues_text.txt:2": [
                "Can you do push-ups ?",
                "Of course I can .",
            ],
            # the empty utterance keeps its place: A's two utterances around it make one turn
            "dailydialog:ijcnlp_dailydialog/dialogues_text.txt:3": ["Hi .\nAre you there ?", "Yes ."],
            "dailydialog:ijcnlp_dailydialog/dialogues_text.txt:4": [
                "Where are you going ?",
                "To the station .",
            ],
        },
        "filtered": {},
    },
}
# Adapters that read a format other adapters also read are covered through those (contrib: test_sources).
COVERED_ELSEWHERE = {"contrib"}


def _spec(adapter: str, options: dict | None = None) -> SourceSpec:
    return SourceSpec(
        name=adapter,
        kind="hf_dataset",
        location="x/y",
        adapter=adapter,
        licence="CC-BY-4.0",
        commercial=True,
        revision="main",
        options=options or {},
    )


def _run(adapter: str, folder: Path):
    case = CASES[adapter]
    raw = get_adapter(adapter)(folder, _spec(adapter, case.get("options")), {})
    return normalize_rows(raw, max_turn_chars=16_000)


def test_every_adapter_has_a_fixture_case() -> None:
    assert set(ADAPTERS) - COVERED_ELSEWHERE == set(CASES)
    for adapter in CASES:
        assert (FIXTURES / adapter).is_dir(), adapter


def _by_conversation(turns: pl.DataFrame) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for cid, text in turns.select("conversation_id", "text").iter_rows():
        out.setdefault(cid, []).append(text)
    return out


@pytest.mark.parametrize("adapter", sorted(CASES))
def test_adapter_fixture(adapter: str, tmp_path: Path) -> None:
    case = CASES[adapter]
    folder = tmp_path / adapter
    shutil.copytree(FIXTURES / adapter, folder)
    result = _run(adapter, folder)
    turns, quarantine, report = result.turns, result.quarantine, result.report

    # valid rows normalize, and the table passes the gate
    validate(turns)
    assert turns.schema == pl.Schema(TURN_SCHEMA)
    assert quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)
    got = _by_conversation(turns)
    for cid, texts in case["turns"].items():
        assert got.get(cid) == texts, cid
    for cid, context in case.get("context", {}).items():
        assert set(turns.filter(pl.col("conversation_id") == cid)["context"]) == {context}
    assert set(turns["role"].head(1)) == {"human"}

    # bad rows are quarantined, each with a check, a reason and where it came from
    assert dict(Counter(quarantine["check"])) == case["checks"]
    assert quarantine["reason"].null_count() == 0 and quarantine["origin"].null_count() == 0
    assert all(":" in origin for origin in quarantine["origin"])
    assert report["rows_filtered"] == case["filtered"]

    # counts reconcile
    assert report["rows_read"] == report["rows_kept"] + report["rows_quarantined"] + sum(
        report["rows_filtered"].values()
    )
    assert report["rows_quarantined"] == quarantine.height
    assert report["turns_kept"] == turns.height
    assert report["rows_merged"] == report["rows_kept"] - report["turns_kept"]
    assert report["conversations_kept"] == len(got)

    # a 1 MB turn is quarantined (text_length) and cuts its conversation; nothing else changes
    case["big"](folder)
    big = _run(adapter, folder)
    checks = Counter(big.quarantine["check"])
    assert checks["text_length"] == 1
    assert checks - Counter(case["checks"]) == Counter(
        case.get("big_checks", {"text_length": 1, "conversation_broken": 1})
    )
    assert big.turns.equals(turns)
    assert big.quarantine["text"].str.len_chars().max() >= 1_000_000  # the row is kept whole for inspection
    r = big.report
    assert r["rows_read"] == r["rows_kept"] + r["rows_quarantined"] + sum(r["rows_filtered"].values())


def test_normalize_is_stable_across_runs(tmp_path: Path) -> None:
    """Same input, same conversation ids and bytes (ids never come from run order or time)."""
    a, b = _run("openai", FIXTURES / "openai"), _run("openai", FIXTURES / "openai")
    assert a.turns.equals(b.turns) and a.quarantine.equals(b.quarantine) and a.report == b.report


def test_merged_turn_too_long_is_cut(tmp_path: Path) -> None:
    """Rows under the limit can merge into a turn over it: quarantined as text_length, the rest cut."""
    (tmp_path / "f.txt").write_text(
        "<human> hi <endOfText>\n<bot> hello <endOfText>\n"
        + "".join(f"<human> {'y' * 60} <endOfText>\n" for _ in range(3))
        + "<bot> late <endOfText>\n"
    )
    spec = _spec("nanochatgpt")
    result = normalize_rows(get_adapter("nanochatgpt")(tmp_path, spec, {}), max_turn_chars=150)
    assert _by_conversation(result.turns) == {"nanochatgpt:f:1": ["hi", "hello"]}
    assert Counter(result.quarantine["check"]) == Counter({"text_length": 3, "conversation_broken": 1})
    assert "3 rows merged" in result.quarantine["reason"][0]


def test_text_is_cleaned(tmp_path: Path) -> None:
    """NFC, stripped, CRLF folded; control characters other than \\n and \\t are quarantined."""
    decomposed = "cafe\u0301"
    (tmp_path / "f.jsonl").write_text(
        _jsonl(
            {
                "messages": [
                    {"role": "user", "content": f"  {decomposed}\r\nline 2 "},
                    {"role": "assistant", "content": "ok\tfine"},
                ]
            }
        )
        + _jsonl(
            {"messages": [{"role": "user", "content": "bell\x07"}, {"role": "assistant", "content": "x"}]}
        )
    )
    result = normalize_rows(get_adapter("openai")(tmp_path, _spec("openai"), {}))
    assert result.turns["text"].to_list() == ["caf\u00e9\nline 2", "ok\tfine"]
    assert Counter(result.quarantine["check"]) == Counter(
        {"text_no_control_chars": 1, "conversation_broken": 1}
    )


def test_min_turns_param() -> None:
    """normalize.min_turns above 2 quarantines shorter conversations under its own check."""
    result = normalize_rows(get_adapter("openai")(FIXTURES / "openai", _spec("openai"), {}), min_turns=3)
    assert set(result.turns["conversation_id"]) == {"openai:fixture:conv-2"}
    short = result.quarantine.filter(pl.col("check") == "min_turns")
    assert sorted(set(short["conversation_id"])) == ["openai:fixture:1", "openai:fixture:3"]
    assert "needs at least 3" in short["reason"][0]


def test_unclosed_turn_is_quarantined_and_cuts_its_conversation(tmp_path: Path) -> None:
    """A broken turn (no <endOfText>) never swallows the next marker into its text."""
    (tmp_path / "f.txt").write_text(
        "<human> hi <endOfText>\n<bot> hello <endOfText>\n<human> ok\n<bot> lost <endOfText>\n"
        "\n<human> next <endOfText>\n<bot> fine <endOfText>\n<human> dangling"
    )
    result = normalize_rows(
        get_adapter("nanochatgpt")(tmp_path, _spec("nanochatgpt"), {}), max_turn_chars=150
    )
    assert _by_conversation(result.turns) == {
        "nanochatgpt:f:1": ["hi", "hello"],
        "nanochatgpt:f:6": ["next", "fine"],
    }
    q = result.quarantine
    unclosed = q.filter(pl.col("check") == "turn_unclosed")
    assert sorted(unclosed["origin"]) == ["f.txt:3", "f.txt:8"]
    assert all("not closed by <endOfText>" in r for r in unclosed["reason"])
    assert "<bot>" not in "".join(result.turns["text"])
    report = result.report
    assert report["rows_read"] == report["rows_kept"] + report["rows_quarantined"] + sum(
        report["rows_filtered"].values()
    )


def test_chatbot_arena_repeated_question_ids_never_merge(tmp_path: Path) -> None:
    """question_id is unique upstream, but two files (or an export) repeating one must not join records."""

    def record(qid, answer: str) -> str:
        conv = lambda reply: [{"role": "user", "content": "q?"}, {"role": "assistant", "content": reply}]  # noqa: E731
        return _jsonl(
            {"question_id": qid, "conversation_a": conv(answer), "conversation_b": conv(answer + "!")}
        )

    (tmp_path / "one.jsonl").write_text(record("q1", "a1") + record("q1", "a2"))
    (tmp_path / "two.jsonl").write_text(record("q1", "a3") + record(None, "a4"))
    raw = get_adapter("chatbot_arena")(tmp_path, _spec("chatbot_arena"), {})
    convs = _by_conversation(normalize_rows(raw, max_turn_chars=16_000).turns)
    answers = sorted(texts[1] for cid, texts in convs.items() if cid.endswith(":a"))
    assert answers == ["a1", "a2", "a3", "a4"]  # four records, four conversations per side


def test_chatbot_arena_a_filtered_record_with_empty_conversations_is_still_counted(tmp_path: Path) -> None:
    """A record is never dropped unseen (as add_messages counts an empty list): a moderated or
    both-bad battle whose two lists are empty made no row at all, in no count."""
    flagged = {
        "question_id": "f",
        "openai_moderation": {"flagged": True},
        "conversation_a": [],
        "conversation_b": [],
    }
    both_bad = {"question_id": "t", "winner": "tie (bothbad)", "conversation_a": [], "conversation_b": []}
    (tmp_path / "d.jsonl").write_text(_jsonl(flagged) + _jsonl(both_bad))
    raw = get_adapter("chatbot_arena")(tmp_path, _spec("chatbot_arena"), {})
    assert raw.select("origin", "filter", "conv_key").rows() == [
        ("d.jsonl:1", "moderation_flagged", "f:a"),
        ("d.jsonl:2", "arena_both_bad", "t:a"),
    ]
    report = normalize_rows(raw, max_turn_chars=16_000).report
    assert report["rows_read"] == 2 and report["rows_filtered"] == {
        "moderation_flagged": 1,
        "arena_both_bad": 1,
    }


@pytest.mark.parametrize(
    ("adapter", "name", "body", "check"),
    [
        ("chitchat", "dataset.json", "[" * 100_000 + "]" * 100_000, "json_parse"),
        ("chitchat", "dataset.json", '{"c": {"messages": [], "n": ' + "9" * 5000 + "}}", "json_parse"),
        ("chatterbot", "deep.yml", "conversations: " + "[" * 20_000 + "]" * 20_000 + "\n", "yaml_parse"),
    ],
)
def test_whole_file_readers_quarantine_what_python_cannot_hold(
    adapter: str, name: str, body: str, check: str, tmp_path: Path
) -> None:
    """json.loads / yaml.compose raise RecursionError on deep nesting and ValueError on a number of
    more than 4300 digits: the file is one quarantined row, not a traceback."""
    (tmp_path / name).write_text(body)
    result = normalize_rows(get_adapter(adapter)(tmp_path, _spec(adapter), {}), max_turn_chars=16_000)
    [(origin, got, reason)] = result.quarantine.select("origin", "check", "reason").rows()
    assert (origin, got) == (f"{name}:1", check)
    assert "nested too deeply" in reason or "4300 digits" in reason
    report = result.report
    assert report["rows_read"] == report["rows_kept"] + report["rows_quarantined"] == 1


def test_chatterbot_refuses_yaml_aliases(tmp_path: Path) -> None:
    """Each alias re-reads its anchor's node: 300 aliases of a 300-line list made 90,000 rows of a
    few KB (square in the file's size). A file with an alias is one quarantined row naming its line."""
    lines = "".join(f"    - line {i}\n" for i in range(300))
    body = "x: &a\n" + lines + "conversations:\n" + "  - *a\n" * 300
    (tmp_path / "bomb.yml").write_text(body)
    (tmp_path / "fine.yml").write_text("conversations:\n  - [Hi, Hello]\n")
    result = normalize_rows(
        get_adapter("chatterbot")(tmp_path, _spec("chatterbot"), {}), max_turn_chars=16_000
    )
    [(origin, check, reason)] = result.quarantine.select("origin", "check", "reason").rows()
    assert (origin, check) == ("bomb.yml:303", "yaml_parse") and "aliases" in reason
    assert result.turns.height == 2  # the other file is read as ever
    assert result.report["rows_read"] == result.report["rows_kept"] + result.report["rows_quarantined"] == 3


def _chatterbot_turns(folder: Path, options: dict | None = None) -> dict[str, list[tuple[str, str]]]:
    result = normalize_rows(
        get_adapter("chatterbot")(folder, _spec("chatterbot", options), {}), max_turn_chars=16_000
    )
    report = result.report
    assert report["rows_read"] == report["rows_kept"] + report["rows_quarantined"]
    out: dict[str, list[tuple[str, str]]] = {}
    for cid, role, text in result.turns.select("conversation_id", "role", "text").rows():
        out.setdefault(cid, []).append((role, text))
    return out


def test_chatterbot_answer_variants_are_one_conversation_per_reply(tmp_path: Path) -> None:
    """chatterbot-corpus english/computers.yml and emotion.yml write a statement then its alternative
    replies in one list (gunthercox/chatterbot-corpus#80). Read as a dialogue, the second reply was a
    human turn and the third the bot's answer to it; a file named in `answer_variants` gives one
    conversation per reply, and a file not named is still read as a dialogue."""
    (tmp_path / "data").mkdir()
    lists = (
        "conversations:\n"
        "- - Which is better Windows or macOS?\n"
        "  - It depends on which machine you're using to talk to me!\n"
        "  - I'd prefer to not hurt your feelings.\n"
        "  - Linux, always Linux!\n"
        "- - Are you sad?\n"
        "  - No.\n"
    )
    (tmp_path / "data" / "computers.yml").write_text(lists)
    (tmp_path / "data" / "talk.yml").write_text(lists)
    turns = _chatterbot_turns(tmp_path, {"answer_variants": ["data/computers.yml"]})
    q = ("human", "Which is better Windows or macOS?")
    assert turns["chatterbot:data/computers:0/1"] == [
        q,
        ("bot", "It depends on which machine you're using to talk to me!"),
    ]
    assert turns["chatterbot:data/computers:0/2"] == [q, ("bot", "I'd prefer to not hurt your feelings.")]
    assert turns["chatterbot:data/computers:0/3"] == [q, ("bot", "Linux, always Linux!")]
    assert turns["chatterbot:data/computers:1"] == [
        ("human", "Are you sad?"),
        ("bot", "No."),
    ]  # a pair: as ever
    assert "chatterbot:data/computers:0" not in turns  # no dialogue of the replies
    # A file not named stays a dialogue: four turns, alternating.
    assert [r for r, _ in turns["chatterbot:data/talk:0"]] == ["human", "bot", "human", "bot"]
    # Without the option every file is a dialogue.
    plain = _chatterbot_turns(tmp_path)
    assert plain["chatterbot:data/computers:0"][2] == ("human", "I'd prefer to not hurt your feelings.")


def test_chatterbot_answer_variants_must_name_a_data_file(tmp_path: Path) -> None:
    """A misspelt path would leave its file read as dialogues without a word: refused, naming it."""
    from pipeline.sources.errors import SourceError

    (tmp_path / "a.yml").write_text("conversations:\n- [Hi, Hello, Hey]\n")
    with pytest.raises(SourceError, match=r"answer_variants names b\.yml.*its files: a\.yml"):
        get_adapter("chatterbot")(tmp_path, _spec("chatterbot", {"answer_variants": ["b.yml"]}), {})
    with pytest.raises(SourceError, match="answer_variants must be a list"):
        get_adapter("chatterbot")(tmp_path, _spec("chatterbot", {"answer_variants": "a.yml"}), {})


def test_default_chatterbot_reads_the_corpus_variant_files_as_variants() -> None:
    """sources.yaml names the two chatterbot-corpus files whose lists are alternative replies, and
    both are files of the installed package (a renamed file would stop the stage, not pass)."""
    import chatterbot_corpus

    from pipeline.sources.registry import load_registry

    spec = load_registry()["chatterbot"]
    named = spec.options["answer_variants"]
    assert named == ["data/english/computers.yml", "data/english/emotion.yml"]
    package = Path(chatterbot_corpus.__file__).parent
    assert all((package / rel).is_file() for rel in named)


def test_line_reader_limit_is_exact_and_reading_goes_on(tmp_path: Path) -> None:
    """A line of `max_bytes` bytes (before its LF) reads; one byte more is `line_length` with its
    full size and a short preview, and the next lines keep their numbers."""
    from pipeline.sources.readers import iter_lines

    path = tmp_path / "a.txt"
    path.write_bytes(b"a" * 16 + b"\n" + b"b" * 17 + b"\n" + b"c" * 40 + b"\r\nlast")
    records = list(iter_lines(path, max_bytes=16))
    assert [(r.line, r.value, r.check) for r in records] == [
        (1, "a" * 16, None),
        (2, None, "line_length"),
        (3, None, "line_length"),
        (4, "last", None),
    ]
    assert records[1].reason == "line of 17 bytes, over the limit of 16 bytes a line may hold; not read"
    assert records[2].reason.startswith("line of 41 bytes") and records[2].raw == "c" * 17 + "…"


def test_empathetic_dialogues_ninth_field_is_not_text(tmp_path: Path) -> None:
    """ParlAI's reader takes 8 or 9 fields (the 9th: `|`-separated label candidates of valid/test
    rows); a 9-field row is read, and its candidates never become turn text; 10 fields stay bad."""
    folder = tmp_path / "empatheticdialogues"
    folder.mkdir()
    (folder / "test.csv").write_text(
        "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"
        "hit:1_conv:2,1,afraid,p,1,I heard a noise,,,\n"
        "hit:1_conv:2,2,afraid,p,0,What was it?,,,It was a cat|What was it?\n"
        "hit:1_conv:2,3,afraid,p,1,Just the cat,,,a|b,extra\n"
    )
    result = normalize_rows(get_adapter("empathetic_dialogues")(tmp_path, _spec("empathetic_dialogues"), {}))
    assert _by_conversation(result.turns) == {
        "empathetic_dialogues:hit:1_conv:2": ["I heard a noise", "What was it?"]
    }
    [(origin, check, reason)] = result.quarantine.select("origin", "check", "reason").rows()
    assert (origin, check) == ("empatheticdialogues/test.csv:4", "csv_fields")
    assert reason == "10 comma-separated fields, expected 6 to 9"


def test_twitter_reads_the_gzipped_dump(tmp_path: Path) -> None:
    """chat_corpus serves twitter_en.txt.gz: read through gzip, same turns as the plain file."""
    plain = _run("twitter", FIXTURES / "twitter")
    (tmp_path / "twitter_en.txt.gz").write_bytes(
        gzip.compress((FIXTURES / "twitter" / "twitter_en.txt").read_bytes())
    )
    packed = _run("twitter", tmp_path)
    assert packed.turns["text"].to_list() == plain.turns["text"].to_list() != []
    assert set(packed.turns["conversation_id"]) == {
        cid.replace("twitter_en.txt:", "twitter_en.txt.gz:") for cid in plain.turns["conversation_id"]
    }
    assert Counter(packed.quarantine["check"]) == Counter(plain.quarantine["check"])


def test_arithmetic_reads_the_hub_parquet(tmp_path: Path) -> None:
    """EleutherAI/arithmetic is parquet now (arithmetic_<task>/validation-*.parquet, columns context
    and completion): the question and answer become a conversation; a null completion is quarantined."""
    result = _run("arithmetic", FIXTURES / "arithmetic_parquet")
    assert _by_conversation(result.turns) == {
        "arithmetic:arithmetic_2da/validation-00000-of-00001:1": ["What is 98 plus 45?", "143"]
    }
    by_origin = dict(result.quarantine.select("origin", "check").rows())
    assert by_origin["arithmetic_2da/validation-00000-of-00001.parquet:2/completion"] == "missing_field"
    assert by_origin["arithmetic_2da/validation-00000-of-00001.parquet:3/completion"] == "text_present"


def test_babylm_reads_the_hub_text_files(tmp_path: Path) -> None:
    """cambridge-climb/BabyLM holds <variant>/<split>/<domain>.txt files (not *.train)."""
    target = tmp_path / "original" / "100M"
    target.mkdir(parents=True)
    shutil.copy(FIXTURES / "babylm" / "switchboard.train", target / "switchboard.txt")
    result = _run("babylm", tmp_path)
    assert _by_conversation(result.turns)["babylm:original/100M/switchboard.txt:1"] == [
        "Okay.\nSo what do you think?",
        "Well, I don't know.",
    ]


def test_hackernews_parquet_with_float_parents_keeps_its_threads(tmp_path: Path) -> None:
    """OpenPipe/hacker-news parquet stores `parent` as float64 and carries more columns (time, url,
    score, ...): the threads read as from the API's JSON (extra fields are dropped as items are read)."""
    records = [
        json.loads(line) for line in (FIXTURES / "hackernews" / "items.jsonl").read_bytes().splitlines()[:13]
    ]
    for r in records:
        r.pop("kids", None)  # replies found through `parent` alone
        r["url"], r["score"] = "https://example.com", 1.0
    frame = pl.DataFrame(records, schema_overrides={"parent": pl.Float64}, infer_schema_length=None)
    frame.write_parquet(tmp_path / "train-00000-of-00034-abc.parquet")
    result = _run("hackernews", tmp_path)
    assert _by_conversation(result.turns)["hackernews:2"] == [
        "I think this > that.\nSecond para",
        "Disagree: link",
        "Fair 'point'",
    ]
    assert set(result.turns.filter(pl.col("conversation_id") == "hackernews:2")["context"]) == {
        "Hacker News: Ask HN: What & why?"
    }


# The Hub serves oasst1 and chatbot_arena as parquet (sources.yaml `files: ["data/*.parquet"]`), with
# nested columns the JSON-lines fixtures above do not have. Schemas as the dataset cards' `dataset_info`
# declare them: huggingface.co/datasets/OpenAssistant/oasst1 (README.md) and
# lmsys/chatbot_arena_conversations (README.md; the same card as its mirror
# agie-ai/lmsys-chatbot_arena_conversations).
_DETOXIFY = (
    "toxicity",
    "severe_toxicity",
    "obscene",
    "identity_attack",
    "insult",
    "threat",
    "sexual_explicit",
)
_OASST_SCHEMA = pa.schema(
    [
        *[(name, pa.string()) for name in ("message_id", "parent_id", "user_id", "created_date", "text")],
        ("role", pa.string()),
        ("lang", pa.string()),
        ("review_count", pa.int32()),
        ("review_result", pa.bool_()),
        ("deleted", pa.bool_()),
        ("rank", pa.int32()),
        ("synthetic", pa.bool_()),
        ("model_name", pa.string()),
        ("detoxify", pa.struct([(k, pa.float64()) for k in _DETOXIFY])),
        ("message_tree_id", pa.string()),
        ("tree_state", pa.string()),
        ("emojis", pa.struct([("name", pa.list_(pa.string())), ("count", pa.list_(pa.int32()))])),
        (
            "labels",
            pa.struct(
                [
                    ("name", pa.list_(pa.string())),
                    ("value", pa.list_(pa.float64())),
                    ("count", pa.list_(pa.int32())),
                ]
            ),
        ),
    ]
)


def test_oasst1_reads_the_hub_parquet(tmp_path: Path) -> None:
    """data/train-*.parquet with the card's nested columns (detoxify, emojis, labels) and int32 rank:
    the best-ranked thread is kept, as from the .messages.jsonl export."""
    msgs = [
        json.loads(line)
        for line in (FIXTURES / "oasst1" / "2023-04-12_oasst_all.messages.jsonl")
        .read_bytes()
        .splitlines()[:7]
    ]
    for msg in msgs:
        msg["emojis"] = {"name": ["+1"], "count": [2]}
        msg["labels"] = {"name": ["spam"], "value": [0.0], "count": [3]}
        msg["detoxify"] = {k: 0.01 for k in _DETOXIFY}
    (tmp_path / "data").mkdir()
    pq.write_table(
        pa.Table.from_pylist(msgs, schema=_OASST_SCHEMA), tmp_path / "data" / "train-00000-of-00001.parquet"
    )
    result = _run("oasst1", tmp_path)
    assert _by_conversation(result.turns) == {
        "oasst1:p1": [
            "Can you explain tides?",
            "Best answer: the moon's gravity.",
            "And the sun?",
            "The sun matters too, less so.",
        ]
    }
    assert result.quarantine.height == 0


_MODERATION = (
    "harassment",
    "harassment/threatening",
    "hate",
    "self-harm",
    "sexual",
    "sexual/minors",
    "violence",
)


def test_chatbot_arena_reads_the_hub_parquet(tmp_path: Path) -> None:
    """data/train-*.parquet: conversation_a/_b as lists of {content, role} structs, openai_moderation
    and toxic_chat_tag as nested structs (category names with `/` and `-`)."""
    tag = pa.struct([("flagged", pa.bool_()), ("probability", pa.float64())])
    conv = pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))
    categories = pa.struct([(c, pa.bool_()) for c in _MODERATION])
    scores = pa.struct([(c, pa.float64()) for c in _MODERATION])
    schema = pa.schema(
        [
            *[(name, pa.string()) for name in ("question_id", "model_a", "model_b", "winner", "judge")],
            ("conversation_a", conv),
            ("conversation_b", conv),
            ("turn", pa.int64()),
            ("anony", pa.bool_()),
            ("language", pa.string()),
            ("tstamp", pa.float64()),
            (
                "openai_moderation",
                pa.struct([("categories", categories), ("category_scores", scores), ("flagged", pa.bool_())]),
            ),
            ("toxic_chat_tag", pa.struct([("roberta-large", tag), ("t5-large", tag)])),
        ]
    )
    records = [
        json.loads(line)
        for line in (FIXTURES / "chatbot_arena" / "train.jsonl").read_bytes().splitlines()[:3]
    ]
    for rec in records:
        flagged = rec["openai_moderation"]["flagged"]
        rec["openai_moderation"] = {
            "categories": {c: False for c in _MODERATION},
            "category_scores": {c: 0.0 for c in _MODERATION},
            "flagged": flagged,
        }
        clean = {"flagged": False, "probability": 0.01}
        rec["toxic_chat_tag"] = {"roberta-large": clean, "t5-large": clean}
    (tmp_path / "data").mkdir()
    pq.write_table(
        pa.Table.from_pylist(records, schema=schema), tmp_path / "data" / "train-00000-of-00001.parquet"
    )
    result = _run("chatbot_arena", tmp_path)
    assert _by_conversation(result.turns) == {
        "chatbot_arena:q1:b": ["What is the capital of France?", "The capital is Paris."]
    }
    assert result.report["rows_filtered"] == {
        "arena_not_preferred": 2,
        "moderation_flagged": 4,
        "language": 4,
    }


def _incompressible_lines(n: int, fmt: str) -> bytes:
    rng = random.Random(0)
    return "".join(fmt.format(i=i, w=rng.getrandbits(128)) for i in range(n)).encode()


@pytest.mark.parametrize(
    ("reader", "name", "head", "line"),
    [
        (readers.iter_lines, "t.txt.gz", "", "line {i} {w:x}\n"),
        (readers.iter_jsonl, "t.jsonl.gz", "", '{{"i": {i}, "w": "{w:x}"}}\n'),
        (readers.iter_csv, "t.csv.gz", "i,w\n", "{i},{w:x}\n"),
        (readers.iter_json_records, "t.json.gz", "[", '{{"w": "{w:x}"}},'),
    ],
)
def test_damaged_gzip_keeps_what_came_before_and_quarantines_the_rest(
    tmp_path: Path, reader, name: str, head: str, line: str
) -> None:
    """A download cut short, or an error page saved as .gz: records up to the damage, then one
    `gzip` record naming where reading stopped, never a traceback."""
    data = gzip.compress(head.encode() + _incompressible_lines(4000, line))
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    recs = list(reader(path))
    *before, last = recs
    assert last.check == "gzip" and "EOFError" in last.reason
    assert all(r.ok for r in before)
    if name != "t.json.gz":  # a whole-file JSON list is one value: nothing of it is readable
        assert len(before) > 1000 and last.line == before[-1].line + 1
        assert f"after record {before[-1].line:,}" in last.reason
    path.write_bytes(b"<html>404 Not Found</html>\n")
    (only,) = list(reader(path))
    assert only.check == "gzip" and "BadGzipFile" in only.reason and "before its first record" in only.reason


def test_twitter_damaged_gzip_is_quarantined_and_counts_reconcile(tmp_path: Path) -> None:
    lines = _incompressible_lines(3000, "hello {i} {w:x}\n").decode().splitlines()
    text = "".join(f"{q}\n{a}\n" for q, a in zip(lines[::2], lines[1::2], strict=True))
    data = gzip.compress(text.encode())
    (tmp_path / "twitter_en.txt.gz").write_bytes(data[: len(data) // 2])
    result = normalize_rows(get_adapter("twitter")(tmp_path, _spec("twitter"), {}), max_turn_chars=16_000)
    damaged = result.quarantine.filter(pl.col("check") == "gzip")
    assert damaged.height == 1 and damaged["origin"][0].startswith("twitter_en.txt.gz:")
    assert result.turns.height > 500  # what was read before the damage is kept
    r = result.report
    assert r["rows_read"] == r["rows_kept"] + r["rows_quarantined"] + sum(r["rows_filtered"].values())


def _reconciles(report: dict) -> bool:
    return report["rows_read"] == report["rows_kept"] + report["rows_quarantined"] + sum(
        report["rows_filtered"].values()
    )


def _read(adapter: str, folder: Path, options: dict | None = None):
    return normalize_rows(get_adapter(adapter)(folder, _spec(adapter, options), {}), max_turn_chars=16_000)


def test_twitter_pairs_go_by_line_position(tmp_path: Path) -> None:
    """chat_corpus: odd lines are tweets, even lines their replies. A blank line is an empty tweet
    (quarantined, counted), not a boundary that shifted every later pair by one; a CR inside an LF
    line is part of its tweet, not a line end that would shift them too."""
    lines = [
        "tweet one",
        "reply one",
        "",
        "reply to an emptied tweet",
        "tweet three",
        "reply\rthree",
        "t4",
        "r4",
    ]
    (tmp_path / "twitter_en.txt").write_bytes(("\n".join(lines) + "\n").encode())
    result = _read("twitter", tmp_path, {"pairs": True})
    assert _by_conversation(result.turns) == {
        "twitter:twitter_en.txt:1": ["tweet one", "reply one"],
        "twitter:twitter_en.txt:5": ["tweet three", "reply\nthree"],
        "twitter:twitter_en.txt:7": ["t4", "r4"],
    }
    assert result.quarantine.select("origin", "check").rows() == [
        ("twitter_en.txt:3", "text_present"),
        ("twitter_en.txt:4", "has_bot_turn"),
    ]
    assert result.report["rows_read"] == len(lines) and _reconciles(result.report)
    # an old Mac file (lone CRs only) is read by CR, and pairs the same way
    (tmp_path / "twitter_en.txt").write_bytes(
        ("\r".join(lines).replace("reply\rthree", "r3") + "\r").encode()
    )
    mac = _read("twitter", tmp_path, {"pairs": True})
    assert _by_conversation(mac.turns)["twitter:twitter_en.txt:5"] == ["tweet three", "r3"]
    assert _by_conversation(mac.turns)["twitter:twitter_en.txt:7"] == ["t4", "r4"]


def test_ubuntu_record_without_an_utterance_is_counted(tmp_path: Path) -> None:
    """A v2 record whose Context and response hold nothing (empty, or separators alone) gave no row
    at all: now one quarantined row, so every record is accounted for."""
    (tmp_path / "train.csv").write_text(
        "Context,Utterance,Label\nhi there __eou__ __eot__,hello __eou__,1\n,,1\n__eou__ __eot__,__eou__,1\n"
    )
    result = _read("ubuntu", tmp_path)
    assert _by_conversation(result.turns) == {"ubuntu:train:2": ["hi there", "hello"]}
    assert result.quarantine.select("origin", "check").rows() == [
        ("train.csv:3", "missing_field"),
        ("train.csv:4", "missing_field"),
    ]
    assert "record holds no utterance" in result.quarantine["reason"][0]
    assert result.report["rows_read"] == 4 and _reconciles(result.report)


def test_oasst1_malformed_replies_are_quarantined_not_a_traceback(tmp_path: Path) -> None:
    """A `replies` entry that is not an object, or a `replies` that is not a list, was an
    AttributeError; now one quarantined row naming it, and the tree's good thread still stands."""

    def msg(mid: str, role: str, text: str, **kw: object) -> dict:
        return {"message_id": mid, "role": role, "text": text, "lang": "en", **kw}

    trees = [
        {
            "message_tree_id": "t1",
            "prompt": msg("a", "prompter", "hi", replies=["oops", msg("b", "assistant", "yo")]),
        },
        {"message_tree_id": "t2", "prompt": msg("c", "prompter", "hey", replies={"d": 1})},
    ]
    (tmp_path / "x.trees.jsonl").write_text("".join(_jsonl(t) for t in trees))
    result = _read("oasst1", tmp_path)
    assert _by_conversation(result.turns) == {"oasst1:t1": ["hi", "yo"]}
    bad = result.quarantine.filter(pl.col("check") == "missing_field")
    assert bad.select("origin", "reason").rows() == [
        ("x.trees.jsonl:1/prompt.replies[0]", "prompt.replies[0] is a str, not a message object"),
        ("x.trees.jsonl:2/prompt.replies", "prompt.replies is a dict, not a list"),
    ]
    assert _reconciles(result.report)


def test_hackernews_parent_and_kids_must_be_item_ids(tmp_path: Path) -> None:
    """A list as `parent` or inside `kids` was a TypeError (unhashable): the item is quarantined,
    naming it; a null inside `kids` (a gap in a parquet list) names nothing and is left out."""
    items = [
        {"id": 1, "type": "story", "title": "t", "kids": [2]},
        {"id": 2, "parent": 1, "by": "u", "text": "q", "kids": [3, None]},
        {"id": 3, "parent": 2, "by": "v", "text": "a"},
        {"id": 4, "parent": [1], "by": "w", "text": "x"},
        {"id": 5, "parent": 1, "by": "w", "text": "y", "kids": [[6]]},
    ]
    (tmp_path / "h.jsonl").write_text("".join(_jsonl(i) for i in items))
    result = _read("hackernews", tmp_path)
    assert _by_conversation(result.turns) == {"hackernews:2": ["q", "a"]}
    assert result.quarantine.select("origin", "check", "reason").rows() == [
        ("h.jsonl:4", "missing_field", "item 4: `parent` must be an item id, not [1]"),
        ("h.jsonl:5", "missing_field", "item 5: `kids` must be a list of item ids, not [[6]]"),
    ]
    assert _reconciles(result.report)


@pytest.mark.parametrize("packing", ["bom", "gzip"])
def test_whole_file_adapters_read_gzip_and_a_byte_order_mark(tmp_path: Path, packing: str) -> None:
    """chitchat and chatterbot read a file in one piece: a .gz (which data_files selects) or a UTF-8
    byte-order mark made the whole file one quarantined row."""
    chit = json.dumps(
        {"c1": {"messages": [[{"text": "hi", "sender": "a"}], [{"text": "hello", "sender": "b"}]]}}
    )
    yml = "categories: [x]\nconversations:\n- - hi\n  - hello\n"
    for adapter, name, text in (("chitchat", "dataset.json", chit), ("chatterbot", "a.yml", yml)):
        folder = tmp_path / adapter
        folder.mkdir()
        data = text.encode()
        if packing == "gzip":
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(readers.BOM + data)
        result = _read(adapter, folder)
        assert result.turns["text"].to_list() == ["hi", "hello"], adapter
        assert result.quarantine.height == 0, adapter


def test_whole_file_adapters_quarantine_a_damaged_gzip(tmp_path: Path) -> None:
    (tmp_path / "dataset.json.gz").write_bytes(b"<html>404</html>")
    result = _read("chitchat", tmp_path)
    [(origin, check, reason)] = result.quarantine.select("origin", "check", "reason").rows()
    assert (origin, check) == ("dataset.json.gz:1", "gzip") and "BadGzipFile" in reason


def test_chitchat_joins_a_message_cut_at_the_apps_limit_with_its_rest(tmp_path: Path) -> None:
    """chitchat's app cut a message at 175 characters and sent the rest as the sender's next one: the
    two are one row joined with a space (a newline split the sentence), a chain of cuts is one row,
    and the origin names every piece. A cut message that ends its turn, or whose next utterance is
    unreadable or from another sender, stays a row of its own, as read; a 174-character one is not
    a cut."""
    from pipeline.sources.adapters.chitchat import UPSTREAM_CUT

    cut, cut2 = "a" * (UPSTREAM_CUT - 5) + " I re", "b" * UPSTREAM_CUT
    short = "c" * (UPSTREAM_CUT - 1)

    def u(text: str | None, sender: str = "x") -> dict:
        return {"sender": sender} if text is None else {"text": text, "sender": sender}

    messages = [
        [u(cut), u("ally think so"), u("New line")],  # the cut and its rest, then a message of its own
        [u("reply", "y")],
        [u(cut), u(cut2), u("the rest")],  # a chain of cuts
        [u(cut2, "y")],  # a cut that ends its turn
        [u(cut), u(None), u("after a bad one"), u(short), u("not cut")],
        [u(cut2, "y"), u("from another sender", "z")],
    ]
    (tmp_path / "dataset.json").write_text(json.dumps({"c": {"messages": messages}}))
    raw = get_adapter("chitchat")(tmp_path, _spec("chitchat"), {})
    good = raw.filter(pl.col("check").is_null())
    assert good.select("origin", "text").rows() == [
        ("dataset.json:c/0/0-1", f"{cut} ally think so"),
        ("dataset.json:c/0/2", "New line"),
        ("dataset.json:c/1/0", "reply"),
        ("dataset.json:c/2/0-2", f"{cut} {cut2} the rest"),
        ("dataset.json:c/3/0", cut2),
        ("dataset.json:c/4/0", cut),
        ("dataset.json:c/4/2", "after a bad one"),
        ("dataset.json:c/4/3", short),
        ("dataset.json:c/4/4", "not cut"),
        ("dataset.json:c/5/0", cut2),
        ("dataset.json:c/5/1", "from another sender"),
    ]
    assert raw.filter(pl.col("check").is_not_null())["origin"].to_list() == ["dataset.json:c/4/1"]
    result = _read("chitchat", tmp_path)
    assert result.turns["text"][0] == f"{cut} ally think so\nNew line"
    assert _reconciles(result.report)


@pytest.mark.parametrize("adapter", ["hackernews", "arithmetic", "chatbot_arena"])
def test_a_record_that_is_no_object_is_quarantined_saying_what_it_is(tmp_path: Path, adapter: str) -> None:
    """_records.objects read a JSONL line holding a list, a string or a number as {}: the adapter
    then quarantined it as an object missing its fields (`item has no integer id`; arithmetic twice,
    once per field), and its text was lost. Now it is one row saying what it is, with its line, as
    the contrib path words it."""
    lines = ["[1, 2]", '"hello"', "42", "null", "true"]
    (tmp_path / "r.jsonl").write_text("".join(f"{line}\n" for line in lines))
    result = _read(adapter, tmp_path)
    kinds = ["list", "string", "number", "null", "true/false"]
    assert result.quarantine.select("origin", "check", "reason", "text").rows() == [
        (f"r.jsonl:{i}", "missing_field", f"record is a JSON {kind}, not an object", line)
        for i, (line, kind) in enumerate(zip(lines, kinds, strict=True), start=1)
    ]
    assert result.report["rows_read"] == len(lines) and _reconciles(result.report)
