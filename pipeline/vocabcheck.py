"""Whether a model can read and write every token id the chat tokenizer gives: one check, shared by
every command that loads a checkpoint to chat with, serve, export or evaluate.

A module of its own, not in pipeline/tokenizer.py beside N_VOCAB: the tokenizer is a dependency of
the tokenize and train stages (dvc.yaml), and an edit there would re-run both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.model import GPT


class VocabError(ValueError):
    """The checkpoint has no embedding for some of the chat tokens: one line naming vocab_size."""


# The way out for a model of another vocabulary. A run checkpoint's is to delete it instead: training
# would resume it again (trainsetup).
TRAIN_ONE = "train one with `dvc repro train`"


def check_vocab(
    model: GPT, config_file: str, error: type[ValueError] = VocabError, fix: str = TRAIN_ONE
) -> None:
    """`error` unless `model` has an embedding for every token id the tokenizer writes, naming
    `config_file` (the checkpoint's config.json, where vocab_size is set) and ending with `fix`, the
    way out. A checkpoint of a smaller vocabulary (GPT-2's own 50257, without the chat tokens) failed
    with torch's "IndexError: index out of range in self", naming neither cause nor file: in
    evaluate's val-loss pass, at chat's and serve's first reply, and at the first step of a resumed
    training run; and export wrote a model/hf whose config.json claimed 50260 tokens over 50257 rows
    of weights."""
    from pipeline.tokenizer import N_VOCAB

    if model.config.vocab_size < N_VOCAB:
        raise error(
            f"{config_file} vocab_size: the checkpoint's vocabulary has {model.config.vocab_size} "
            f"tokens, but the tokenizer writes ids up to {N_VOCAB - 1} (GPT-2's BPE and the chat tokens): "
            f"not a model of this tokenizer; {fix}"
        )
