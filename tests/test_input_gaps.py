"""Gaps an audit of the data input side left open, each closed with a clear error or a quarantined row:
a JSON key given twice (json.loads keeps one value, silently), a symlinked data/contrib folder,
`normalize.max_turn_chars` over the schema's limit reaching the build, a bot-first conversation
reaching `encode.to_batch`, and a `token_env:` naming any environment variable."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import polars as pl
import pytest
import yaml

from pipeline.buildinputs import BuildConfig, BuildError
from pipeline.encode import to_batch
from pipeline.sources.adapters import chitchat, contrib
from pipeline.sources.contrib import contrib_folder, scan_contrib
from pipeline.sources.errors import SourceError
from pipeline.sources.normalize import NormalizeResult, normalize_rows
from pipeline.sources.readers import iter_json_records, iter_jsonl
from pipeline.sources.registry import SourceSpec, load_registry, parse_entry

REPO = Path(__file__).resolve().parents[1]
CONTRIB = SourceSpec("contrib", "contrib", "data/contrib", "contrib", "per-file", False)
MIT = {"licence": "MIT", "commercial": True, "description": "test"}


def _put(folder: Path, name: str, body: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(body.encode() if isinstance(body, str) else body)
    path.with_suffix(".yaml").write_text(yaml.safe_dump(MIT))
    return path


def _pair(q: str, a: str) -> dict:
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def _reconciles(report: dict) -> bool:
    return report["rows_read"] == report["rows_kept"] + report["rows_quarantined"] + sum(
        report["rows_filtered"].values()
    )


def _quarantined(result: NormalizeResult) -> list[tuple[str, str, str]]:
    return result.quarantine.select("origin", "check", "reason").rows()


# ----------------------------------------------------------------------- a JSON key given twice

REPEATED = [
    # a second `messages` list replaced the first: a whole conversation lost, unseen
    (
        '{"messages": [{"role": "user", "content": "lost"}, {"role": "assistant", "content": "lost"}],'
        ' "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}',
        "messages",
    ),
    # a message's second `content` replaced its first
    (
        '{"messages": [{"role": "user", "content": "q", "content": "other"},'
        ' {"role": "assistant", "content": "a"}]}',
        "content",
    ),
    # one key spelled two ways is still one key (JSON escapes): json.loads kept the second
    (
        '{"messages": [{"role": "user", "content": "q", "cont\\u0065nt": "other"},'
        ' {"role": "assistant", "content": "a"}]}',
        "content",
    ),
]


@pytest.mark.parametrize(("line", "key"), REPEATED)
def test_a_jsonl_record_with_a_key_given_twice_is_quarantined_naming_the_key(
    tmp_path: Path, line: str, key: str
) -> None:
    good = json.dumps(_pair("hello", "hi there"))
    _put(tmp_path, "chats.jsonl", f"{good}\n{line}\n{good}\n")
    result = normalize_rows(contrib.read(tmp_path, CONTRIB, {}))
    assert _quarantined(result) == [
        (
            "chats.jsonl:2",
            "duplicate_key",
            f"key {key!r} is given twice in one JSON object (a JSON reader keeps only one value); remove one",
        )
    ]
    assert result.turns["text"].to_list() == ["hello", "hi there"] * 2  # the clean records are all read
    assert _reconciles(result.report) and result.report["rows_read"] == 5
    assert result.quarantine["text"].to_list() == [line]  # the record as it was, for the contributor


def test_a_repeated_key_in_a_json_list_quarantines_only_its_record(tmp_path: Path) -> None:
    records = [json.dumps(_pair("q1", "a1")), REPEATED[1][0], json.dumps(_pair("q3", "a3"))]
    for name, body in (("list.json", f"[{', '.join(records)}]"), ("packed.json.gz", None)):
        path = tmp_path / name
        text = body if body is not None else f"[{', '.join(records)}]"
        path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
        recs = list(iter_json_records(path))
        assert [(r.line, r.check) for r in recs] == [(1, None), (2, "duplicate_key"), (3, None)]
        assert "'content'" in recs[1].reason and recs[1].value is None
        assert [r.value for r in recs if r.ok] == [_pair("q1", "a1"), _pair("q3", "a3")]


def test_the_same_key_in_different_objects_is_no_repeat(tmp_path: Path) -> None:
    """`role` and `content` in every message, an `id` at two levels: all read, nothing quarantined."""
    record = {
        "id": "a",
        "messages": [{"role": "user", "content": "q", "id": "a"}, {"role": "bot", "content": "r"}],
    }
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(record) + "\n" + json.dumps(record) + "\n")
    assert [(r.ok, r.value) for r in iter_jsonl(path)] == [(True, record), (True, record)]


def _chitchat(folder: Path, text: str) -> NormalizeResult:
    (folder / "dataset.json").write_text(text)
    spec = SourceSpec("chitchat", "package", "chitchat_dataset", "chitchat", "MIT", True)
    return normalize_rows(chitchat.read(folder, spec, {}))


def test_chitchat_conversation_with_a_key_given_twice_is_quarantined(tmp_path: Path) -> None:
    """dataset.json's conversations kept the last of a repeated `text` (or `messages`), silently;
    such a conversation is now one quarantined row, and the others are read as before."""
    good = '{"messages": [[{"text": "hi", "sender": "a"}], [{"text": "yo", "sender": "b"}]]}'
    twice = '{"messages": [[{"text": "hi", "sender": "a"}], [{"text": "yo", "sender": "b", "text": "YO"}]]}'
    result = _chitchat(tmp_path, f'{{"c1": {good}, "c2": {twice}, "c3": {good}}}')
    assert _quarantined(result) == [
        (
            "dataset.json:c2",
            "duplicate_key",
            "key 'text' is given twice in one JSON object (a JSON reader keeps only one value); remove one",
        )
    ]
    assert sorted(set(result.turns["conversation_id"])) == ["chitchat:c1", "chitchat:c3"]
    assert _reconciles(result.report)


def test_chitchat_repeated_id_is_still_a_duplicate_id_not_a_duplicate_key(tmp_path: Path) -> None:
    conv = '{"messages": [[{"text": "hi", "sender": "a"}], [{"text": "yo", "sender": "b"}]]}'
    result = _chitchat(tmp_path, f'{{"c1": {conv}, "c1": {conv}}}')
    assert [check for _, check, _ in _quarantined(result)] == ["duplicate_id"]
    assert set(result.turns["conversation_id"]) == {"chitchat:c1"}


# -------------------------------------------------------------------- a symlinked data/contrib


def _registry_entry(name: str) -> dict:
    """The shipped sources.yaml entry of `name`."""
    return dict(yaml.safe_load((REPO / "sources.yaml").read_text())[name])


def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root (real registry and params) without data/contrib/; returns where it goes."""
    (tmp_path / "sources.yaml").write_text((REPO / "sources.yaml").read_text())
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    return tmp_path / "data" / "contrib"


