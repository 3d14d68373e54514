"""The one table of methods (OpenLTH style): the pipeline registry, the grid, the validation
hook and the reporting all read it (no Kedro).

A method is a row here, a parameter block ``<name>: {init, method, data, training[, presets]}``
(merged over the shared ``defaults`` block, :mod:`~supermask_pipeline.experiment.config`) and,
for a new mask rule, one :class:`~supermask_pipeline.masks.MaskStrategy` class in
:data:`~supermask_pipeline.masks.MASK_STRATEGIES`. Every method is the Kedro namespace
``<name>`` over the one template of :mod:`supermask_pipeline.pipelines.method`, whose
``initialise`` and ``train`` nodes follow the row's ``kind``.

Grid methods are the names of this table plus ``lottery.<configuration>`` (one lottery
configuration of Zhou et al. 2019, e.g. ``lottery.large_final.none.mask``), which runs the
``lottery`` row with that configuration alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from supermask_pipeline.registry import lookup
from supermask_pipeline.training.iterative_pruning import LotteryConfiguration

#: How a method's template starts and trains: ``training`` (seeded initial weights and mask
#: scores → one engine run), ``fine_tune`` (the found mask of ``source`` → the kept weights
#: train under it), ``lottery`` (seeded initial weights → iterative pruning rounds).
KINDS = ("training", "fine_tune", "lottery")
#: Grid method names ``lottery.<configuration>`` select one lottery configuration.
LOTTERY_PREFIX = "lottery."


@dataclass(frozen=True)
class Method:
    """One row of :data:`METHODS`.

    Attributes:
        name: the parameter block, Kedro namespace and pipeline, MLflow metric prefix and
            ``method`` tag (``dense``, ``signed_supermask`` …).
        kind: one of :data:`KINDS`.
        description: one line for ``kedro registry list`` readers, the docs and the UI.
        source: ``fine_tune`` only: the method whose trained weights and masks are fine-tuned.
        default: part of the default pipeline (``kedro run`` without ``--pipeline``).
        reference: the paper (and code) the recipe follows.

    Raises:
        ValueError: an unknown kind, a fine-tune row without a source or another row with one.
    """

    name: str
    kind: str = "training"
    description: str = ""
    source: str | None = None
    default: bool = False
    reference: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Method {self.name!r}: unknown kind {self.kind!r}; known kinds: {', '.join(KINDS)}.")
        if (self.kind == "fine_tune") != (self.source is not None):
            raise ValueError(f"Method {self.name!r}: a fine_tune method names its source method, no other kind does.")
        if not self.name.isidentifier():
            raise ValueError(f"Method name {self.name!r} must be a Python identifier (it names a namespace).")


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (replacing a row of the same name) and return it."""
    METHODS[method.name] = method
    return method


for _row in (
    Method("dense", description="dense baseline, every weight trained", default=True,
           reference="Koster et al. 2022 (baselines)"),
    Method("signed_supermask", description="signed supermask in {-1, 0, +1} over frozen signed-constant weights",
           default=True, reference="Koster, Grothe & Rettinger, ICLR 2022"),
    Method("bernoulli", description="Bernoulli-sampled supermask, straight-through on σ(M)",
           reference="Zhou, Lan, Liu & Yosinski, NeurIPS 2019, Section 5"),
    Method("threshold", description="deterministic σ(M) > 0.5 supermask", reference="M. Shlis, Super-Masks"),
    Method("edge_popup", description="top-k fraction of |scores| per layer (edge-popup)",
           reference="Ramanujan et al., CVPR 2020"),
    Method("aslp", description="hard Gumbel-softmax supermask, early stopping on sampled masks",
           reference="Dupont et al. 2022, arXiv 2202.12986"),
    Method("fine_tune", kind="fine_tune", source="threshold",
           description="the kept weights of the threshold supermask trained under its fixed mask",
           reference="M. Shlis, Super-Masks (Adam, lr 1e-5)"),
    Method("lottery", kind="lottery", description="lottery tickets: iterative pruning with mask-1/mask-0 actions",
           reference="Frankle & Carbin, ICLR 2019; Zhou et al., NeurIPS 2019"),
):
    register_method(_row)


def get_method(name: str) -> Method:
    """The row of ``name``.

    Raises:
        ValueError: an unknown method (the message lists the known ones).
    """
    return lookup(METHODS, name, "method")


def grid_method(name: str) -> tuple[Method, dict[str, Any]]:
    """The row a grid method name runs and the overrides of its parameter block.

    ``lottery.<configuration>`` → the ``lottery`` row and
    ``{"pruning": {"configurations": [<that configuration>]}}``; any other name → its row, ``{}``.

    Raises:
        ValueError: an unknown method or lottery configuration (the message lists the choices).
    """
    if name.startswith(LOTTERY_PREFIX):
        configuration = LotteryConfiguration.from_name(name.removeprefix(LOTTERY_PREFIX))
        return get_method("lottery"), {"pruning": {"configurations": [configuration.as_params()]}}
    if name not in METHODS:
        raise ValueError(
            f"Unknown method {name!r}. Known methods: {', '.join(sorted(METHODS))}, or "
            "lottery.<criterion>[_same_sign].<mask-1 action>.<mask-0 action> (e.g. lottery.large_final.none.mask)."
        )
    return METHODS[name], {}
