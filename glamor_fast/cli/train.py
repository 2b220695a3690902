"""``glamor-fast train``: train a GLAMOR-Net preset (single process, or DDP under torchrun).

    glamor-fast train --model glamor-net --epochs 60                       # authors' defaults
    torchrun --nproc_per_node 4 -m glamor_fast.cli train --data-root CAER-S --dataset caer-s
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from glamor_fast.cli.errors import check_writable_dir, run_reporting_errors
from glamor_fast.cli.progress import add_progress_argument, show_progress
from glamor_fast.training import TrainConfig, train
from glamor_fast.training.distributed import DistInfo, resolve_device
from glamor_fast.training.trainer import check_gla_backend

__all__ = ["add_arguments", "add_train_arguments", "config_from_args", "main", "train"]


def _bool_flag(parser, name: str, default: bool, help_text: str) -> None:
    parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=default, help=help_text)


def add_train_arguments(parser: argparse.ArgumentParser, defaults: TrainConfig = None) -> None:
    """Every TrainConfig field as a flag (the defaults shown are ``defaults``')."""
    from glamor_fast.models import PRESETS
    from glamor_fast.data.no_box import NO_BOX_POLICIES
    from glamor_fast.training.config import AMP_MODES, DATASETS, OPTIMIZERS, SCHEDULERS
    from glamor_fast.training.data import loader_workers

    d = defaults or TrainConfig()
    g = parser.add_argument_group("model")
    g.add_argument("--model", default=d.model, choices=list(PRESETS), help="model preset (default %(default)s)")
    g.add_argument("--encoder", default=d.encoder, choices=["conv5", "resnet18"], help="override the preset's encoder")
    g.add_argument("--gla-hidden", type=int, default=d.gla_hidden, help="GLA hidden width (default: 128)")
    g.add_argument("--gla-norm", default=d.gla_norm, choices=["batchnorm"], help="GLA hidden-layer norm")
    g.add_argument("--dropout", type=float, default=d.dropout, help="fusion dropout (default: 0.5)")
    g.add_argument("--backend", default=d.backend, help="GLA backend: auto, reference, cpp, triton, cuda (default %(default)s)")
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", default=d.dataset, choices=DATASETS, help="default %(default)s")
    g.add_argument("--data-root", default=d.data_root,
                   help="dataset folder with train/ and test/ (builtin: default ./data/builtin, generated if absent)")
    g.add_argument("--builtin-train", type=int, default=d.builtin_train, help="built-in dataset: train images when generating")
    g.add_argument("--builtin-test", type=int, default=d.builtin_test, help="built-in dataset: test images when generating")
    g.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="share of train held out for validation when there is no val/ split; 0 validates on test "
                        "(as the authors' code does) (default %(default)s)")
    _bool_flag(g, "normalize", d.normalize, "ImageNet mean/std normalisation")
    g.add_argument("--num-workers", type=int, default=d.num_workers,
                   help=f"DataLoader workers per process (default: a share of the cores, here {loader_workers(d.num_workers)})")
    g.add_argument("--cache", default=d.cache, metavar="CACHE",
                   help="read a `glamor-fast prepare` cache (augmentation runs on the training device)")
    g.add_argument("--no-box", default=d.no_box, choices=NO_BOX_POLICIES,
                   help="images without a face box: unmasked context (the authors' behaviour, default, comparable "
                        "with the paper; the face leaks into the context), drop, or detect (Haar)")
    g.add_argument("--skip-bad", action="store_true", default=d.skip_bad,
                   help="leave out images that cannot be decoded, with a count (default: stop at the first)")
    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=d.epochs, help="default %(default)s")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="per process (default %(default)s)")
    g.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS, help="default %(default)s")
    g.add_argument("--lr", type=float, default=d.lr, help="default %(default)s")
    g.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum (default %(default)s)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="default %(default)s")
    g.add_argument("--scheduler", default=d.scheduler, choices=SCHEDULERS, help="per-epoch schedule (default %(default)s)")
    g.add_argument("--milestones", type=int, nargs="*", default=d.milestones,
                   help="step schedule: epochs where lr is multiplied by --gamma (default %(default)s)")
    g.add_argument("--gamma", type=float, default=d.gamma, help="default %(default)s")
    g.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs, help="linear warm-up (default %(default)s)")
    g.add_argument("--accum-steps", type=int, default=d.accum_steps, help="gradient accumulation (default %(default)s)")
    g.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm (default: none)")
    g.add_argument("--amp", default=d.amp, choices=AMP_MODES, help="mixed precision; fp16 needs CUDA (default %(default)s)")
    g.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help="default %(default)s")
    g = parser.add_argument_group("run")
    g.add_argument("--seed", type=int, default=d.seed, help="default %(default)s")
    g.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N (default %(default)s)")
    g.add_argument("--threads", type=int, default=d.threads, help="torch.set_num_threads (default: PyTorch's)")
    _bool_flag(g, "channels-last", d.channels_last, "keep the model in channels_last memory (faster on CPU)")
    _bool_flag(g, "keep-freed-memory", d.keep_freed_memory,
               "CPU: glibc keeps freed memory for reuse instead of re-mapping large blocks every step "
               "(about 1.4x faster training here; the process keeps its peak memory)")
    g.add_argument("--out-dir", default=d.out_dir, help="checkpoints and logs (default %(default)s)")
    g.add_argument("--resume", default=d.resume, metavar="CHECKPOINT", help="continue from a last.pt/best.pt")
    g.add_argument("--overwrite", action="store_true",
                   help="train into an --out-dir that holds a run; its files are replaced as the new run writes "
                        "them (default: refuse)")
    add_progress_argument(g, "per-epoch progress bars")
    g.add_argument("--max-batches-per-epoch", type=int, default=d.max_batches_per_epoch,
                   help="cap batches per epoch (smoke tests)")
    g.add_argument("--early-stop", type=int, default=d.early_stop, metavar="EPOCHS",
                   help="stop when the validation accuracy has not improved for this many epochs (default: never)")
    g.add_argument("--precise-bn", type=int, default=d.precise_bn, metavar="N",
                   help="before each evaluation, re-estimate every BatchNorm's running statistics over N training "
                        "batches (0: off; default: 64 when a BatchNorm's momentum makes its statistics lag, as with "
                        "Keras's settings in glamor-net-authors, else off)")
    g.add_argument("--time-budget", dest="time_budget_s", type=float, default=d.time_budget_s, metavar="SECONDS",
                   help="start no epoch that would end past this many seconds of training (default: none)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    import dataclasses

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    values["progress"] = show_progress(values["progress"])
    return TrainConfig(**values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_train_arguments(parser)


RUN_FILES = ("best.pt", "last.pt", "metrics.csv", "metrics.json", "config.json")


def refuse_to_replace_a_run(args: argparse.Namespace) -> None:
    """FileExistsError when --out-dir already holds a run and neither --resume nor --overwrite is given."""
    out = Path(args.out_dir)
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found and not args.resume and not getattr(args, "overwrite", False):
        raise FileExistsError(
            f"--out-dir {out} already holds a run ({', '.join(found)}); continue it with --resume {out / 'last.pt'}, "
            f"replace it with --overwrite, or choose another --out-dir")


# Settings of this process, not of the run: never taken from a checkpoint.
PROCESS_FIELDS = ("resume", "progress")


def explicit_fields(args: argparse.Namespace) -> set:
    """The TrainConfig fields given on the command line (``args.argv``), as opposed to defaults."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    argv = getattr(args, "argv", None)
    if argv is None:  # called from Python without a command line: whatever differs from the defaults
        default = TrainConfig()
        return {k for k in fields if hasattr(args, k) and getattr(args, k) != getattr(default, k)}
    parser = argparse.ArgumentParser(add_help=False)
    add_train_arguments(parser)
    unset = object()  # not a string, so argparse leaves it as it is
    parser.set_defaults(**{dest: unset for dest in vars(parser.parse_args([]))})
    after_command = argv[argv.index("train") + 1:] if "train" in argv else argv
    given, _ = parser.parse_known_args(after_command)
    return {k for k, v in vars(given).items() if v is not unset} & fields


def settings_from_resume(cfg: TrainConfig, explicit: set) -> TrainConfig:
    """With --resume, the run's settings come from the checkpoint: every TrainConfig field (epochs,
    data, output folder, recipe, model) except those given explicitly, which override it and
    are listed. A model setting that contradicts the checkpoint still fails in train()."""
    import dataclasses

    from glamor_fast.training.checkpoint import load_checkpoint

    if not cfg.resume:
        return cfg
    saved = load_checkpoint(cfg.resume)["config"]
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    taken = {k: v for k, v in saved.items() if k in known and k not in explicit and k not in PROCESS_FIELDS}
    overridden = {k: getattr(cfg, k) for k in sorted(explicit - set(PROCESS_FIELDS))
                  if k in saved and saved[k] != getattr(cfg, k)}
    if os.environ.get("RANK", "0") == "0":
        print(f"resuming {cfg.resume} with its run's settings"
              + (" except, as given: " + ", ".join(f"{k}={v!r} (was {saved[k]!r})" for k, v in overridden.items())
                 if overridden else ""), flush=True)
    return dataclasses.replace(cfg, **taken)


def nothing_left_to_do(cfg: TrainConfig) -> str:
    """Why a --resume run has no epoch left to train ('' when it has)."""
    from glamor_fast.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(cfg.resume)
    done, partial = int(ckpt["epoch"]), int(ckpt.get("step_in_epoch", 0))
    if done >= cfg.epochs and not partial:
        return f"{cfg.resume} has trained all {cfg.epochs} epochs (pass a larger --epochs to train further)"
    best = int(ckpt.get("best_epoch", -1))
    if cfg.early_stop is not None and best > 0 and done - best >= cfg.early_stop and not partial:
        return (f"{cfg.resume} stopped early: no better validation accuracy since epoch {best} "
                f"(--early-stop {cfg.early_stop})")
    return ""


def check_backend_flag(cfg: TrainConfig, explicit: set) -> None:
    """An explicit --backend for a preset without GLA is an error (it would be ignored)."""
    from glamor_fast.models import PRESETS

    attention = PRESETS[cfg.model].model_kwargs.get("attention")
    if "backend" in explicit and attention != "gla":
        raise ValueError(f"--backend {cfg.backend}: --model {cfg.model} has no GLA "
                         f"(attention={attention!r}), so a GLA backend would be ignored; leave --backend out")


def run(args: argparse.Namespace) -> int:
    explicit = explicit_fields(args)
    refuse_to_replace_a_run(args)
    cfg = settings_from_resume(config_from_args(args), explicit)
    check_backend_flag(cfg, explicit)
    check_gla_backend(cfg, resolve_device(cfg.device, DistInfo()))  # before anything is written
    if cfg.resume:
        why = nothing_left_to_do(cfg)
        if why:
            print(f"nothing to do: {why}", flush=True)
            return 0
    check_writable_dir(cfg.out_dir)
    result = train(cfg)
    if result.best_checkpoint is not None and os.environ.get("RANK", "0") == "0":
        print(f"best validation accuracy {result.best_metric:.4f} at epoch {result.best_epoch}; "
              f"checkpoint {result.best_checkpoint}; logs in {result.out_dir}")
    return 0


def main(args: argparse.Namespace) -> int:
    return run_reporting_errors("train", run, args)
