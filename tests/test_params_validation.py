"""Settings a user might write in params.yaml: each mistake is one line naming the key and the rule,
never a traceback deep in torch and never a silently different run. Covers `train` (TrainConfig and
the stage) and `evaluate` (check_eval_params, the transcripts and the stage)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from pipeline import checkpoint
from pipeline.evaluate import EvalSetupError, check_eval_params, finite_or_none, run_transcripts
from pipeline.model import GPT, GPTConfig
from pipeline.shards import ShardWriter
from pipeline.tokenizer import render
from pipeline.trainconfig import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
PROFILE = dict(
    n_layer=1,
    n_head=2,
    n_embd=16,
    block_size=32,
    batch_size=2,
    max_iters=3,
    warmup_iters=1,
    lr=0.01,
    min_lr=0.001,
)


def _train_params(**profile) -> dict:
    """params.yaml's `train` with a `profiles` key standing for the top-level train_profiles (split
    apart by from_params below and _project)."""
    return {
        "variant": "full",
        "profile": "p",
        "init_from": "scratch",
        "seed": 1,
        "device": "cpu",
        "profiles": {"p": {**PROFILE, **profile}},
    }


def from_params(train: dict) -> TrainConfig:
    """TrainConfig.from_params of params.yaml's `train` and `train_profiles`, given as one mapping."""
    return TrainConfig.from_params({k: v for k, v in train.items() if k != "profiles"}, train.get("profiles"))


# ---------------------------------------------------------------- train settings


def test_yaml_exponent_without_dot_is_a_number() -> None:
    """PyYAML (YAML 1.1) reads `lr: 1e-3` as the string '1e-3'; it used to fail with a TypeError."""
    params = yaml.safe_load("lr: 1e-3\nmin_lr: 1e-4\n")
    assert params["lr"] == "1e-3"  # the YAML quirk this guards against
    cfg = from_params(_train_params(**params))
    assert cfg.lr == pytest.approx(1e-3) and isinstance(cfg.lr, float) and cfg.min_lr == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"lr": "abc"}, r"train_profiles\.p\.lr: expected a number, got 'abc'"),
        ({"batch_size": 2.5}, r"train_profiles\.p\.batch_size: expected an integer, got 2\.5"),
        ({"max_iters": None}, r"train_profiles\.p\.max_iters: expected an integer, got None"),
        ({"max_iters": True}, r"train_profiles\.p\.max_iters: expected an integer"),
        ({"compile": "false"}, r"train_profiles\.p\.compile: expected true or false, got 'false'"),
        ({"n_embd": 18, "n_head": 4}, r"train_profiles\.p\.n_embd: must be a multiple of n_head \(4\)"),
        ({"n_head": 0}, r"train_profiles\.p\.n_head: must be >= 1"),
        ({"n_layer": 0}, r"train_profiles\.p\.n_layer: must be >= 1"),
        ({"block_size": 0}, r"train_profiles\.p\.block_size: must be >= 1"),
        ({"lr": 0, "min_lr": 0}, r"train_profiles\.p\.lr: must be > 0"),
        ({"lr": float("nan")}, r"train_profiles\.p\.lr: expected a number"),
        ({"min_lr": 0.1}, r"train_profiles\.p\.min_lr: need 0 <= min_lr <= lr"),
        ({"warmup_iters": -5}, r"train_profiles\.p\.warmup_iters: must be >= 0"),
        ({"eval_iters": 0}, r"train_profiles\.p\.eval_iters: must be >= 1"),
        ({"eval_interval": 0}, r"train_profiles\.p\.eval_interval: must be >= 1"),
        ({"grad_accum": 0}, r"train_profiles\.p\.grad_accum: must be >= 1"),
        ({"dropout": 1.5}, r"train_profiles\.p\.dropout: must be in \[0, 1\)"),
        ({"beta2": 1.5}, r"train_profiles\.p\.beta2: must be in \[0, 1\)"),
        ({"weight_decay": -1}, r"train_profiles\.p\.weight_decay: must be >= 0"),
        (
            {"dtype": "bf16"},
            r"train_profiles\.p\.dtype: must be one of \['bfloat16', 'float16', 'float32'\]",
        ),
    ],
)
def test_bad_profile_value_names_key_and_rule(profile: dict, message: str) -> None:
    with pytest.raises(ValueError, match=rf"^params\.yaml {message}"):
        from_params(_train_params(**profile))


