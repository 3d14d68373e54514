"""Remaining-weight arithmetic of masks (Koster et al. 2022, Section 4: remaining weights = Σ|S| / N)."""

from __future__ import annotations

import pandas as pd
import torch

REMAINING_COLUMNS = [
    "layer",
    "num_weights",
    "remaining",
    "positive",
    "negative",
    "remaining_weights",
]


def remaining_weights_table(masks: dict[str, torch.Tensor]) -> pd.DataFrame:
    """Per-layer and global counts of the weights a mask keeps.

    Args:
        masks: layer name → mask of any shape with values in {−1, 0, +1} (signed) or
            {0, 1} (binary), any numeric dtype, in forward order.

    Returns:
        One row per layer plus a final row ``layer == "total"``, columns
        ``num_weights`` (int), ``remaining`` (= Σ|S|, int), ``positive`` (+1 entries),
        ``negative`` (−1 entries), ``remaining_weights`` (fraction in [0, 1]).

    Raises:
        ValueError: empty ``masks`` or a mask value outside {−1, 0, +1}.
    """
    if not masks:
        raise ValueError("remaining_weights_table needs at least one mask.")
    rows = []
    for name, mask in masks.items():
        values = mask.detach()
        if not bool(((values == 0) | (values == 1) | (values == -1)).all()):
            raise ValueError(f"Mask {name!r} holds values outside {{-1, 0, +1}}.")
        positive = int((values > 0).sum())
        negative = int((values < 0).sum())
        rows.append(
            {
                "layer": name,
                "num_weights": values.numel(),
                "remaining": positive + negative,
                "positive": positive,
                "negative": negative,
            }
        )
    table = pd.DataFrame(rows)
    total = table.drop(columns="layer").sum()
    table.loc[len(table)] = {"layer": "total", **total.to_dict()}
    table["remaining_weights"] = table["remaining"] / table["num_weights"]
    return table[REMAINING_COLUMNS]
