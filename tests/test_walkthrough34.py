"""Session 34's walkthrough as a contributor and a commercial-only team: what the docs promised and
the commands did not say."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.sources.contrib import scan_contrib
from pipeline.sources.errors import SourceError

MIT = {"licence": "MIT", "commercial": True, "description": "test"}


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        # CONTRIBUTING: "there is no first record to guess the format from"; the refusal only said
        # to name a format or convert a CSV, and named the format, the next run said it was empty
        ("[]\n", r"\(it is an empty list: no record to guess the format from\)"),
        (" [\n ]\n", r"\(it is an empty list: no record to guess the format from\)"),
        # another tool's columns: the .jsonl refusal named the keys it found, the .json one nothing
        ('[{"dialog": [], "title": "x"}]', r"\(its first record's keys: 'dialog', 'title'; no `messages`"),
        ('{"prompt": "hi", "completion": "yo"}', r"\(its first record's keys: 'prompt', 'completion'; "),
        ("[1, 2]", r"\(its first record is a JSON number, not an object\)"),
    ],
)
def test_an_unguessable_json_file_says_what_its_first_record_holds(
    tmp_path: Path, body: str, hint: str
) -> None:
    (tmp_path / "chats.json").write_text(body)
    (tmp_path / "chats.yaml").write_text(yaml.safe_dump(MIT))
    with pytest.raises(SourceError, match=r"chats.json: cannot tell its format " + hint):
        scan_contrib(tmp_path)


@pytest.mark.parametrize("flag", ["--context", "--context-file"])
def test_a_latin1_context_file_is_refused_in_the_words_of_a_latin1_argument(
    tmp_path: Path, flag: str
) -> None:
    """README: a Latin-1 `--context` is refused "as a Latin-1 `--context @FILE` is". The argument
    said "not UTF-8 text: byte 0xE9", the file Python's codec message ("'utf-8' codec can't decode
    byte 0xe9 in position 3: unexpected end of data"), which names neither the fix nor the byte."""
    import argparse

    from pipeline.chat import _read_context

    persona = tmp_path / "persona.txt"
    persona.write_bytes(b"You love caf\xe9s.\n")
    args = (
        argparse.Namespace(context=f"@{persona}", context_file=None)
        if flag == "--context"
        else argparse.Namespace(context=None, context_file=persona)
    )
    with pytest.raises(ValueError) as refused:
        _read_context(args)
    assert str(refused.value) == (
        f"cannot read context file {persona}: not UTF-8 text (byte 0xE9 at byte 12); save it as UTF-8"
    )


def test_quarantine_of_a_file_added_since_normalize_says_how_to_count_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A contributor who ran `nanochatgpt check`, then asked for the new file's quarantine rows,
    read only that it was "not a source of" the report: not that normalize had not run since."""
    from test_quarantine_cli import GOOD, contrib_project

    from pipeline import cli

    project = contrib_project(tmp_path, monkeypatch)
    (project / "data" / "contrib" / "new.txt").write_text(GOOD)
    (project / "data" / "contrib" / "new.yaml").write_text("licence: MIT\ncommercial: true\n")
    assert cli.main(["quarantine", "contrib/new"]) == 1
    assert (
        capsys.readouterr()
        .err.rstrip("\n")
        .endswith(
            "contrib/new: not a source of data/normalized/contrib.report.json (its sources: contrib/mixed); "
            "a file added since that report was written is counted once you run `dvc repro normalize@contrib`"
        )
    )


def test_the_docs_give_the_gpu_models_size_as_its_cpu_refusal_counts_it() -> None:
    """README and params.yaml called `train.profile=gpt2-medium` "the seed's model (353M)" (nanoGPT's
    count, without the position table); the refusal the same command gets on a CPU says "355M
    parameters". A team judging the run read two sizes for one model."""
    import re

    from pipeline.trainconfig import TrainConfig
    from pipeline.trainsetup import training_flops

    root = Path(__file__).resolve().parents[1]
    params = yaml.safe_load((root / "params.yaml").read_text())
    medium = TrainConfig.from_params(
        {**params["train"], "profile": "gpt2-medium", "init_from": "gpt2-medium"}, params["train_profiles"]
    )
    counted = f"{training_flops(medium)[0] / 1e6:,.0f}M"
    for doc in ("README.md", "params.yaml"):
        stated = re.findall(r"the seed's model\s+\((\d+M)\)", (root / doc).read_text())
        assert stated == [counted], doc


@pytest.mark.parametrize(
    ("name", "body", "fmt"),
    [
        ("chats.jsonl.gz", '{"messages": [{"role": "user", "content": "hi"}]}\n', "openai"),
        ("chats.json.gz", '[{"conversations": [{"from": "human", "value": "hi"}]}]', "sharegpt"),
        ("chats.txt.gz", "<human> hi <endOfText>\n<bot> yo <endOfText>\n", "nanochatgpt"),
    ],
)
def test_a_gzipped_file_has_its_format_guessed_as_its_inner_name_says(
    tmp_path: Path, name: str, body: str, fmt: str
) -> None:
    """A .jsonl.gz reads with `format:` set, and a `format:` it contradicts is refused from its
    content; without `format:` it was "cannot tell its format ... (CSV, say) must be converted"."""
    import gzip

    (tmp_path / name).write_bytes(gzip.compress(body.encode()))
    (tmp_path / name).with_suffix(".yaml").write_text(yaml.safe_dump(MIT))
    [found] = scan_contrib(tmp_path)
    assert found.format == fmt