@pytest.mark.parametrize(
    ("key", "value"),
    [("variant", "commercial"), ("init_from", "gpt2"), ("seed", 7), ("device", "cpu"), ("profile", "q")],
)
def test_run_level_key_inside_a_profile_is_refused(key: str, value: object) -> None:
    """A profile's variant used to be accepted: the run recorded `commercial` (config, fingerprint,
    model card) while the stage read train.variant's data (full: a licensing risk)."""
    with pytest.raises(ValueError, match=rf"^params\.yaml train_profiles\.p\.{key}: set it at train\.{key}$"):
        from_params(_train_params(**{key: value}))


def test_bad_top_level_train_value_names_train_key() -> None:
    with pytest.raises(ValueError, match=r"^params\.yaml train\.seed: must be in \[0, 2\*\*63\), got -1$"):
        from_params({**_train_params(), "seed": -1})
    # torch.manual_seed overflows past 2**64 - 1: a seed near it failed with a traceback mid-run,
    # when a dropout seed (seed + an offset per step) went past it
    with pytest.raises(ValueError, match=r"train\.seed: must be in \[0, 2\*\*63\), got 18446744073709551615"):
        from_params({**_train_params(), "seed": 2**64 - 1})
    with pytest.raises(ValueError, match=r"^params\.yaml train_profiles\.p: expected a mapping"):
        from_params({**_train_params(), "profiles": {"p": None}})


def test_a_setting_in_train_and_in_the_profile_is_refused() -> None:
    """`dvc exp run -S +train.max_iters=100` beside the profile's max_iters ran the profile's value
    in silence, while `dvc exp show` listed 100."""
    with pytest.raises(
        ValueError,
        match=r"^params\.yaml train\.max_iters and train_profiles\.p\.max_iters both set max_iters: set it "
        r"in one place \(dvc exp run -S train_profiles\.p\.max_iters=\.\.\.\)$",
    ):
        from_params({**_train_params(), "max_iters": 100})
    # a setting the profile leaves out may be given at train: level (README: +train.attention=flash)
    assert from_params({**_train_params(), "attention": "flash"}).attention == "flash"


def test_integral_numbers_as_dvc_writes_them_are_integers() -> None:
    """`dvc exp run -S train_profiles.p.max_iters=1e3` writes 1000.0: build and tokenize took it,
    train refused it."""
    cfg = from_params(_train_params(max_iters=1000.0, batch_size="4", grad_accum="2e0"))
    assert (cfg.max_iters, cfg.batch_size, cfg.grad_accum) == (1000, 4, 2)
    assert all(isinstance(v, int) for v in (cfg.max_iters, cfg.batch_size, cfg.grad_accum))


def test_warmup_longer_than_the_run_is_a_warning() -> None:
    assert from_params(_train_params()).warnings() == []
    cfg = from_params(_train_params(warmup_iters=10))
    assert any("warmup_iters 10 >= max_iters 3" in w for w in cfg.warnings())


def test_params_yaml_as_shipped_has_no_warning() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name in params["train_profiles"]:
        cfg = TrainConfig.from_params({**params["train"], "profile": name}, params["train_profiles"])
        assert cfg.warnings() == []


def _project(root: Path, train: dict) -> None:
    run = {k: v for k, v in train.items() if k != "profiles"}
    (root / "params.yaml").write_text(yaml.safe_dump({"train": run, "train_profiles": train["profiles"]}))


def test_train_stage_prints_one_line_for_settings_mistakes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from stages import train as stage

    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    cases = [
        ({**_train_params(), "profile": "q"}, "train: params.yaml train.profile='q' is not one of ['p']"),
        ({k: v for k, v in _train_params().items() if k != "variant"}, "train: params.yaml train.variant:"),
        ({**_train_params(), "variant": "../x"}, "train: params.yaml train.variant:"),
        ({**_train_params(), "variant": "nope"}, "no token shards"),
        ({**_train_params(), "device": "gpu"}, "train: params.yaml train.device: must be"),
        (
            _train_params(variant="commercial"),
            "train: params.yaml train_profiles.p.variant: set it at train.variant",
        ),
    ]
    for train, expected in cases:
        _project(tmp_path, train)
        assert stage.main() == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert expected in err[-1], err
        assert not any("Traceback" in line for line in err)
        assert not err[-1].startswith('train: "')  # the KeyError's quotes are not shown


# ---------------------------------------------------------------- evaluate settings