def test_a_symlinked_contrib_folder_is_refused_by_every_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`data/contrib -> <a folder of this machine>` committed in a pull request read that folder
    (its data files and sidecars) into data/raw, as a linked file did before links were refused."""
    from pipeline.check import check_files
    from pipeline.sources.download import download
    from pipeline.sources.fetchspec import fetch_spec
    from pipeline.sources.table import source_rows

    folder = _project(tmp_path, monkeypatch)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _put(elsewhere, "chat.txt", "<human> HF_TOKEN=hf_FAKE_SECRET <endOfText>\n<bot> yo <endOfText>\n")
    folder.symlink_to(Path("..", "elsewhere"))  # as git checks such a link out
    spec = load_registry(tmp_path / "sources.yaml")["contrib"]
    message = "data/contrib: a symbolic link (to '../elsewhere'); commit the folder itself, not a link"

    with pytest.raises(SourceError) as err:
        download(spec, tmp_path)
    assert str(err.value) == message
    assert not (tmp_path / "data" / "raw" / "contrib").exists()
    assert fetch_spec(spec, tmp_path)["contents"] == []  # the registry stage hashes nothing of it
    for read in (lambda: scan_contrib(contrib_folder(spec, tmp_path)), lambda: check_files([], tmp_path)):
        with pytest.raises(SourceError, match=re.escape(message)):
            read()
    assert message in source_rows(tmp_path)[1]  # `nanochatgpt sources` lists the problem
    folder.unlink()
    folder.symlink_to(tmp_path / "nowhere")  # a dangling link is a link, not a missing folder
    with pytest.raises(SourceError, match=r"^data/contrib: a symbolic link \(to '/.*nowhere'\)"):
        scan_contrib(contrib_folder(spec, tmp_path))


def test_a_contrib_folder_the_user_names_may_be_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the committed data/contrib is refused as a link. A `local_path:` folder and a folder named
    to `nanochatgpt check` are the user's own choice (a link is how a folder on another disk is
    kept): both were refused ("commit the folder itself, not a link") once data/contrib was."""
    from pipeline.check import check_files
    from pipeline.sources.download import download

    _project(tmp_path, monkeypatch).mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _put(elsewhere, "chat.txt", "<human> hi <endOfText>\n<bot> yo <endOfText>\n")
    inbox = tmp_path / "inbox"
    inbox.symlink_to(elsewhere)
    summaries, _ = check_files([inbox], tmp_path)
    assert [(s["file"], s["rows_kept"]) for s in summaries] == [
        ("elsewhere/chat.txt", 2)
    ]  # the link resolved
    spec = load_registry(tmp_path / "sources.yaml")["contrib"]
    mine = parse_entry("contrib", {**_registry_entry("contrib"), "local_path": str(inbox)})
    assert contrib_folder(mine, tmp_path) == inbox
    raw = download(mine, tmp_path)
    assert (raw / "chat.txt").read_bytes() == (elsewhere / "chat.txt").read_bytes()
    assert contrib_folder(spec, tmp_path) == tmp_path / "data" / "contrib"  # not a link: taken


