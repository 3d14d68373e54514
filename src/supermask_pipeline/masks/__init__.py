"""Mask strategies, criteria and the arithmetic of remaining weights (no Kedro)."""

from supermask_pipeline.masks.criteria import (
    CRITERIA,
    criterion_mask,
    criterion_masks,
    get_criterion,
    keep_count,
    layer_prune_rate,
    remaining_fraction,
)
from supermask_pipeline.masks.lottery import (
    MASK_0_ACTIONS,
    MASK_1_ACTIONS,
    Mask0Result,
    get_mask_0_action,
    get_mask_1_action,
    ticket_start,
)
from supermask_pipeline.masks.statistics import remaining_weights_table
from supermask_pipeline.masks.strategies import (
    MASK_STRATEGIES,
    DenseStrategy,
    FixedMaskStrategy,
    MaskStrategy,
    SignedSupermaskStrategy,
    SignedThresholdMask,
    get_mask_strategy,
)

__all__ = [
    "CRITERIA",
    "MASK_0_ACTIONS",
    "MASK_1_ACTIONS",
    "MASK_STRATEGIES",
    "DenseStrategy",
    "FixedMaskStrategy",
    "Mask0Result",
    "MaskStrategy",
    "SignedSupermaskStrategy",
    "SignedThresholdMask",
    "criterion_mask",
    "criterion_masks",
    "get_criterion",
    "get_mask_0_action",
    "get_mask_1_action",
    "get_mask_strategy",
    "keep_count",
    "layer_prune_rate",
    "remaining_fraction",
    "remaining_weights_table",
    "ticket_start",
]