EVAL = {
    "max_new_tokens": 8,
    "temperature": 0.8,
    "top_k": 50,
    "top_p": 0.95,
    "seed": 1,
    "eval_iters": 2,
    "prompts": [{"context": None, "turns": ["hi"]}],
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"max_new_tokens": 0},
            r"evaluate\.max_new_tokens: must be an integer in 1\.\.27 \(the model's block_size is 32, and "
            r"the shortest conversation takes 5 tokens\)",
        ),
        ({"max_new_tokens": 48}, r"evaluate\.max_new_tokens: .* got 48"),
        ({"max_new_tokens": 28}, r"evaluate\.max_new_tokens: .* got 28"),  # 28..31 leave no room
        ({"eval_iters": 0}, r"evaluate\.eval_iters: must be an integer >= 1"),
        ({"top_k": 0}, r"evaluate\.top_k: must be an integer >= 1, or null"),
        ({"top_p": 2}, r"evaluate\.top_p: must be a number in \[0, 1\]"),
        ({"temperature": "hot"}, r"evaluate\.temperature: must be a number >= 0"),
        ({"seed": -1}, r"evaluate\.seed: must be an integer >= 0"),
        ({"prompts": None}, r"evaluate\.prompts: must be a list"),
        ({"prompts": ["hello"]}, r"evaluate\.prompts\[0\]: must be a mapping"),
        ({"prompts": [{"turns": []}]}, r"evaluate\.prompts\[0\]\.turns: must be a non-empty list of strings"),
        ({"prompts": [{"context": "x"}]}, r"evaluate\.prompts\[0\]\.turns: must be a non-empty list"),
        ({"prompts": [{"turns": "hello"}]}, r"evaluate\.prompts\[0\]\.turns: .* got 'hello'"),
        (
            {"prompts": [{"turns": ["hi", 5]}]},
            r"evaluate\.prompts\[0\]\.turns: must be a non-empty list of strings",
        ),
        (
            {"prompts": [{"contxt": "x", "turns": ["hi"]}]},
            r"evaluate\.prompts\[0\]\.contxt: unknown setting \(known: context, turns\)",
        ),
        (
            {"prompts": [{"context": 3, "turns": ["hi"]}]},
            r"evaluate\.prompts\[0\]\.context: must be a string or null",
        ),
        ({"max_new_token": 8}, r"evaluate\.max_new_token: unknown setting"),
    ],
)
def test_bad_evaluate_setting_names_key_and_rule(change: dict, message: str) -> None:
    with pytest.raises(EvalSetupError, match=rf"^params\.yaml {message}"):
        check_eval_params({**EVAL, **change}, block_size=32)


def test_evaluate_settings_that_are_fine() -> None:
    check_eval_params(EVAL, block_size=32)
    check_eval_params({**EVAL, "prompts": [], "top_k": None, "top_p": None, "temperature": 0}, block_size=32)
    missing = {k: v for k, v in EVAL.items() if k != "seed"}
    with pytest.raises(EvalSetupError, match=r"evaluate\.seed: missing"):
        check_eval_params(missing, block_size=32)
    assert finite_or_none(float("nan")) is None and finite_or_none(1.5) == 1.5


def test_evaluate_numbers_as_yaml_spells_them() -> None:
    """PyYAML reads `1e-1` as a string and a user may write `8.0`: take the number, as train does."""
    spelled = {**EVAL, "temperature": "8e-1", "top_p": "0.95", "max_new_tokens": 8.0, "top_k": "50"}
    assert check_eval_params(spelled, block_size=32) == EVAL
    assert isinstance(check_eval_params(spelled, block_size=32)["max_new_tokens"], int)
    with pytest.raises(EvalSetupError, match=r"evaluate\.max_new_tokens: must be an integer .* got 8\.5"):
        check_eval_params({**EVAL, "max_new_tokens": 8.5}, block_size=32)
    with pytest.raises(EvalSetupError, match=r"evaluate\.temperature: must be a number >= 0.* got nan"):
        check_eval_params({**EVAL, "temperature": float("nan")}, block_size=32)
    assert EVAL["temperature"] == 0.8  # the caller's mapping is not changed


def _tiny_model(block_size: int = 32) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=block_size, n_layer=1, n_head=2, n_embd=16)).eval()


def test_prompt_too_long_for_the_window_names_the_prompt() -> None:
    prompts = [{"context": None, "turns": ["hi"]}, {"context": None, "turns": ["ok", "word " * 40]}]
    with pytest.raises(
        EvalSetupError, match=r"^params\.yaml evaluate\.prompts\[1\]\.turns\[1\]: .*max_new_tokens 8"
    ):
        run_transcripts(_tiny_model(), prompts, EVAL)


