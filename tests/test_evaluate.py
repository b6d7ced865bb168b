"""Per-source validation loss (pipeline.evaluate.loss_by_source): every bot token scored once, in
batches that mix sources and pad rows, with the same figure a plain per-conversation forward gives."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from test_params_validation import EVAL
from test_train import write_tokens

from pipeline.evaluate import conversation_windows, loss_by_source, source_loss_csv
from pipeline.model import GPT, GPTConfig
from pipeline.shards import ShardWriter, TokenShards
from pipeline.tokenizer import render
from pipeline.transcripts import Transcript, transcripts_markdown


@pytest.fixture(scope="module")
def val_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tokens(tmp_path_factory.mktemp("tokens") / "full", n_train=4, n_val=30, seed=3) / "val"


def tiny(block_size: int) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=block_size, n_layer=2, n_head=2, n_embd=16)).eval()


def test_windows_score_every_bot_token_exactly_once() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50000, size=71)
    mask = (rng.random(71) < 0.5).astype(np.uint8)
    windows = list(conversation_windows(ids, mask, block=32))
    assert len(windows) == 3  # 70 predictions in windows of 32
    scored = np.concatenate([y[m == 1] for _, y, m in windows])
    assert scored.tolist() == ids[1:][mask[1:] == 1].tolist()
    x, y, _ = windows[0]  # a full window predicts each next token
    assert x[1:].tolist() == y[:-1].tolist() and x[0] == ids[0] and y[-1] == ids[32]
    x, y, m = windows[-1]  # the last is padded, and nothing is scored in the padding
    assert x[:6].tolist() == ids[64:70].tolist() and y[:6].tolist() == ids[65:71].tolist() and not m[6:].any()


def test_loss_by_source_equals_a_plain_forward_per_conversation(val_dir: Path) -> None:
    model = tiny(block_size=128)  # every synthetic conversation fits one window
    shards = TokenShards(val_dir)
    sources = [f"s{i % 3}" for i in range(shards.n_conversations)]
    got = {r.source: r for r in loss_by_source(model, val_dir, sources, token_budget=10**9, batch_size=4)}
    want: dict[str, list[float]] = {}
    with torch.no_grad():
        for source, (ids, mask) in zip(sources, shards.iter_conversations(), strict=True):
            x = torch.from_numpy(np.asarray(ids[:-1], dtype=np.int64))[None]
            y = torch.from_numpy(np.asarray(ids[1:], dtype=np.int64))
            ce = torch.nn.functional.cross_entropy(model.logits_all(x)[0], y, reduction="none")
            m = torch.from_numpy(np.asarray(mask[1:], dtype=np.float32))
            entry = want.setdefault(source, [0.0, 0, 0])
            entry[0] += float((ce * m).sum())
            entry[1] += int(m.sum())
            entry[2] += 1
    assert set(got) == set(want) == {"s0", "s1", "s2"}
    for source, (total, tokens, n) in want.items():
        assert got[source].tokens == tokens and got[source].conversations == n
        assert got[source].loss == pytest.approx(total / tokens, rel=1e-4)
    losses = [r.loss for r in loss_by_source(model, val_dir, sources, token_budget=10**9)]
    assert losses == sorted(losses, reverse=True)  # worst first


def test_token_budget_bounds_each_source_but_measures_every_one(val_dir: Path) -> None:
    n = TokenShards(val_dir).n_conversations
    sources = ["big"] * (n - 2) + ["small"] * 2
    rows = {r.source: r for r in loss_by_source(tiny(32), val_dir, sources, token_budget=20)}
    assert rows["small"].conversations >= 1 and rows["big"].conversations < n - 2
    assert all(r.tokens >= 20 or r.source == "small" for r in rows.values())
    assert (
        source_loss_csv(list(rows.values())).splitlines()[0] == "source,val_loss_bot,bot_tokens,conversations"
    )


def test_sources_that_do_not_match_the_shards_are_refused(val_dir: Path) -> None:
    with pytest.raises(ValueError, match="re-run `dvc repro`"):
        loss_by_source(tiny(32), val_dir, ["a", "b"], token_budget=100)


def test_evaluate_model_gives_each_source_the_overall_budget(val_dir: Path, tmp_path: Path) -> None:
    """eval_iters batches of EVAL_BATCH windows bound the overall loss and, counted in bot tokens,
    each source's; the metrics are rounded and a figure not measured (no replies) is null."""
    from pipeline.evaluate import EVAL_BATCH, EvalSetupError, evaluate_model

    n = TokenShards(val_dir).n_conversations
    sources = ["big"] * (n - 2) + ["small"] * 2
    pq.write_table(pa.table({"source": sources}), tmp_path / "val.parquet")
    model = tiny(32)
    cfg = {**EVAL, "eval_iters": 1, "prompts": []}
    result = evaluate_model(model, val_dir, tmp_path / "val.parquet", cfg)
    assert 0 < result.loss.windows <= EVAL_BATCH and result.loss.share < 1
    assert result.sources == loss_by_source(model, val_dir, sources, token_budget=EVAL_BATCH * 32)
    assert {r.source: r.conversations for r in result.sources}["big"] < n - 2  # the budget bit
    assert result.warnings == [] and result.transcripts == []
    metrics = result.metrics
    assert metrics["val_loss_bot"] == round(result.loss.loss, 4) and metrics["val_bot_tokens"] > 0
    assert metrics["replies"] == 0 and metrics["stop_rate"] is None and metrics["mean_reply_tokens"] is None
    pq.write_table(pa.table({"source": sources[:-1]}), tmp_path / "val.parquet")  # a stale build
    with pytest.raises(EvalSetupError, match=r"conversations but \d+ sources given"):
        evaluate_model(model, val_dir, tmp_path / "val.parquet", EVAL)


