"""The training engine shared by every method, and its checkpoints (no Kedro)."""

from supermask_pipeline.training.checkpoint import CheckpointError, CheckpointStore, TrainingState
from supermask_pipeline.training.config import TrainingConfig, resolve_device
from supermask_pipeline.training.engine import (
    HISTORY_COLUMNS,
    Checkpointing,
    TensorDataset,
    TrainingDivergedError,
    evaluate,
    evaluate_sampled,
    parameter_groups,
    schedule_factor,
    train,
)

__all__ = [
    "HISTORY_COLUMNS",
    "CheckpointError",
    "CheckpointStore",
    "Checkpointing",
    "TensorDataset",
    "TrainingConfig",
    "TrainingDivergedError",
    "TrainingState",
    "evaluate",
    "evaluate_sampled",
    "parameter_groups",
    "resolve_device",
    "schedule_factor",
    "train",
]
