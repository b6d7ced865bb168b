"""What a training run reads: its settings (TrainConfig) and where it reads and writes (TrainPaths).

TrainConfig is params.yaml `train` merged with the chosen profile, every value checked for type and
range with an error naming where it was written. Its `fingerprint` (settings, data meta.json and the
code that decides the weights) is what an unfinished run must match to be resumed automatically.
The training loop itself is pipeline/train.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import atomic, attention, device, hf, paramcheck
from pipeline.params import train_profile

# Knobs that change what is logged or saved, not the weights: they may differ on resume.
# (The attention kernel too: kernels agree to rounding, and `auto` may pick another on another GPU.)
NON_TRAJECTORY_KEYS = frozenset(
    {"eval_interval", "eval_iters", "ckpt_interval", "log_interval", "device", "attention"}
)

# Settings of the run, not of a model recipe: read from `train` itself (the stage takes the data path
# from train.variant, dvc.yaml its deps), so a profile that set one would record a run it is not.
RUN_LEVEL_KEYS = ("variant", "init_from", "seed", "device", "profile")

# The code hashed into the fingerprint, beside this file (the settings and their defaults): the training
# loop (sampler draw, step, dropout seeds: train.py), the run's start (first weights, scratch or
# pretrained: trainsetup.py), the precision rules it trains under (dtype, autocast, TF32: device.py;
# left out, an edit there re-ran the stage, which finalised the old run's weights as the new ones), what a resume restores (optimizer, scaler, RNG states, sampler
# position: runstate.py), the window sampler (shards.py), the learning-rate schedule (lr.py), the optimizer
# and its weight-decay groups (optim.py), the model and the loading of pretrained weights (hf.py). Logging
# (runlog.py) and the speed figures (trainmetrics.py: FLOPs, timing, the summary) change no weight and are
# left out.
FINGERPRINT_CODE = (
    "trainconfig.py",
    "train.py",
    "trainsetup.py",
    "runstate.py",
    "shards.py",
    "lr.py",
    "optim.py",
    "model.py",
    "hf.py",
    "device.py",
)


@dataclass
class TrainConfig:
    """Everything a run reads; params.yaml `train` merged with its profile."""

    # model (used from scratch; a pretrained or resumed model brings its own shape)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 256  # training window; may be shorter than a pretrained model's context
    # where windows start: "turn" (token-weighted, at a human-turn or conversation boundary: covers
    # long conversations) or "conversation" (each conversation's start, uniformly)
    window_align: str = "turn"
    dropout: float = 0.0
    # batch and schedule
    batch_size: int = 16  # windows per micro-batch per process
    grad_accum: int = 1  # micro-batches per optimizer step, in total over all processes
    max_iters: int = 600
    lr: float = 2e-3
    min_lr: float = 2e-4
    warmup_iters: int = 50
    # optimizer
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 disables clipping
    # evaluation, checkpoints, logging
    eval_interval: int = 100
    eval_iters: int = 10
    ckpt_interval: int = 100
    log_interval: int = 1
    # speed (CUDA only; the CPU path trains in float32 without compile unless asked)
    dtype: str = "float32"  # float32 | bfloat16 | float16 (autocast dtype)
    compile: bool = False
    tf32: bool = True
    # where the vocabulary projection runs: "gathered" (only at loss positions: data-dependent
    # shapes, so a compiled model breaks its graph there), "full" (every position, static shapes,
    # like nanoGPT) or "auto" (gathered, unless compiled)
    loss_head: str = "auto"
    # attention kernel on CUDA (pipeline.attention): "auto" (the fastest that agrees with a float32
    # reference, timed at start), "torch" (torch's priority) or one of flash | efficient | cudnn | math
    attention: str = "auto"
    # run
    variant: str = "full"  # the dataset variant (data/tokens/<variant>): part of what a resume must match
    init_from: str = "scratch"
    seed: int = 1337
    device: str = "auto"

    @classmethod
    def from_params(cls, train: dict[str, Any], profiles: Any) -> TrainConfig:
        """Merge `train` (init_from, seed, device) with `train_profiles[train.profile]` (`profiles`,
        params.yaml's top-level train_profiles: dvc.yaml tracks only the profile in use, so editing
        another re-runs nothing); unknown keys fail.

        A profile may not set the run-level keys (RUN_LEVEL_KEYS: variant, init_from, seed, device).
        A profile may leave settings out (they take the defaults above). Every value is checked for
        its type and range, and an error names the key where it was written (`train_profiles.X.lr`).
        """
        if "profiles" in train:  # where profiles lived before: a mapping there would be ignored
            raise ValueError(
                "params.yaml train.profiles: profiles are the top-level `train_profiles:` section now "
                "(the train stage tracks only the one train.profile names)"
            )
        profile_name, profile = train_profile(train, profiles or {})
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        merged: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for where, values in (("train", train), (f"train_profiles.{profile_name}", profile)):
            for key, value in values.items():
                if where == "train" and key == "profile":
                    continue
                if where != "train" and key in RUN_LEVEL_KEYS:
                    raise ValueError(f"params.yaml {where}.{key}: set it at train.{key}")
                if where != "train" and key in merged:
                    # The profile's value would win, and `dvc exp show` would list one the run
                    # never used (`-S +train.max_iters=100` beside the profile's max_iters).
                    raise ValueError(
                        f"params.yaml train.{key} and {where}.{key} both set {key}: set it in one "
                        f"place (dvc exp run -S {where}.{key}=...)"
                    )
                if key not in kinds:
                    raise KeyError(f"params.yaml {where}.{key}: unknown training setting")
                merged[key] = _coerce(value, kinds[key])
                origin[key] = f"{where}.{key}"
        return cls(**merged).validated(origin)

    def validated(self, origin: dict[str, str] | None = None) -> TrainConfig:
        """Check every setting's type and range; `origin` maps a setting to where params.yaml sets it."""

        def name(key: str) -> str:
            return f"params.yaml {(origin or {}).get(key, f'train.{key}')}"

        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _is_kind(value, f.type):
                raise ValueError(f"{name(f.name)}: expected {_KIND_WORDS[f.type]}, got {value!r}")
        checks = [
            ("n_layer", self.n_layer >= 1, "must be >= 1"),
            ("n_head", self.n_head >= 1, "must be >= 1"),
            ("n_embd", self.n_embd >= 1, "must be >= 1"),
            (
                "n_embd",
                self.n_head < 1 or self.n_embd % self.n_head == 0,
                f"must be a multiple of n_head ({self.n_head})",
            ),
            ("block_size", self.block_size >= 1, "must be >= 1"),
            ("dropout", 0 <= self.dropout < 1, "must be in [0, 1)"),
            ("batch_size", self.batch_size >= 1, "must be >= 1"),
            ("grad_accum", self.grad_accum >= 1, "must be >= 1"),
            ("max_iters", self.max_iters >= 1, "must be >= 1"),
            ("lr", self.lr > 0, "must be > 0"),
            ("min_lr", 0 <= self.min_lr <= self.lr, f"need 0 <= min_lr <= lr ({self.lr})"),
            ("warmup_iters", self.warmup_iters >= 0, "must be >= 0"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
            ("beta1", 0 <= self.beta1 < 1, "must be in [0, 1)"),
            ("beta2", 0 <= self.beta2 < 1, "must be in [0, 1)"),
            ("grad_clip", self.grad_clip >= 0, "must be >= 0 (0 disables clipping)"),
            ("eval_interval", self.eval_interval >= 1, "must be >= 1"),
            ("eval_iters", self.eval_iters >= 1, "must be >= 1"),
            ("ckpt_interval", self.ckpt_interval >= 1, "must be >= 1"),
            ("log_interval", self.log_interval >= 1, "must be >= 1"),
            ("dtype", self.dtype in device.DTYPES, f"must be one of {sorted(device.DTYPES)}"),
            ("window_align", self.window_align in ("turn", "conversation"), "must be turn or conversation"),
            ("loss_head", self.loss_head in ("auto", "gathered", "full"), "must be auto, gathered or full"),
            (
                "attention",
                self.attention in attention.CHOICES,
                f"must be one of {', '.join(attention.CHOICES)}",
            ),
            (
                "init_from",
                self.init_from.strip() != "",
                "must name scratch, resume, a gpt2* model or a directory",
            ),
            # torch.manual_seed takes up to 2**64 - 1; dropout seeds add step offsets to this one
            ("seed", 0 <= self.seed < 2**63, "must be in [0, 2**63)"),
            (
                "device",
                re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
                "must be auto, cpu, cuda or cuda:N",
            ),
        ]
        for key, ok, rule in checks:
            if not ok:
                raise ValueError(f"{name(key)}: {rule}, got {getattr(self, key)!r}")
        return self

    def warnings(self) -> list[str]:
        """Legal settings that are probably not what was meant (logged when the run starts)."""
        out = []
        if self.warmup_iters >= self.max_iters:  # equal too: warmup's last step is max_iters itself
            out.append(
                f"warmup_iters {self.warmup_iters} >= max_iters {self.max_iters}: the learning rate never "
                f"reaches lr and never decays"
            )
        return out

    @property
    def tokens_per_iter(self) -> int:
        """Tokens one optimizer step trains on, all processes together."""
        return self.batch_size * self.grad_accum * self.block_size

    @property
    def gather_loss(self) -> bool:
        """Whether the vocabulary projection runs only at the loss positions (see loss_head)."""
        return self.loss_head == "gathered" or (self.loss_head == "auto" and not self.compile)

    @property
    def init_from_folder(self) -> bool:
        """Whether the run starts from a local Hugging Face directory (not scratch, resume or a Hub name)."""
        return self.init_from not in ("scratch", "resume", *hf.HUB_REPOS)

    def fingerprint(self, data: bytes) -> str:
        """What decides the weights: config (minus logging knobs), the data (`data`, the shards'
        data_digest, taken once per run: shards without meta.json are hashed file by file), the
        code (FINGERPRINT_CODE), and for a run that starts from a local Hugging Face directory the
        files there that decide its first weights (hf.source_digest). (hf.py, which
        loads pretrained weights, is code of the run; the export, hfexport.py, is not: a new model
        card never retrains.)

        The directory's contents count because init_from is only a path: after its weights change,
        an unfinished run of the same settings must not resume as if nothing had. (A Hub name is a
        fixed published model, read through huggingface_hub's cache: its name stands for it.)"""
        h = hashlib.sha256()
        trajectory = {k: v for k, v in dataclasses.asdict(self).items() if k not in NON_TRAJECTORY_KEYS}
        h.update(json.dumps(trajectory, sort_keys=True).encode())
        h.update(data)
        for name in FINGERPRINT_CODE:
            h.update(Path(__file__).with_name(name).read_bytes())
        if self.init_from_folder:
            h.update(f"init_from files: {hf.source_digest(self.init_from)}".encode())
        return h.hexdigest()


def data_digest(data_dir: Path) -> bytes:
    """What the fingerprint records of the token shards: meta.json, which holds every shard file's
    sha256 (check_data refuses shards that differ from it). Shards without one (written by
    ShardWriter alone, or by hand) are hashed file by file: recorded as just "no meta.json", a run
    whose shards were replaced between a kill and its rerun resumed on the new ones (its sampler
    position applied to other data, "same config, data and code" said the log)."""
    meta = data_dir / "meta.json"
    if meta.exists():
        return meta.read_bytes()
    h = hashlib.sha256(b"no meta.json")
    for split in ("train", "val"):
        folder = data_dir / split
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.is_file():
                h.update(f"{split}/{path.name} {atomic.sha256_file(path)}\n".encode())
    return h.hexdigest().encode()


def data_sha(data: bytes) -> str:
    """The sha256 (hex) of a data_digest: what a run's state records of the data it trains on, so
    that an extension on other data is told from one on the same (pipeline.trainsetup.data_changed)."""
    return hashlib.sha256(data).hexdigest()


# Field type (as written in the dataclass) -> what params.yaml must hold for it.
_KIND_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):  # YAML `true` is not a number
        return False
    if kind == "int":
        return isinstance(value, int)
    if kind == "float":
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, str)