def test_the_stage_says_which_source_got_no_loss_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A source whose val conversations hold no bot token cannot have a loss: said, not silently dropped."""
    from test_params_validation import EVAL, _evaluate_project

    from stages import evaluate as stage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    _evaluate_project(tmp_path, {**EVAL, "prompts": []})
    bot, bot_mask = render([{"role": "human", "content": "hi"}, {"role": "bot", "content": "hello"}])
    human, human_mask = render([{"role": "human", "content": "only a question?"}])
    writer = ShardWriter(tmp_path / "data/tokens/full/val.new", shard_tokens=1000)
    writer.add(np.array(bot + human), np.array(bot_mask + human_mask), np.array([len(bot), len(human)]))
    writer.close()
    shutil.rmtree(tmp_path / "data/tokens/full/val")
    (tmp_path / "data/tokens/full/val.new").rename(tmp_path / "data/tokens/full/val")
    pq.write_table(pa.table({"source": ["talk", "asks"]}), tmp_path / "data/dataset/full/val.parquet")
    assert stage.main() == 0
    assert "evaluate: warning: asks has no bot token in the val split" in capsys.readouterr().err
    rows = (tmp_path / "model/eval/sources.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["talk"]


def test_transcript_text_cannot_read_as_the_files_structure() -> None:
    """A reply line "## Step 1" once started a new conversation and "**human:** ok" a human turn when
    pipeline.report read transcripts.md back. Every later line of a text is now indented: structure
    starts at the margin only, and a Markdown viewer shows those lines as text of the turn."""
    markdown_it = pytest.importorskip("markdown_it")
    reply = "Sure:\n## Step 1\n**human:** ok\n# x\n- item\n\n> quote\x1c## y\u2028**bot:** z"
    transcripts = [
        Transcript("A persona\n## not a heading", [("Hi\n## there", reply), ("next?", "bye")], [True, False]),
        Transcript(None, [("Q", "A")], [True]),
    ]
    text = transcripts_markdown(transcripts)
    margin = [line for line in text.splitlines() if line and not line[0].isspace()]
    assert margin == [
        "# Evaluation transcripts",
        "## Conversation 1",
        "*persona:* A persona  ",
        "**human:** Hi  ",
        "**bot:** Sure:  ",
        "**human:** next?  ",
        "**bot:** bye *(reply budget reached)*",
        "## Conversation 2",
        "*persona:* (none)",
        "**human:** Q  ",
        "**bot:** A",
    ]
    indented = [line.strip() for line in text.splitlines() if line[:1].isspace()]
    assert indented == ["## not a heading", "## there", *reply.splitlines()[1:]]
    html = markdown_it.MarkdownIt().render(text)
    assert html.count("<h2>") == 2 and html.count("<h1>") == 1 and "<li>" not in html


@pytest.mark.parametrize(("ending", "stop_rate", "stray_rate"), [("eot", 1.0, 0.0), ("human", 0.0, 1.0)])
def test_only_a_closed_turn_counts_as_a_clean_stop(ending: str, stop_rate: float, stray_rate: float) -> None:
    """The engine stops on every special token, but a reply ended by <human> means the model never
    learnt to close its turn: it was counted as a clean stop, and its decode steps as none."""
    from test_engine_support import ScriptedGPT

    from pipeline.evaluate import run_transcripts
    from pipeline.sampling import MAX_SEED
    from pipeline.tokenizer import END_OF_TURN_ID, HUMAN_ID, get_encoding

    words = get_encoding().encode_ordinary("fine thanks")
    model = ScriptedGPT([[*words, END_OF_TURN_ID if ending == "eot" else HUMAN_ID]])
    cfg = {"max_new_tokens": 8, "temperature": 0.0, "top_k": None, "top_p": None, "seed": MAX_SEED}
    prompts = [{"context": None, "turns": ["hi", "and you?"]}, {"context": "A persona.", "turns": ["yo"]}]
    transcripts, figures = run_transcripts(model, prompts, cfg)  # seed MAX_SEED + 1 wraps to 0
    assert [text for t in transcripts for _, text in t.exchanges] == ["fine thanks"] * 3
    assert figures["replies"] == 3 and figures["mean_reply_tokens"] == len(words)
    assert figures["stop_rate"] == stop_rate and figures["stray_stop_rate"] == stray_rate
    assert figures["decode_tokens_per_s"] > 0
    # transcripts.md says why an unclosed reply ended: a stray token, not the budget (8 unspent)
    bot_lines = [
        line for line in transcripts_markdown(transcripts).splitlines() if line.startswith("**bot:**")
    ]
    note = "" if ending == "eot" else " *(ended by a stray special token)*"
    assert bot_lines == ["**bot:** fine thanks" + note] * 3


def test_a_spread_evaluation_reaches_the_end_of_the_split(val_dir: Path) -> None:
    """With a batch limit the windows are spread over the whole split, not its first ones (where one
    long conversation could make most of the figure)."""
    shards = TokenShards(val_dir)
    every = [x for x, _, _ in shards.iter_eval_batches(4, 16)]
    rows = np.concatenate(every)
    spread = np.concatenate([x for x, _, _ in shards.iter_eval_batches(4, 16, max_batches=2)])
    assert len(rows) > 8 and len(spread) == 8
    assert np.array_equal(spread[0], rows[0]) and np.array_equal(spread[-1], rows[-1])
    picked = [next(i for i, r in enumerate(rows) if np.array_equal(r, s)) for s in spread]
    assert picked == sorted(picked) and picked[-1] == len(rows) - 1
    assert len([x for x, _, _ in shards.iter_eval_batches(4, 16, max_batches=10**6)]) == len(every)


@pytest.mark.parametrize("key", ["top_k", "seed", "max_new_tokens", "eval_iters"])
def test_a_yaml_boolean_is_not_an_integer(key: str) -> None:
    from pipeline.evaluate import EvalSetupError, check_eval_params

    with pytest.raises(EvalSetupError, match=rf"evaluate\.{key}"):
        check_eval_params({**EVAL, key: True}, block_size=32)


@pytest.mark.parametrize("blank", ["", "   ", "\r\n\t"])
def test_a_blank_prompt_turn_is_refused(blank: str) -> None:
    """A blank message renders <human><endOfText>, a turn no training text has (and that serve and the
    chat template refuse): its reply would measure nothing. It passed as "a list of strings"."""
    from pipeline.evaluate import EvalSetupError, check_eval_params

    prompts = [{"context": None, "turns": ["hi"]}, {"context": None, "turns": ["hello", blank]}]
    with pytest.raises(EvalSetupError, match=r"evaluate\.prompts\[1\]\.turns\[1\]: must hold text"):
        check_eval_params({**EVAL, "prompts": prompts}, block_size=32)
    # what chat refuses is named by its key too, not said after the hint about max_new_tokens
    prompts[1]["turns"][1] = "a" + " " * 20_000 + "b"
    with pytest.raises(
        EvalSetupError, match=r"prompts\[1\]\.turns\[1\]: text has 20000 whitespace characters in a row"
    ):
        check_eval_params({**EVAL, "prompts": prompts}, block_size=32)


def test_a_diverged_model_still_gets_its_metrics(val_dir: Path) -> None:
    """A mean loss past ~709.8 overflowed math.exp: the stage died with a traceback and wrote no
    metrics for the run that most needed them. The perplexity is now infinite (null in JSON)."""
    from pipeline.evaluate import bot_token_loss, finite_or_none

    model = tiny(16)
    with torch.no_grad():
        model.transformer.ln_f.weight.mul_(1e4)  # logits in the tens of thousands
    report = bot_token_loss(model, val_dir, batch_size=4, max_batches=2)
    assert report.loss > 1000 and report.perplexity == float("inf")
    assert finite_or_none(report.perplexity) is None


def test_reply_budget_must_leave_room_for_the_prompt() -> None:
    from pipeline.evaluate import EvalSetupError, check_eval_params

    with pytest.raises(EvalSetupError, match=r"evaluate\.max_new_tokens"):
        check_eval_params({**EVAL, "max_new_tokens": 32}, block_size=32)
    assert check_eval_params({**EVAL, "top_p": 0}, block_size=32)["top_p"] == 0


def _scripted_run(script: list[int]) -> tuple:
    from test_engine_support import ScriptedGPT

    from pipeline.evaluate import run_transcripts

    model = ScriptedGPT([script])
    cfg = {"max_new_tokens": 8, "temperature": 0.0, "top_k": None, "top_p": None, "seed": 0}
    prompts = [{"context": None, "turns": ["hi", "and you?"]}, {"context": "A persona.", "turns": ["yo"]}]
    return run_transcripts(model, prompts, cfg)


def test_a_reply_cut_by_the_budget_is_neither_a_stop_nor_stray() -> None:
    from pipeline.tokenizer import get_encoding

    words = get_encoding().encode_ordinary("one two three four five six seven eight nine ten eleven")
    transcripts, figures = _scripted_run(words)
    assert figures["stop_rate"] == 0.0 and figures["stray_stop_rate"] == 0.0
    assert transcripts[0].stopped == [False, False]


def test_decode_steps_count_the_token_that_ended_each_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline import evaluate
    from pipeline.tokenizer import END_OF_TURN_ID, get_encoding

    clock = iter(range(10**6))
    monkeypatch.setattr(evaluate, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
    words = get_encoding().encode_ordinary("fine thanks")
    _, figures = _scripted_run([*words, END_OF_TURN_ID])
    assert figures["decode_tokens_per_s"] == len(words) + 1  # 1 s per reply on this clock


def _bot_split(tmp_path: Path, convs) -> Path:
    ids = [i for c in convs for i in c[0]]
    mask = [m for c in convs for m in c[1]]
    w = ShardWriter(tmp_path / "val", 10_000)
    w.add(np.array(ids), np.array(mask), np.array([len(c[0]) for c in convs]))
    w.close()
    return tmp_path / "val"


def _tiny():
    from pipeline.model import GPT, GPTConfig

    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=32, n_layer=1, n_head=2, n_embd=16)).eval()


def test_loss_by_source_counts_only_scored_conversations_and_stops_at_the_budget(tmp_path: Path) -> None:
    from pipeline.evaluate import loss_by_source

    bot = render([{"role": "human", "content": "hi"}, {"role": "bot", "content": "hello there"}])
    ask = render([{"role": "human", "content": "only a question?"}])
    d = _bot_split(tmp_path, [bot, ask, bot])
    (row,) = loss_by_source(_tiny(), d, ["a", "a", "a"], token_budget=None)
    assert row.conversations == 2  # the conversation without a bot token is not scored
    budget = int(np.sum(bot[1][1:]))
    (row,) = loss_by_source(_tiny(), d, ["a", "a", "a"], token_budget=budget)
    assert row.conversations == 1 and row.tokens == budget  # budget reached: the rest is skipped


def test_no_text_becomes_markup_in_transcripts() -> None:
    """A backtick in the human text and another in the reply made one code span of "**bot:**"; an
    "<!--" hid it; a tag the model wrote went to the page as HTML; a blank line in a reply turned
    the rest of it into a code block. Now each text shows as written, under its own marker."""
    import html as html_lib
    import re

    exchanges = [
        ("what is `ls", "it lists` files"),
        ("hi <!--", "x --> y"),
        ("show me", "<textarea> oops </b> <http://a.b> <3 a\\b \\` \\<i>"),
        ("and then?", "first\n\n```\ncode\n   \nend"),
    ]
    transcripts = [Transcript(None, exchanges, [True] * len(exchanges))]
    text = transcripts_markdown(transcripts)
    # In the file: no blank line inside an exchange, and the texts read back as the comment above
    # _MARKUP says (drop the backslash before a backslash, backtick or "<")
    exchange_lines = text.split("\n\n")[2:]  # after the title and the persona
    assert len(exchange_lines) == 4 and all(
        line.strip(" \t") for e in exchange_lines for line in e.splitlines()
    )
    body = [line.strip().replace("\u00a0", "") for line in text.splitlines() if line[:1].isspace()]
    assert [re.sub(r"\\([\\`<])", r"\1", line) for line in body] == ["", "```", "code", "", "end"]
    (tags,) = [line for line in text.splitlines() if "oops" in line]
    assert tags == "**bot:** \\<textarea> oops \\</b> \\<http://a.b> <3 a\\b \\\\\\` \\\\\\<i>"
    assert re.sub(r"\\([\\`<])", r"\1", tags) == "**bot:** " + exchanges[2][1]
    # Rendered: every marker in place, no code, HTML or link, and each text as written
    markdown_it = pytest.importorskip("markdown_it")
    rendered = markdown_it.MarkdownIt().render(text)
    assert rendered.count("<strong>human:</strong>") == rendered.count("<strong>bot:</strong>") == 4
    for tag in ("<code>", "<pre>", "<textarea>", "</b>", "<!--", "<a ", "<i>"):
        assert tag not in rendered
    paragraphs = re.findall(r"<p>(.*?)</p>", rendered, flags=re.S)[1:]  # after the persona's
    for (human, bot), paragraph in zip(exchanges, paragraphs, strict=True):
        shown = html_lib.unescape(re.sub(r"<[^>]+>", "", paragraph)).replace("\u00a0", "")
        lines = [line.strip() for line in shown.splitlines()]
        assert lines == [
            f"human: {human}",
            *(f"bot: {bot}".splitlines()[:1]),
            *map(str.strip, bot.splitlines()[1:]),
        ]


def test_a_blank_persona_reads_as_none_and_texts_as_the_model_got_them() -> None:
    """The transcript said `*persona:*` with nothing after it for a blank persona the model never
    got (chat drops it); texts are shown as chat cleaned them for the model (stripped, LF)."""
    from test_engine_support import ScriptedGPT

    from pipeline.evaluate import run_transcripts
    from pipeline.tokenizer import END_OF_TURN_ID, get_encoding

    model = ScriptedGPT([[*get_encoding().encode_ordinary("ok"), END_OF_TURN_ID]])
    cfg = {"max_new_tokens": 8, "temperature": 0.0, "top_k": None, "top_p": None, "seed": 0}
    prompts = [
        {"context": " \n ", "turns": ["  hi\r\nthere  "]},
        {"context": " A persona. ", "turns": ["yo"]},
    ]
    transcripts, _ = run_transcripts(model, prompts, cfg)
    assert [t.context for t in transcripts] == [None, "A persona."]
    assert transcripts[0].exchanges == [("hi\nthere", "ok")]
    personas = [line for line in transcripts_markdown(transcripts).splitlines() if "persona:" in line]
    assert personas == ["*persona:* (none)", "*persona:* A persona."]


def test_per_source_rows_add_up_to_the_whole_split_with_long_conversations(val_dir: Path) -> None:
    """With windows shorter than most conversations, every bot token of the split is scored once in
    the overall figure and once in its source's row: the rows' tokens add up to the whole split's."""
    from pipeline.evaluate import bot_token_loss

    shards = TokenShards(val_dir)
    lengths = [len(ids) for ids, _ in shards.iter_conversations()]
    block = 8
    assert sum(n > block + 1 for n in lengths) > len(lengths) // 2  # most take several windows
    model = tiny(block)
    sources = [f"s{i % 3}" for i in range(shards.n_conversations)]
    rows = loss_by_source(model, val_dir, sources, token_budget=None)
    whole = bot_token_loss(model, val_dir, batch_size=4)
    assert sum(r.tokens for r in rows) == whole.tokens == whole.split_tokens == shards.loss_tokens()
    assert whole.share == 1.0
    assert sum(r.conversations for r in rows) == sum(bool(m.any()) for _, m in shards.iter_conversations())


