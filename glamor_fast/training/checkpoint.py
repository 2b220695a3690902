"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain Python values only:
    format, version, model (state dict), optimizer, scheduler, scaler (state dicts or None),
    epoch (completed epochs), step_in_epoch (batches of the next epoch already done, > 0 only
    for a Ctrl-C checkpoint), config (TrainConfig.to_dict()), class_names (list[str]),
    best_metric, best_epoch, history (list of per-epoch metric dicts), torch_version, and
    epoch_partial ([loss sum, correct, samples] of the interrupted epoch so far, or None).
Loading never unpickles arbitrary objects, so a checkpoint from a stranger cannot run code.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Optional

import torch
from torch import nn

FORMAT = "glamor_fast.checkpoint"
VERSION = 1
REQUIRED_KEYS = ("model", "epoch", "config", "class_names")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, unsafe, or for a different model/data."""


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_checkpoint(path, payload: dict) -> Path:
    """torch.save ``payload`` to a temporary file beside ``path``, then rename it over ``path``.

    A crash mid-write leaves the previous checkpoint intact (os.replace is atomic on POSIX
    and Windows within one file system).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, "torch_version": str(torch.__version__), **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes it 0600; honour the umask like open()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# The first bytes of files people mistake for checkpoints, for the "not a checkpoint" message.
_MAGIC = ((b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"), (b"GIF8", "a GIF image"),
          (b"RIFF", "a RIFF file (AVI/WebP/WAV)"), (b"\x1a\x45\xdf\xa3", "a Matroska/WebM video"),
          (b"\x89HDF", "an HDF5 file (a Keras/TF .h5 checkpoint?)"), (b"{", "a JSON/text file"))
# Lines of PyTorch's weights_only error that advise weights_only=False or filing an issue.
_TORCH_ADVICE = ("weights_only", "file an issue", "documentation of torch.load")


def _not_a_checkpoint(path: Path) -> Optional[str]:
    """Why ``path`` cannot be a torch.save file, from its first bytes; None when it may be one."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        return "the file is empty"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if not any(n.endswith("data.pkl") for n in z.namelist()):
                return "it is a zip archive without the data.pkl of a PyTorch checkpoint"
        return None
    if head.startswith(b"PK\x03\x04"):
        return "it is a truncated or corrupt zip archive (an interrupted copy or download?)"
    if head[:1] == b"\x80":  # a pickle (protocol >= 2): the legacy torch.save format
        return None
    kind = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
    return f"it is {kind}" if kind else f"its first bytes {head!r} are neither a zip archive nor a pickle (corrupt?)"


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint written by save_checkpoint; CheckpointError with the reason otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (or is not a file)")
    try:
        why = _not_a_checkpoint(path)
    except PermissionError:
        raise CheckpointError(f"cannot read checkpoint {path}: permission denied") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    if why:
        raise CheckpointError(f"{path} is not a checkpoint: {why} (checkpoints are the .pt files "
                              f"that `glamor-fast train` writes)")
    try:
        with warnings.catch_warnings():  # PyTorch's protocol warning asks the user to file an issue
            warnings.simplefilter("ignore", UserWarning)
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        why = "; ".join(ln.rstrip(".") for ln in lines if not any(a in ln for a in _TORCH_ADVICE)) or "unknown reason"
        if "GLOBAL" in why:
            raise CheckpointError(
                f"refusing to load checkpoint {path}: it holds objects other than tensors and plain "
                f"containers, and loading them could run arbitrary code ({why}). Load only checkpoints "
                f"written by glamor-fast from a source you trust") from None
        raise CheckpointError(f"{path} is not a checkpoint or is corrupt: PyTorch's safe loader stopped at: "
                              f"{why}") from None
    except PermissionError:
        raise CheckpointError(f"cannot read checkpoint {path}: permission denied") from None
    except Exception as exc:  # torch.load raises many types on a damaged file (KeyError, RuntimeError, ...)
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a PyTorch checkpoint "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a glamor_fast checkpoint (no format={FORMAT!r} entry)")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {ckpt.get('version')!r}; this code reads {VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the entries {missing}")
    return ckpt


def load_model_state(model: nn.Module, ckpt: dict, where: str = "checkpoint") -> None:
    """model.load_state_dict(ckpt["model"]) with a readable error on mismatch."""
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as exc:
        cfg = ckpt.get("config", {})
        raise CheckpointError(
            f"{where} does not fit this model: it was saved for model={cfg.get('model')!r} "
            f"encoder={cfg.get('encoder')!r} gla_hidden={cfg.get('gla_hidden')!r} "
            f"gla_norm={cfg.get('gla_norm')!r}. PyTorch says: {exc}"
        ) from None


def model_from_checkpoint(ckpt: dict, backend: Optional[str] = None, device="cpu",
                          where: str = "checkpoint") -> nn.Module:
    """Rebuild the checkpoint's model (preset + overrides), load its weights, eval mode.

    ``backend`` replaces the GLA backend it was trained with (weights do not depend on it).
    """
    from glamor_fast.models import build_model

    from .config import TrainConfig

    try:
        cfg = TrainConfig.from_dict(ckpt["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where} has an unusable config: {exc}") from None
    overrides = cfg.model_overrides()
    if backend is not None:
        overrides["backend"] = backend
    model = build_model(cfg.model, num_classes=len(ckpt["class_names"]), **overrides)
    load_model_state(model, ckpt, where)
    return model.to(device).eval()
