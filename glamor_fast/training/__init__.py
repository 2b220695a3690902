"""Training machinery behind ``glamor-fast train`` (see trainer.train)."""
from .checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from .config import TrainConfig
from .loop import NonFiniteLossError
from .trainer import TrainResult, train

__all__ = ["CheckpointError", "load_checkpoint", "model_from_checkpoint", "NonFiniteLossError",
           "save_checkpoint", "train", "TrainConfig", "TrainResult"]