def test_a_prompt_too_long_is_said_before_the_val_split_is_scored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check ran in the transcripts, after the loss pass (20 s on the shipped data; minutes on
    a real one) had been thrown away."""
    from pipeline import evaluate

    def scored(*args, **kwargs):
        raise AssertionError("the val split was scored before the prompts were checked")

    monkeypatch.setattr(evaluate, "bot_token_loss", scored)
    prompts = [{"context": None, "turns": ["ok", "word " * 40]}]
    with pytest.raises(EvalSetupError, match=r"^params\.yaml evaluate\.prompts\[0\]\.turns\[1\]: "):
        evaluate.evaluate_model(
            _tiny_model(), tmp_path, tmp_path / "val.parquet", {**EVAL, "prompts": prompts}
        )


def _evaluate_project(root: Path, evaluate: dict) -> None:
    checkpoint.save_model(_tiny_model(), root / "model" / "ckpt")
    ids, mask = render([{"role": "human", "content": "hi"}, {"role": "bot", "content": "hello there"}])
    writer = ShardWriter(root / "data" / "tokens" / "full" / "val", shard_tokens=1000)
    writer.add(np.array(ids * 3), np.array(mask * 3), np.array([len(ids)] * 3))
    writer.close()
    (root / "data/dataset/full").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"source": ["a", "b", "a"]}), root / "data/dataset/full/val.parquet")
    (root / "params.yaml").write_text(
        yaml.safe_dump({"train": {"variant": "full", "device": "cpu"}, "evaluate": evaluate})
    )


def test_evaluate_stage_one_line_errors_and_json_without_nan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from stages import evaluate as stage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    # The shipped reply budget (48) does not fit a 32-token model: one line, not a traceback.
    _evaluate_project(tmp_path, {**EVAL, "max_new_tokens": 48})
    assert stage.main() == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("evaluate: params.yaml evaluate.max_new_tokens:") and len(err) == 1
    # No prompts: no replies, so the reply figures are null (JSON has no NaN), not NaN.
    _evaluate_project(tmp_path, {**EVAL, "prompts": []})
    assert stage.main() == 0
    text = (tmp_path / "model" / "eval" / "metrics.json").read_text()
    assert "NaN" not in text
    metrics = json.loads(text)
    assert metrics["replies"] == 0 and metrics["stop_rate"] is None and metrics["val_bot_tokens"] > 0
    rows = (tmp_path / "model" / "eval" / "sources.csv").read_text().splitlines()
    assert len(rows) == 3 and {r.split(",")[0] for r in rows[1:]} == {"a", "b"}
    # val.parquet and the val shards disagree (a stale build): one line, it used to be a traceback.
    pq.write_table(pa.table({"source": ["a", "b"]}), tmp_path / "data/dataset/full/val.parquet")
    assert stage.main() == 1
    err = capsys.readouterr().err.strip().splitlines()
    # (after the val-loss bar's clearing, which a bar left open by an earlier test in this process nests)
    assert (
        err[-1]
        .split("\x1b[A")[-1]
        .startswith("evaluate: data/tokens/full/val: 3 conversations but 2 sources given")
    ), err


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("train: {variant: full}\nevaluate:\n  seed: 1\n\tx: 2\n", r"params\.yaml:4: not valid YAML"),
        (
            "evaluate: {seed: 1}\n",
            r"^evaluate: params\.yaml train\.variant: expected a dataset variant.* None$",
        ),
        ("train: {variant: ../x}\n", r"^evaluate: params\.yaml train\.variant: .* got '\.\./x'$"),
    ],
)
def test_evaluate_stage_says_a_params_file_it_cannot_read_in_one_line(
    params: str,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A params.yaml that is no YAML was a traceback from `python -m stages.evaluate`, and one
    without train.variant said data/dataset/None/val.parquet was missing, naming no setting."""
    from stages import evaluate as stage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    _evaluate_project(tmp_path, EVAL)
    (tmp_path / "params.yaml").write_text(params)
    assert stage.main() == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("train: {variant: full}\n  x: 2\n\ty: 3\n", r"^train: .*params\.yaml:\d+: not valid YAML"),
        (None, r"^train: .*No such file or directory: .*params\.yaml"),
    ],
)
def test_train_stage_says_a_params_file_it_cannot_read_in_one_line(
    params: str | None,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As the evaluate stage: a params.yaml that is no YAML, or none at all, was a traceback from
    `python -m stages.train`."""
    from stages import train as stage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    if params is not None:
        (tmp_path / "params.yaml").write_text(params)
    assert stage.main() == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err