def _coerce(value: Any, kind: str) -> Any:
    """YAML 1.1 (PyYAML) reads `1e-3` (no dot) as a string, and `dvc exp run -S max_iters=1e3`
    writes 1000.0: take a value as the number it spells, an integral one where an integer is
    expected (paramcheck's rule, shared with build and tokenize); anything else is left for
    validated()."""
    if kind not in ("int", "float"):
        return value
    n = paramcheck.number(value)
    if n is None:
        return value
    if kind == "float":
        return float(n)
    if isinstance(n, float):
        return int(n) if math.isfinite(n) and n.is_integer() else value
    return n


@dataclass
class TrainPaths:
    data_dir: Path  # data/tokens/<variant> with train/ and val/
    run_dir: Path = Path("model/run")  # resumable checkpoints (not a DVC output, survives a repro)
    ckpt_dir: Path = Path("model/ckpt")
    live_dir: Path = Path("model/live")
    metrics_file: Path = Path("model/metrics.json")

    @classmethod
    def under(cls, root: Path, variant: str) -> TrainPaths:
        """The project layout below `root` (the repository root for the DVC stage)."""
        m = root / "model"
        return cls(
            data_dir=root / "data" / "tokens" / variant,
            run_dir=m / "run",
            ckpt_dir=m / "ckpt",
            live_dir=m / "live",
            metrics_file=m / "metrics.json",
        )
