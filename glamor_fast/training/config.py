"""TrainConfig: every training setting in one flat, serialisable dataclass.

Defaults follow the authors' GLAMOR-Net code: SGD with momentum 0.9, lr 5e-4, lr x0.1 at
epochs 25 and 40, 60 epochs, keep the checkpoint with the best validation accuracy.
The config is stored inside every checkpoint as a plain dict (str/int/float/bool/list/None
only, so ``torch.load(weights_only=True)`` can read it back).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("step", "cosine", "none")
AMP_MODES = ("none", "bf16", "fp16")
DATASETS = ("builtin", "caer-s", "ncaer-s")

# Fields that define the network's weights: a checkpoint only resumes/loads into a config
# that agrees on all of them.
MODEL_FIELDS = ("model", "encoder", "gla_hidden", "gla_norm", "dropout")


@dataclass
class TrainConfig:
    # model
    model: str = "glamor-net"           # a name in glamor_fast.models.PRESETS
    encoder: Optional[str] = None       # None: the preset's (conv5 unless the preset says otherwise)
    gla_hidden: Optional[int] = None    # None: GLAMORNet's default (128)
    gla_norm: Optional[str] = None      # None or "batchnorm"
    dropout: Optional[float] = None     # None: GLAMORNet's default (0.5)
    backend: str = "auto"               # GLA backend; does not change the weights
    # data
    dataset: str = "builtin"
    data_root: Optional[str] = None     # None: ./data/builtin, generated on first use
    builtin_train: Optional[int] = None  # built-in dataset size when it is generated (None: its default)
    builtin_test: Optional[int] = None
    val_fraction: float = 0.1           # held out of train when the dataset has no val split; 0: validate on test
    normalize: bool = False             # ImageNet mean/std after scaling to [0, 1]
    num_workers: Optional[int] = None   # DataLoader workers per process; None: a share of the cores (loader_workers)
    cache: Optional[str] = None         # a `glamor-fast prepare` cache to read instead of decoding images
    no_box: str = "unmasked"            # images without a face box: unmasked (authors') | drop | detect
    # optimisation
    epochs: int = 60
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 5e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "step"
    milestones: list = field(default_factory=lambda: [25, 40])
    gamma: float = 0.1
    warmup_epochs: int = 0              # linear warm-up (cosine/step both honour it)
    accum_steps: int = 1                # gradient accumulation: optimizer step every N batches
    grad_clip: Optional[float] = None   # max gradient norm, None: no clipping
    amp: str = "none"                   # none | bf16 | fp16 (fp16 needs CUDA)
    label_smoothing: float = 0.0
    # run
    seed: int = 0
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    threads: Optional[int] = None       # torch.set_num_threads, None: leave PyTorch's choice
    channels_last: bool = True          # model in channels_last memory (faster convs and fused blocks)
    keep_freed_memory: bool = True      # CPU: glibc keeps freed memory for reuse (training/allocator.py)
    out_dir: str = "runs/train"
    resume: Optional[str] = None
    progress: bool = True
    skip_bad: bool = False              # leave out images that cannot be decoded (reported with a count)
    max_batches_per_epoch: Optional[int] = None  # cap per epoch (smoke tests), None: all
    time_budget_s: Optional[float] = None  # stop early when another epoch would end past this (seconds)
    early_stop: Optional[int] = None    # stop after this many epochs without a better val accuracy, None: never
    precise_bn: Optional[int] = None    # batches to re-estimate BatchNorm statistics over before each evaluation;
    #                                     None: auto (PRECISE_BN_AUTO_BATCHES when a BatchNorm lags), 0: off

    def __post_init__(self):
        self.milestones = [int(m) for m in self.milestones]
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        def bad(name, why):
            raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: {why}")

        from glamor_fast.data.no_box import NO_BOX_POLICIES
        from glamor_fast.models import PRESETS

        if self.model not in PRESETS:
            bad("model", f"unknown preset; choose one of {', '.join(PRESETS)}")
        for name, choices in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS), ("amp", AMP_MODES),
                              ("dataset", DATASETS)):
            if getattr(self, name) not in choices:
                bad(name, f"choose one of {', '.join(choices)}")
        for name in ("epochs", "batch_size", "accum_steps"):
            if int(getattr(self, name)) < 1:
                bad(name, "must be >= 1")
        if not self.lr > 0:
            bad("lr", "must be > 0")
        if not 0.0 <= self.val_fraction < 1.0:
            bad("val_fraction", "must be in [0, 1)")
        if self.num_workers is not None and self.num_workers < 0:
            bad("num_workers", "must be >= 0 or None")
        if self.no_box not in NO_BOX_POLICIES:
            bad("no_box", f"choose one of {', '.join(NO_BOX_POLICIES)}")
        if self.warmup_epochs < 0:
            bad("warmup_epochs", "must be >= 0")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            bad("time_budget_s", "must be > 0 or None")
        if self.max_batches_per_epoch is not None and self.max_batches_per_epoch < 1:
            bad("max_batches_per_epoch", "must be >= 1 or None")
        if self.early_stop is not None and self.early_stop < 1:
            bad("early_stop", "must be >= 1 or None")
        if self.precise_bn is not None and self.precise_bn < 0:
            bad("precise_bn", "must be >= 0 (0: off) or None (auto)")

    def model_overrides(self) -> dict:
        """Keyword overrides for ``build_model(self.model, **overrides)`` (unset fields left out)."""
        out = {"backend": self.backend}
        for name in ("encoder", "gla_hidden", "gla_norm", "dropout"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"TrainConfig: unknown fields {unknown}")
        return cls(**d)