def test_a_symlinked_folder_inside_contrib_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Already refused (each entry of data/contrib/ is checked): kept so that it stays so."""
    folder = _project(tmp_path, monkeypatch)
    folder.mkdir()
    _put(folder, "chat.txt", "<human> hi <endOfText>\n<bot> yo <endOfText>\n")
    (tmp_path / "elsewhere").mkdir()
    (folder / "more").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(SourceError, match=r"^data/contrib/more: a symbolic link .*commit the file itself"):
        scan_contrib(folder)


# ------------------------------------------------------------- normalize.max_turn_chars in the build


@pytest.mark.parametrize("value", [16_001, 100_000, "20_000"])
def test_build_refuses_max_turn_chars_over_the_schema_limit(value: object) -> None:
    """The build took 100000 while normalize refused it: now both refuse it with one message."""
    with pytest.raises(BuildError) as err:
        BuildConfig.from_params("full", {"normalize": {"max_turn_chars": value}})
    assert str(err.value) == (
        f"params.yaml normalize.max_turn_chars: expected an integer in [1, 16001), got {value!r}"
    )


def test_build_takes_max_turn_chars_up_to_the_limit() -> None:
    assert BuildConfig.from_params("full", {"normalize": {"max_turn_chars": 16_000}}).max_turn_chars == 16_000
    assert BuildConfig.from_params("full", {}).max_turn_chars == 16_000


# ------------------------------------------------------------------------- to_batch: turn 0 is human


def _frame(*conversations: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "conversation_id": [f"c{i}" for i in range(len(conversations))],
            "messages": [[{"role": r, "content": "x"} for r in roles] for roles in conversations],
            "context": [None] * len(conversations),
            "source": ["s"] * len(conversations),
        },
        schema_overrides={"context": pl.String},
    )


def test_to_batch_refuses_a_conversation_that_opens_with_the_bot() -> None:
    frame = _frame(["human", "bot"], ["bot", "human", "bot"])
    with pytest.raises(ValueError) as err:
        to_batch(frame, "train.parquet", row_offset=10)
    assert str(err.value) == (
        "train.parquet: row 11 (conversation_id 'c1'): its first message is a bot turn; turn 0 must be human"
    )
    assert list(to_batch(_frame(["human", "bot"], ["human"])).columns[1]) == [2, 1]


# -------------------------------------------------------------------------------------- token_env


def _hub_entry(**extra: object) -> dict:
    return {
        "kind": "hf_dataset",
        "location": "org/data",
        "revision": "main",
        "adapter": "oasst1",
        "licence": "MIT",
        "commercial": False,
        **extra,
    }


@pytest.mark.parametrize(
    "name",
    [
        "AWS_SECRET_ACCESS_KEY",
        "GITHUB_TOKEN",
        "AWS_SESSION_TOKEN",
        "hf_token",
        "HOME",
        "HF_TOKEN ",
        "DOCKER_HUB_TOKEN",  # HUB alone names other hubs: this one's secret went to huggingface.co
        "HUB_TOKEN",
    ],
)
def test_token_env_must_name_a_hub_token_variable(name: str) -> None:
    """Its value is sent to the Hub as the bearer token: any variable was accepted."""
    with pytest.raises(SourceError) as err:
        parse_entry("mine", _hub_entry(token_env=name))
    assert str(err.value).startswith(
        f"sources.yaml: mine: `token_env:` {name!r} must name a Hugging Face token"
    )
    assert "HF_TOKEN" in str(err.value)


@pytest.mark.parametrize(
    "name", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_TOKEN", "MY_ORG_HF_TOKEN"]
)
def test_token_env_takes_hub_token_names(name: str) -> None:
    assert parse_entry("mine", _hub_entry(token_env=name)).token_env == name


def test_the_shipped_registry_and_the_default_token_env_still_load() -> None:
    registry = load_registry(REPO / "sources.yaml")
    assert {spec.token_env for spec in registry.values()} == {"HF_TOKEN"}
    assert parse_entry("mine", _hub_entry()).token_env == "HF_TOKEN"


def test_chatterbot_second_conversations_list_is_quarantined_not_dropped(tmp_path: Path) -> None:
    """A YAML file with `conversations:` twice: the second list was left out without a word."""
    from pipeline.sources.adapters import chatterbot

    (tmp_path / "a.yml").write_text(
        "categories: [x]\nconversations:\n- [hi, hello]\nconversations:\n- [lost, unseen]\n"
    )
    spec = SourceSpec("chatterbot", "package", "chatterbot_corpus", "chatterbot", "MIT", True)
    result = normalize_rows(chatterbot.read(tmp_path, spec, {}))
    assert result.turns["text"].to_list() == ["hi", "hello"]
    assert [(o, c) for o, c, _ in _quarantined(result)] == [("a.yml:4", "duplicate_key")]
    assert _reconciles(result.report)
