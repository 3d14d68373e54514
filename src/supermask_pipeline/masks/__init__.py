"""Mask strategies, criteria and the arithmetic of remaining weights (no Kedro)."""

from supermask_pipeline.masks.statistics import remaining_weights_table
from supermask_pipeline.masks.strategies import (
    MASK_STRATEGIES,
    DenseStrategy,
    MaskStrategy,
    SignedSupermaskStrategy,
    SignedThresholdMask,
    get_mask_strategy,
)

__all__ = [
    "MASK_STRATEGIES",
    "DenseStrategy",
    "MaskStrategy",
    "SignedSupermaskStrategy",
    "SignedThresholdMask",
    "get_mask_strategy",
    "remaining_weights_table",
]
