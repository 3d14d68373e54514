"""Published test accuracies and remaining weights, as data (from ../shared/METHODS.md).

Sources:
    Koster, Grothe, Rettinger, "Signing the Supermask: Keep, Hide, Invert", ICLR 2022
    (code kosnil/signed_supermasks): dense baselines and signed supermasks, means over many
    runs (50 per configuration in the reference code).
    Zhou, Lan, Liu, Yosinski, "Deconstructing Lottery Tickets: Zeros, Signs, and the
    Supermask", NeurIPS 2019: learned Bernoulli supermasks, as reported by secondary sources
    (METHODS.md could not confirm them in the paper); the conv numbers are with dynamic
    weight rescaling.
"""

from __future__ import annotations

import math

import pandas as pd

_KOSTER = "Koster et al. 2022"
_ZHOU = "Zhou et al. 2019 (secondary source)"
_ZHOU_RESCALED = "Zhou et al. 2019, dynamic weight rescaling (secondary source)"
_DATASET = {"fcn": "mnist", "conv2": "cifar10", "conv4": "cifar10", "conv6": "cifar10", "conv8": "cifar10"}

# architecture: (dense baseline acc %, signed supermask acc %, signed supermask remaining %)
_KOSTER_TABLE = {
    "fcn": (97.42, 97.48, 3.77),
    "conv2": (68.79, 68.37, 0.60),
    "conv4": (74.50, 77.40, 2.91),
    "conv6": (75.91, 79.17, 2.36),
    "conv8": (72.24, 80.91, 1.17),
}
# architecture: (Bernoulli supermask acc %, source); remaining weights not reported
_ZHOU_BERNOULLI = {"fcn": (95.3, _ZHOU), "conv2": (66.0, _ZHOU_RESCALED),
                   "conv4": (72.5, _ZHOU_RESCALED), "conv6": (76.5, _ZHOU_RESCALED)}


def published_results() -> pd.DataFrame:
    """The published numbers this project compares against.

    Returns:
        One row per (architecture, dataset, method), columns ``architecture`` (fcn, conv2 …),
        ``dataset`` (mnist | cifar10), ``method`` (dense | signed_supermask | bernoulli, spelled
        as the ``method`` tag of the grid runs), ``test_accuracy`` (fraction in [0, 1]),
        ``remaining_weights`` (fraction of the masked weights kept; 1.0 for dense baselines,
        which keep every weight by definition; NaN where the source gives none) and ``source``
        (short citation; "secondary source" where METHODS.md could not confirm the number in
        the paper). Koster et al. 2022 for dense and signed_supermask on fcn/conv2/4/6/8,
        Zhou et al. 2019 for bernoulli on fcn/conv2/4/6.
    """
    rows = []
    for architecture, (dense, signed, remaining) in _KOSTER_TABLE.items():
        dataset = _DATASET[architecture]
        rows.append((architecture, dataset, "dense", dense / 100, 1.0, f"{_KOSTER} (dense baseline)"))
        rows.append((architecture, dataset, "signed_supermask", signed / 100, remaining / 100, _KOSTER))
    for architecture, (accuracy, source) in _ZHOU_BERNOULLI.items():
        rows.append((architecture, _DATASET[architecture], "bernoulli", accuracy / 100, math.nan, source))
    return pd.DataFrame(
        rows, columns=["architecture", "dataset", "method", "test_accuracy", "remaining_weights", "source"]
    )
