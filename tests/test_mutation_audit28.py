"""Tests from mutation audit 28 (evaluate, chattemplate, streamencoding): each kills a hand-made mutant
that the suite let through; its docstring names the mutation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_train import write_tokens

from pipeline.evaluate import EvalResult, LossReport, bot_token_loss, run_transcripts
from pipeline.model import GPT, GPTConfig
from pipeline.shards import TokenShards

# ---------------------------------------------------------------- evaluate


def _tiny(block_size: int) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=block_size, n_layer=1, n_head=2, n_embd=16)).eval()


def test_the_val_loss_is_the_mean_over_bot_tokens_of_a_plain_forward(tmp_path: Path) -> None:
    """Mutation evaluate.bot_token_loss: `total / count` -> `total / windows` (the loss summed over bot
    tokens but averaged per window). The figure is the mean cross-entropy per bot token (loss mask 1)
    of the eval windows, what a plain full-vocabulary forward gives on those windows."""
    val_dir = write_tokens(tmp_path / "full", n_train=1, n_val=6, seed=5) / "val"
    model = _tiny(32)
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y, m in TokenShards(val_dir).iter_eval_batches(8, 32):
            logits = model.logits_all(torch.from_numpy(x))
            ce = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), torch.from_numpy(y).flatten(), reduction="none"
            )
            keep = torch.from_numpy(m).flatten() == 1
            total += float(ce[keep].sum())
            count += int(keep.sum())
    report = bot_token_loss(model, val_dir, batch_size=8)
    assert count > report.windows  # several bot tokens a window: the two means differ
    assert report.tokens == count
    assert report.loss == pytest.approx(total / count, rel=1e-4)
    assert report.perplexity == pytest.approx(math.exp(total / count), rel=1e-4)


def test_an_unmeasured_loss_has_a_nan_perplexity_not_an_infinite_one(tmp_path: Path) -> None:
    """Mutation evaluate.bot_token_loss: the perplexity of no bot token `float("nan")` -> `math.inf`.
    An empty val split has no loss (NaN): its perplexity is not measured either, not infinite (the
    summary line said "ppl inf" of a loss it printed as nan)."""
    (tmp_path / "val").mkdir()
    report = bot_token_loss(_tiny(32), tmp_path / "val", batch_size=8)
    assert report.tokens == 0 and math.isnan(report.loss) and math.isnan(report.perplexity)


def test_an_empty_reply_is_not_a_clean_stop() -> None:
    """Mutation evaluate.run_transcripts: stop_rate `stopped and not empty` -> `stopped`. A reply that
    closes its turn having said nothing is a bot turn no training text holds: counted in
    empty_reply_rate, not stop_rate (else a model answering every message with nothing scores best)."""
    from test_engine_support import ScriptedGPT

    from pipeline.tokenizer import END_OF_TURN_ID

    model = ScriptedGPT([[END_OF_TURN_ID]])
    cfg = {"max_new_tokens": 8, "temperature": 0.0, "top_k": None, "top_p": None, "seed": 0}
    transcripts, figures = run_transcripts(model, [{"context": None, "turns": ["hi", "and you?"]}], cfg)
    assert [text for _, text in transcripts[0].exchanges] == ["", ""]
    assert transcripts[0].stopped == [True, True]  # it did end at <endOfText>
    assert figures["replies"] == 2 and figures["mean_reply_tokens"] == 0
    assert figures["stop_rate"] == 0.0 and figures["empty_reply_rate"] == 1.0
    assert figures["stray_stop_rate"] == 0.0


def _result(loss: LossReport, figures: dict) -> EvalResult:
    return EvalResult(loss=loss, sources=[], transcripts=[], figures=figures, warnings=[])


def test_metrics_round_the_decode_figures() -> None:
    """Mutation evaluate.EvalResult.metrics: `round(v, 4)` of the decode figures dropped. metrics.json
    is diffed by `dvc metrics diff`: a rate of 1/3 is 0.3333, not 0.3333333333333333; an integer
    figure stays an integer and an unmeasured one is null."""
    loss = LossReport(loss=2.345678, perplexity=math.exp(2.345678), tokens=10, windows=2, split_tokens=10)
    figures = {
        "replies": 3,
        "stop_rate": 1 / 3,
        "decode_tokens_per_s": 123.456789,
        "empty_reply_rate": math.nan,
    }
    metrics = _result(loss, figures).metrics
    assert metrics["replies"] == 3 and isinstance(metrics["replies"], int)
    assert metrics["stop_rate"] == 0.3333 and metrics["decode_tokens_per_s"] == 123.4568
    assert metrics["empty_reply_rate"] is None
    assert metrics["val_loss_bot"] == 2.3457 and metrics["val_ppl_bot"] == round(math.exp(2.345678), 2)


def test_metrics_count_the_scored_bot_tokens_not_the_splits() -> None:
    """Mutation evaluate.EvalResult.metrics: `"val_bot_tokens": self.loss.tokens` ->
    `self.loss.split_tokens`. With evaluate.eval_iters set, the loss covers part of the split:
    val_bot_tokens is what it was measured on, and val_bot_tokens_share says of how many."""
    loss = LossReport(loss=3.0, perplexity=math.exp(3.0), tokens=250, windows=8, split_tokens=1000)
    metrics = _result(loss, {}).metrics
    assert metrics["val_bot_tokens"] == 250 and metrics["val_bot_tokens_share"] == 0.25


# ---------------------------------------------------------------- chattemplate


def test_an_assistant_function_call_is_refused_by_the_template_as_by_the_server() -> None:
    """Mutation chattemplate.CHAT_TEMPLATE: `(m['tool_calls'] or m['function_call'])` ->
    `(m['tool_calls'])`. The legacy `function_call` of an assistant message is a tool call too: the
    server answers 400, and the template rendered the conversation as if the call were not there."""
    from test_mutation_audit7 import TemplateRefusal, _render

    from pipeline.chatrequest import ChatRequest, RequestError

    call = {"name": "f", "arguments": "{}"}
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": None, "function_call": call},
        {"role": "user", "content": "And?"},
    ]
    with pytest.raises(RequestError, match="tool"):
        ChatRequest.parse({"messages": messages})
    with pytest.raises(TemplateRefusal, match="cannot call tools"):
        _render(messages)


# ---------------------------------------------------------------- streamencoding


def test_the_escape_handler_writes_a_kept_byte_as_that_byte_and_a_character_as_its_escape() -> None:
    """Mutations streamencoding._escape: `0xDC80 <= ord(c)` -> `0xDC80 < ord(c)` (the first byte past
    ASCII, 0x80, kept as a surrogate), and `ord(c) - 0xDC00` -> `ord(c)` (`\\xdcc3` for byte 0xC3).
    A file name's non-UTF-8 byte prints as the byte it is; a character the stream lacks as its escape."""
    from pipeline.streamencoding import ESCAPE_ERRORS

    assert "pr\udcc3\udcb8ve".encode("ascii", ESCAPE_ERRORS) == b"pr\\xc3\\xb8ve"
    assert "\udc80|\udcff".encode("ascii", ESCAPE_ERRORS) == b"\\x80|\\xff"
    assert "caf\u00e9 \u27e6".encode("ascii", ESCAPE_ERRORS) == b"caf\\xe9 \\u27e6"


