"""The training engine shared by every method, and its checkpoints (no Kedro)."""

from supermask_pipeline.training.checkpoint import CheckpointError, Checkpointing, CheckpointStore, TrainingState
from supermask_pipeline.training.config import TrainingConfig, resolve_device
from supermask_pipeline.training.engine import train
from supermask_pipeline.training.evaluation import TensorDataset, evaluate, evaluate_sampled
from supermask_pipeline.training.masked_model import MaskedModel
from supermask_pipeline.training.optimization import parameter_groups, schedule_factor
from supermask_pipeline.training.run import HISTORY_COLUMNS, TrainingDivergedError, TrainingRun

__all__ = [
    "HISTORY_COLUMNS",
    "CheckpointError",
    "CheckpointStore",
    "Checkpointing",
    "MaskedModel",
    "TensorDataset",
    "TrainingConfig",
    "TrainingDivergedError",
    "TrainingRun",
    "TrainingState",
    "evaluate",
    "evaluate_sampled",
    "parameter_groups",
    "resolve_device",
    "schedule_factor",
    "train",
]