def test_every_reply_draws_with_a_seed_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prompt i was seeded seed + i and its reply j seed + i + j, so a prompt's second reply drew the
    same random numbers as the next prompt's first (the committed transcripts' conversations 1 and 2
    both opened "Haha"): 13 replies were fewer independent draws than stop_rate counts."""
    from test_engine_support import ScriptedGPT

    from pipeline.engine import Engine
    from pipeline.evaluate import run_transcripts
    from pipeline.sampling import MAX_SEED
    from pipeline.tokenizer import END_OF_TURN_ID, get_encoding

    seeds: list[int | None] = []
    stream_batch = Engine.stream_batch

    def spy(self, prompts, max_new_tokens, params=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        seeds.append(params.seed)
        return stream_batch(self, prompts, max_new_tokens, params, *args, **kwargs)

    monkeypatch.setattr(Engine, "stream_batch", spy)
    model = ScriptedGPT([[*get_encoding().encode_ordinary("ok"), END_OF_TURN_ID]])
    cfg = {"max_new_tokens": 8, "temperature": 0.8, "top_k": None, "top_p": None, "seed": MAX_SEED - 2}
    prompts = [{"context": None, "turns": ["a", "b"]}, {"context": None, "turns": ["c"]}]
    prompts += [{"context": "P.", "turns": ["d", "e", "f"]}, {"context": None, "turns": ["g"]}]
    run_transcripts(model, prompts, cfg)
    assert seeds[0] == MAX_SEED - 2  # the untimed warm-up reply: prompt 0's first seed
    assert seeds[1:] == [MAX_SEED - 2, MAX_SEED - 1, MAX_SEED, 0, 1, 2, 3]  # one each, wrapping


def test_an_empty_val_split_is_said_and_its_loss_is_null(tmp_path: Path) -> None:
    """build.val_fraction 0 gives an empty val split: the loss figures are null (no NaN in JSON),
    the replies still measured, and the stage says why instead of printing "val loss nan" alone."""
    from pipeline.evaluate import evaluate_model

    (tmp_path / "val").mkdir()
    pq.write_table(pa.table({"source": pa.array([], pa.string())}), tmp_path / "val.parquet")
    result = evaluate_model(tiny(32), tmp_path / "val", tmp_path / "val.parquet", EVAL)
    assert result.warnings == [
        f"{tmp_path / 'val'}: the val split holds no bot token; val_loss_bot and val_ppl_bot are null"
    ]
    metrics = result.metrics
    assert metrics["val_loss_bot"] is None and metrics["val_ppl_bot"] is None
    assert metrics["val_bot_tokens"] == 0 and metrics["val_bot_tokens_share"] is None
    assert metrics["replies"] == 1 and result.sources == []


def test_evaluate_model_decodes_at_chats_default_thread_count(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The replies go through `--threads auto`'s tuner, as chat's do, so decode_tokens_per_s is what
    chat gives on the machine as it is (on torch's default count, a busy process beside the stage
    took the cpu-tiny figure from 193 to 6 tokens/s); and the tuner gives torch's default back."""
    from test_threadtuner import SpyTuner

    from pipeline import threadtuner
    from pipeline.evaluate import evaluate_model

    made: list[SpyTuner] = []
    monkeypatch.setattr(threadtuner, "auto_tuner", SpyTuner.maker(made))
    (tmp_path / "val").mkdir()
    pq.write_table(pa.table({"source": pa.array([], pa.string())}), tmp_path / "val.parquet")
    result = evaluate_model(tiny(32), tmp_path / "val", tmp_path / "val.parquet", EVAL)
    assert result.metrics["replies"] == 1 and len(made) == 1
    assert len(made[0].set_counts) > 2 and made[0].restored  # decode steps set their count, then the default