def test_the_escape_handler_leaves_a_decoding_error_alone() -> None:
    """Mutation streamencoding._escape: the `not isinstance(error, UnicodeEncodeError)` guard dropped.
    The handler is for writing; met while reading, it must raise the decoding error itself (the
    mutant broke on bytes with a TypeError naming no byte)."""
    from pipeline.streamencoding import ESCAPE_ERRORS

    with pytest.raises(UnicodeDecodeError):
        b"caf\xff".decode("utf-8", ESCAPE_ERRORS)


def test_only_a_stream_that_is_not_utf8_gets_escapes() -> None:
    """Mutations streamencoding.writes_utf8: an unknown encoding `return False` -> `return True`, and
    escape_unencodable: the `not writes_utf8(stream)` test dropped. A UTF-8 stream keeps its errors
    (a lone surrogate there is a bug to see, not to escape); an ASCII one escapes; a stream naming an
    encoding Python does not know is not taken for UTF-8."""
    import io
    from types import SimpleNamespace

    from pipeline.streamencoding import ESCAPE_ERRORS, escape_unencodable, writes_utf8

    utf8 = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    ascii_ = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    escape_unencodable(utf8, ascii_)
    assert (utf8.errors, ascii_.errors) == ("strict", ESCAPE_ERRORS)
    assert not writes_utf8(SimpleNamespace(encoding="no-such-codec"))  # type: ignore[arg-type]


def test_only_an_ascii_stdin_is_read_as_utf8_and_its_errors_are_kept() -> None:
    """Mutation streamencoding.read_utf8_for_ascii: `== "ascii"` -> `!= "utf-8"` (a Latin-1 terminal's
    `café`, byte 0xE9, then failed to decode). And the fix for its docstring's "Its `errors` is
    kept": TextIOWrapper.reconfigure(encoding=...) resets errors to strict, so an ASCII stdin's
    surrogateescape was lost and a byte that is not UTF-8 raised instead of being kept."""
    import io

    from pipeline.streamencoding import read_utf8_for_ascii

    latin1 = io.TextIOWrapper(io.BytesIO("café".encode("latin-1")), encoding="latin-1")
    read_utf8_for_ascii(latin1)
    assert latin1.read() == "café"
    ascii_ = io.TextIOWrapper(io.BytesIO(b"caf\xc3\xa9 \xff"), encoding="ascii", errors="surrogateescape")
    read_utf8_for_ascii(ascii_)
    assert ascii_.errors == "surrogateescape"
    assert ascii_.read() == "café \udcff"


def test_an_argument_is_read_as_utf8_where_file_names_decode_as_ascii(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mutation streamencoding.argument_text: `decode("utf-8", "surrogateescape")` -> `"replace"`. A
    byte that is not UTF-8 stays a lone surrogate, for chat to refuse by its byte, not U+FFFD sent on."""
    import os
    import sys

    from pipeline.streamencoding import argument_text

    as_bytes = os.fsencode("caf\udcc3\udca9 \udcff")  # what argv held: b"caf\xc3\xa9 \xff"
    assert as_bytes == b"caf\xc3\xa9 \xff"
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "ascii")
    assert argument_text("caf\udcc3\udca9 \udcff") == "café \udcff"


def test_latin1_text_that_is_not_utf8_is_not_refused() -> None:
    """Mutation streamencoding.utf8_in_disguise: `except UnicodeError` -> `except UnicodeEncodeError`.
    Latin-1 `café` (bytes caf\\xe9) is not UTF-8: it is the locale's own text, taken (the mutant
    raised UnicodeDecodeError from chat's argument check)."""
    from pipeline.streamencoding import utf8_in_disguise

    assert utf8_in_disguise("café", "ISO-8859-1", "the message") is None
    assert "is UTF-8 text" in (utf8_in_disguise("cafÃ©", "ISO-8859-1", "the message") or "")
