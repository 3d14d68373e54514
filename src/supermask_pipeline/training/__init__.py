"""The training engine shared by every method (no Kedro)."""

from supermask_pipeline.training.config import TrainingConfig, resolve_device
from supermask_pipeline.training.engine import (
    HISTORY_COLUMNS,
    TensorDataset,
    TrainingDivergedError,
    evaluate,
    train,
)

__all__ = [
    "HISTORY_COLUMNS",
    "TensorDataset",
    "TrainingConfig",
    "TrainingDivergedError",
    "evaluate",
    "resolve_device",
    "train",
]