def test_a_link_or_image_in_a_text_is_shown_as_written() -> None:
    """ "[docs](http://x)" rendered as a link showing "docs" (its address hidden) and "![a](url)" as a
    picture fetched from anywhere: the page showed what the model or prompt had not written."""
    import html as html_lib
    import re

    markdown_it = pytest.importorskip("markdown_it")
    persona = "see [the site](http://p.example)"
    human = "read [docs](http://x.example) and ![img](http://evil.example/p.png) [ref]"
    bot = "[click](http://y.example)\n[ref]: http://hidden.example"
    text = transcripts_markdown([Transcript(persona, [(human, bot)], [True])])
    rendered = markdown_it.MarkdownIt().render(text)
    assert "<a " not in rendered and "<img" not in rendered
    shown = html_lib.unescape(re.sub(r"<[^>]+>", "", rendered))
    for written in (persona, human, *bot.splitlines()):
        assert written in shown


def test_a_checkpoint_without_the_chat_tokens_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """GPT-2's own vocabulary (50257) has no row for <human>, <bot> or <endOfText>: the val-loss pass
    died with torch's "IndexError: index out of range in self", naming neither cause nor file. The
    file is the checkpoint's the stage read, as from the cwd (run from the project's parent:
    project/model/ckpt/config.json; it said model/ckpt/config.json wherever the stage ran from)."""
    from pipeline import checkpoint
    from stages import evaluate as stage

    root = tmp_path / "project"
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=50257, n_layer=1, n_head=2, n_embd=16)).eval()
    checkpoint.save_model(model, root / "model" / "ckpt")
    (root / "params.yaml").write_text("train: {variant: full, device: cpu}\n")
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(root))
    monkeypatch.chdir(tmp_path)
    assert stage.main() == 1
    config = Path("project") / "model" / "ckpt" / "config.json"
    assert capsys.readouterr().err.startswith(
        f"evaluate: {config} vocab_size: the checkpoint's vocabulary has 50257 tokens, "
        "but the tokenizer writes ids up to 50259"
    )


def test_a_nan_loss_is_said_and_its_perplexity_is_not_infinite(val_dir: Path, tmp_path: Path) -> None:
    """NaN weights gave a NaN loss, which the summary printed beside "ppl inf" (`nan < x` is False),
    and metrics.json's null loss with no line saying why."""
    from pipeline.evaluate import evaluate_model

    model = tiny(32)
    with torch.no_grad():
        model.transformer.ln_f.weight.fill_(float("nan"))
    sources = ["s"] * TokenShards(val_dir).n_conversations
    pq.write_table(pa.table({"source": sources}), tmp_path / "val.parquet")
    result = evaluate_model(model, val_dir, tmp_path / "val.parquet", {**EVAL, "prompts": []})
    assert np.isnan(result.loss.loss) and np.isnan(result.loss.perplexity)
    assert result.metrics["val_loss_bot"] is None and result.metrics["val_ppl_bot"] is None
    assert result.warnings[0] == (
        f"{val_dir}: the loss is nan (the model's outputs are not finite: a diverged or damaged "
        "checkpoint); val_loss_bot and val_ppl_bot are null"
    )
