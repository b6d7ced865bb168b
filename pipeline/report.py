"""Printed after `make repro`: where the artifacts are, the headline metrics, a sample exchange."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.cli import EXIT_BROKEN_PIPE, silence_stdout
from pipeline.errortext import first_line
from pipeline.terminal import inert, printable
from pipeline.transcripts import NO_PERSONA, plain_text

ARTIFACTS = [
    ("raw downloads + manifests", "data/raw/"),
    ("normalized turn tables", "data/normalized/"),
    ("quarantined rows (with reasons)", "data/quarantine/"),
    ("datasets: full / commercial", "data/dataset/"),
    ("token shards", "data/tokens/"),
    ("checkpoint (safetensors)", "model/ckpt/"),
    ("Hugging Face export", "model/hf/"),
    ("evaluation", "model/eval/"),
]


def _metric(path: str, key: str) -> str:
    p = Path(path)
    if not p.exists():
        return "-"
    # A file cut short, not UTF-8 or not an object (a crash mid-write, an edit): said, where it was
    # a traceback ending the report after its first lines.
    try:
        metrics = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return f"({path} is unreadable: {printable(first_line(e))})"
    if not isinstance(metrics, dict):
        return f"({path} is not a JSON object)"
    value = metrics.get(key)
    if value is None:  # absent, or null: not measured (an empty val split, NaN weights); not "None"
        return "-"
    # a hand-edited string may hold an escape code: shown, not run
    return f"{value:.3f}" if isinstance(value, float) else printable(str(value))


# `make repro` puts .venv/bin on its own PATH only: a bare `nanochatgpt` or `dvc` suggested here
# is "command not found" in the user's shell until the environment is activated.
VENV_BIN = ".venv/bin/"

TURN_PREFIXES = ("**human:**", "**bot:**")
PERSONA_PREFIX = "*persona:*"


def sample_exchange(transcripts: Path, max_lines: int = 12) -> list[str]:
    """Whole conversations of the evaluation transcripts as plain lines, a blank line between them.

    As many conversations as fit in `max_lines` (the first one always, cut at `max_lines`), so a
    turn is never shown beside a turn of another conversation. A persona is shown when there is
    one, and a text the model broke over lines keeps its later lines (indented under its text).

    The file's structure (`## Conversation N`, `*persona:*`, `**human:**`, `**bot:**`) starts at
    the margin, and pipeline.transcripts.transcripts_markdown indents every later line of a text: an
    indented line always continues the text above, whatever it says ("## Step 1" in a reply is text).
    Texts are shown as written: the Markdown escapes the file adds are dropped (plain_text).
    """
    if not transcripts.exists():
        return [f"(no transcripts: run `{VENV_BIN}dvc repro evaluate`)"]
    try:
        text = transcripts.read_text(encoding="utf-8")
    except (OSError, ValueError) as e:  # not UTF-8 (a UnicodeDecodeError), a folder: said, not a traceback
        return [f"({transcripts} is unreadable: {printable(first_line(e))})"]
    conversations: list[list[str]] = []
    indent = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if raw[:1].isspace():  # a later line of the text above (a blank one is left out here)
            if conversations and conversations[-1] and line.strip():
                conversations[-1].append(indent + plain_text(line.strip()))
        elif line.startswith("## "):  # "## Conversation N" starts the next one
            conversations.append([])
        elif not conversations or not line:  # the title, blank lines between exchanges
            continue
        elif line.startswith(PERSONA_PREFIX):
            persona = line.removeprefix(PERSONA_PREFIX).strip()
            if persona != NO_PERSONA:
                conversations[-1].append(f"persona: {plain_text(persona)}")
                indent = " " * len("persona: ")
        elif line.startswith(TURN_PREFIXES):
            speaker, text = line.split(":**", 1)
            head = f"{speaker.removeprefix('**')}:"
            conversations[-1].append(f"{head} {plain_text(text.strip())}")
            indent = " " * (len(head) + 1)
        else:  # a file written before later lines were indented: the old reading
            conversations[-1].append(indent + plain_text(line.strip()))
    shown: list[str] = []
    for conversation in conversations:
        block = ([""] if shown else []) + conversation
        if shown and len(shown) + len(block) > max_lines:
            break
        shown.extend(block)
    # The model's text, shown at a terminal: its escape codes written out, never run (terminal.inert).
    return [inert(line) for line in shown[:max_lines]] or ["(no conversations in the transcripts)"]


def main() -> None:
    print("\nnanoChatGPT artifacts")
    for label, path in ARTIFACTS:
        print(f"  {label:34s} {path}{'' if Path(path).exists() else '  (missing)'}")
    print(f"\nmetrics ({VENV_BIN}dvc metrics show for all)")
    print(f"  train: final val loss {_metric('model/metrics.json', 'val_loss')}")
    print(
        f"  eval:  val loss on bot tokens {_metric('model/eval/metrics.json', 'val_loss_bot')}, "
        f"stop rate {_metric('model/eval/metrics.json', 'stop_rate')}"
    )
    print("\nsample exchange (model/eval/transcripts.md)")
    for line in sample_exchange(Path("model/eval/transcripts.md")):
        print(f"  {line}" if line else "")
    print(f"\nchat with it: {VENV_BIN}nanochatgpt chat --context 'You are a cheerful pirate.'")
    print(f"serve it:     {VENV_BIN}nanochatgpt serve   (OpenAI-style API on http://127.0.0.1:8000)")
    print(
        f"see its data: {VENV_BIN}nanochatgpt tokens  (what the loss counts)  |  {VENV_BIN}nanochatgpt quarantine"
    )
    print("(or `source .venv/bin/activate` once per shell, then the bare commands)")


def run() -> int:
    """main(), quiet when its reader leaves: `python -m pipeline.report | head -3` printed a
    BrokenPipeError traceback, and Python's last flush of stdout another."""
    try:
        main()
    except BrokenPipeError:
        silence_stdout()
        return EXIT_BROKEN_PIPE
    return 0


if __name__ == "__main__":
    sys.exit(run())
