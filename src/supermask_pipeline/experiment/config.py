"""Parameters → typed configurations of one run, parsed and validated in one place (no Kedro).

A method's parameter block ``<method>: {init, method, data, training[, presets][, pruning]}``
is merged over the shared ``defaults`` block (a value set in the method's block wins; a nested
mapping merges key by key), then each part becomes a frozen dataclass (OpenLTH style: one
description per field, errors that name the parameter and the fix). A ``null`` training
value is taken from ``presets.<architecture>`` of the method's block (per-architecture
recipes, METHODS.md).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from supermask_pipeline.experiment.methods import Method, get_method
from supermask_pipeline.images.augmentation import get_augmentation
from supermask_pipeline.images.normalisation import NORMALISATIONS
from supermask_pipeline.masks import MaskStrategy, get_mask_strategy, layer_prune_rate
from supermask_pipeline.models import ArchitectureSpec, get_architecture, get_initializer, layer_specs
from supermask_pipeline.models.architectures import resolve_dataset
from supermask_pipeline.models.network import ACTIVATIONS, WEIGHT_TRANSFORMS
from supermask_pipeline.seeds import RunSeeds
from supermask_pipeline.training import TrainingConfig
from supermask_pipeline.training.iterative_pruning import LotteryConfiguration

#: Keys of a method's parameter block; ``pruning`` only for the lottery kind.
BLOCK_KEYS = ("init", "method", "data", "training", "presets", "pruning")
#: ``method`` keys that configure the network, not the mask strategy: Zhou et al.'s signed
#: constant and dynamic weight rescaling, Ramanujan et al.'s signed Kaiming constant, the activation.
NETWORK_OPTIONS = ("activation", "weight_transform", "rescale")


class ParameterError(ValueError):
    """A method's parameters are wrong; the message names the block, the key and the fix."""


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` deep-merged over ``base`` (mappings key by key, anything else replaced); new dicts."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@dataclass(frozen=True)
class ModelConfig:
    """The network of a run.

    Attributes:
        architecture: fcn | conv2 | conv4 | conv6 | conv8 (METHODS.md, Architectures).
        activation: elu (Koster et al. 2022) or relu (Zhou et al. 2019, Ramanujan et al. 2020),
            after every hidden layer.
        dataset: the resolved dataset of the splits (mnist | cifar10 …).
    """

    architecture: str
    activation: str
    dataset: str

    @property
    def spec(self) -> ArchitectureSpec:
        """The architecture's layer table, fitted to the dataset's images and classes."""
        return get_architecture(self.architecture, self.dataset)


@dataclass(frozen=True)
class InitConfig:
    """Seeded initialisers of the weights and the mask scores (names of ``models.INITIALIZERS``;
    ``*_scale``: the initialiser's constant, e.g. c = sqrt(scale / fan_in) of ``signed_constant``)."""

    weight_init: str = field(default="elu_uniform", metadata={"help": "initialiser of the weights"})
    weight_init_scale: float | None = field(default=None, metadata={"help": "its constant (null: its default)"})
    mask_score_init: str = field(default="xavier_uniform", metadata={"help": "initialiser of the mask scores"})
    mask_score_init_scale: float | None = field(default=None, metadata={"help": "its constant (null: its default)"})


@dataclass(frozen=True)
class MethodConfig:
    """The mask strategy and the network options of a run.

    Attributes:
        strategy: a name of ``masks.MASK_STRATEGIES`` (dense, signed_supermask, fixed_mask …).
        options: the strategy's own options (threshold, keep_fraction, temperature …).
        weight_transform: none | signed_constant | signed_kaiming_constant (applied once to W).
        rescale: Zhou et al.'s dynamic weight rescaling W ⊙ m · numel / Σm.
    """

    strategy: str
    options: Mapping[str, Any]
    weight_transform: str = "none"
    rescale: bool = False

    def build(self) -> MaskStrategy:
        """A fresh strategy object (ValueError for bad options, from the strategy)."""
        return get_mask_strategy(self.strategy, **dict(self.options))

    def identity(self) -> dict[str, Any]:
        """What the checkpoint fingerprint records of the method."""
        return {"name": self.strategy, **dict(self.options), "weight_transform": self.weight_transform,
                "rescale": self.rescale}


@dataclass(frozen=True)
class DataConfig:
    """How the splits become tensors: ``normalisation`` (images.NORMALISATIONS) and
    ``augmentation`` (none | crop_flip, batched on the device)."""

    normalisation: str = "per_image_standardisation"
    augmentation: str = "none"


@dataclass(frozen=True)
class PruningConfig:
    """Iterative pruning (lottery kind): ``rounds`` after the dense round 0, per-layer base
    ``rates`` (fc, output, conv; None: fc 20 %, output 10 %, conv 10 %, conv6 15 %) and the
    ``configurations`` (criterion, mask-1 and mask-0 action, same-sign filter)."""

    rounds: int
    rates: Mapping[str, float] | None
    configurations: tuple[LotteryConfiguration, ...]


@dataclass(frozen=True)
class RunConfig:
    """Everything one run of one method needs, validated.

    Attributes:
        method: the method's row (:class:`~supermask_pipeline.experiment.methods.Method`).
        model, init, strategy, data, training: the parts of the block.
        seed: the run seed; ``seeds`` its named streams (:class:`~supermask_pipeline.seeds.RunSeeds`).
        evaluation_samples: masks drawn for the sampled test accuracy of stochastic strategies.
        pruning: the lottery kind's rounds, else None.
    """

    method: Method
    model: ModelConfig
    init: InitConfig
    strategy: MethodConfig
    data: DataConfig
    training: TrainingConfig
    seed: int
    evaluation_samples: int = 10
    pruning: PruningConfig | None = None

    @property
    def seeds(self) -> RunSeeds:
        """The named random streams of this run's seed."""
        return RunSeeds(self.seed)

    @property
    def name(self) -> str:
        """The method's name (namespace, parameter block, MLflow prefix)."""
        return self.method.name

    def identity(self) -> dict[str, Any]:
        """What decides the result besides the tensors and the training fields the engine adds:
        for the checkpoint fingerprint."""
        return {
            "architecture": self.model.architecture,
            "activation": self.model.activation,
            "method": self.strategy.identity(),
            "data": {"dataset": self.model.dataset, **asdict(self.data)},
        }


def _fail(name: str, message: str) -> ParameterError:
    return ParameterError(f"Parameters of method {name!r}: {message}")


def _section(name: str, block: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = block.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(name, f"{name}.{key} must be a mapping, got {value!r}.")
    return dict(value)


def _dataclass(name: str, key: str, cls: type, values: dict[str, Any]):
    """``cls(**values)``, refusing keys that are not its fields (the message lists the known ones)."""
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise _fail(name, f"unknown {name}.{key} key(s) {unknown}; known: {sorted(known)}.")
    return cls(**values)


def _init(name: str, values: dict[str, Any]) -> InitConfig:
    config = _dataclass(name, "init", InitConfig, values)
    for key in ("weight_init", "mask_score_init"):
        try:
            get_initializer(getattr(config, key))
        except ValueError as err:
            raise _fail(name, f"{name}.init.{key}: {err}") from None
        scale = getattr(config, f"{key}_scale")
        if scale is None:
            continue
        finite = isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale)
        if not finite or (getattr(config, key) != "constant" and scale <= 0):  # constant: the value itself
            raise _fail(name, f"{name}.init.{key}_scale must be null (the initialiser's default) or a positive "
                              f"number (any finite number for constant), got {scale!r}.")
    return config


def _method(name: str, row: Method, values: dict[str, Any]) -> tuple[MethodConfig, str]:
    values = dict(values)
    if row.kind in ("fine_tune", "lottery"):
        values.setdefault("name", "fixed_mask")
        if values["name"] != "fixed_mask":
            raise _fail(name, f"{name}.method.name must be fixed_mask (or left out) for a {row.kind} method, "
                              f"got {values['name']!r}.")
    strategy = values.pop("name", None)
    if not isinstance(strategy, str):
        raise _fail(name, f"{name}.method.name must name a mask strategy, got {strategy!r}.")
    activation = values.pop("activation", "elu")
    if activation not in ACTIVATIONS:
        raise _fail(name, f"{name}.method.activation is {activation!r}; choose one of {sorted(ACTIVATIONS)}.")
    transform = values.pop("weight_transform", "none")
    if transform not in WEIGHT_TRANSFORMS:
        raise _fail(name, f"{name}.method.weight_transform is {transform!r}; choose one of {sorted(WEIGHT_TRANSFORMS)}.")
    rescale = values.pop("rescale", False)
    if not isinstance(rescale, bool):
        raise _fail(name, f"{name}.method.rescale must be true or false, got {rescale!r}.")
    config = MethodConfig(strategy, values, transform, rescale)
    try:
        config.build()
    except ValueError as err:
        raise _fail(name, f"{name}.method: {err}") from None
    return config, activation


def _data(name: str, values: dict[str, Any]) -> DataConfig:
    config = _dataclass(name, "data", DataConfig, values)
    if config.normalisation not in NORMALISATIONS:
        raise _fail(name, f"{name}.data.normalisation is {config.normalisation!r}; choose one of {list(NORMALISATIONS)}.")
    try:
        get_augmentation(config.augmentation)
    except ValueError as err:
        raise _fail(name, f"{name}.data.augmentation: {err}") from None
    return config


#: Training fields that must be real numbers: TrainingConfig compares them with ``<``, which
#: raises TypeError (not a message naming the parameter) for a string such as ``"fast"``.
NUMERIC_TRAINING_FIELDS = ("learning_rate", "momentum", "weight_decay", "lr_decay_rate", "lr_decay_epochs")


def _training(name: str, values: dict[str, Any], presets: dict[str, Any], architecture: str, seed: int) -> TrainingConfig:
    missing = [key for key, value in values.items() if value is None]
    if missing:
        preset = presets.get(architecture)
        if not isinstance(preset, Mapping):
            raise _fail(name, f"{name}.training {missing} are null (taken from the architecture preset) but "
                              f"{name}.presets has no entry {architecture!r} (known: {sorted(presets)}); add one or set the values.")
        for key in missing:
            if preset.get(key) is None:
                raise _fail(name, f"{name}.training.{key} is null and {name}.presets.{architecture} has no {key}; set one of them.")
            values[key] = preset[key]
    for key in NUMERIC_TRAINING_FIELDS:
        value = values.get(key)
        if key in values and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise _fail(name, f"{name}.training.{key} must be a finite number, got {value!r}.")
    try:
        return TrainingConfig.from_params({**values, "seed": seed})
    except (ValueError, TypeError) as err:
        raise _fail(name, str(err).replace("training.", f"{name}.training.")) from None


def _pruning(name: str, values: dict[str, Any], spec: ArchitectureSpec) -> PruningConfig:
    rounds = values.get("rounds")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise _fail(name, f"{name}.pruning.rounds must be an integer ≥ 0, got {rounds!r}.")
    configurations = values.get("configurations")
    if not isinstance(configurations, list) or not configurations:
        raise _fail(name, f"{name}.pruning.configurations must be a non-empty list like "
                          f"[{{criterion: large_final, mask_1_action: none, mask_0_action: mask}}], got {configurations!r}.")
    try:
        parsed = tuple(LotteryConfiguration.from_params(item) for item in configurations)
    except ValueError as err:
        raise _fail(name, f"{name}.pruning.configurations: {err}") from None
    names = [c.name for c in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _fail(name, f"{name}.pruning.configurations lists {duplicates} more than once.")
    unknown = sorted(set(values) - {"rounds", "rates", "configurations"})
    if unknown:
        raise _fail(name, f"unknown {name}.pruning key(s) {unknown}; known: ['configurations', 'rates', 'rounds'].")
    rates = values.get("rates")
    if rates is not None and not isinstance(rates, Mapping):
        raise _fail(name, f"{name}.pruning.rates must be null or a mapping like {{fc: 0.2, output: 0.1, conv: 0.1}}, "
                          f"got {rates!r}.")
    try:  # checks every key and rate of ``rates`` now, not after round 0 has trained
        layer_prune_rate(layer_specs(spec)[0], spec.name, rates)
    except ValueError as err:
        raise _fail(name, f"{name}.pruning.rates: {err}") from None
    return PruningConfig(rounds, rates, parsed)


def run_config(
    name: str,
    block: Mapping[str, Any] | None,
    defaults: Mapping[str, Any] | None,
    model: Mapping[str, Any],
    dataset: str,
    seed: int,
    evaluation_samples: int = 10,
) -> RunConfig:
    """The validated configuration of one run of method ``name``.

    Args:
        name: a method of :data:`~supermask_pipeline.experiment.methods.METHODS`.
        block: its parameter block (``params:<name>``, or a grid point's ``recipe``).
        defaults: the shared ``defaults`` block (``params:defaults``), merged under ``block``.
        model: ``{architecture}`` (``params:model``, or a grid point's).
        dataset: ``auto`` (fcn → mnist, conv* → cifar10) or a dataset name.
        seed: the run seed (integer ≥ 0).
        evaluation_samples: masks drawn for the sampled test accuracy (integer ≥ 1).

    Raises:
        ParameterError: an unknown method or block key, a missing block, a bad value; the
            message names the parameter (``signed_supermask.training.learning_rate …``).
    """
    try:
        row = get_method(name)
    except ValueError as err:
        raise ParameterError(str(err)) from None
    if not isinstance(block, Mapping):
        raise _fail(name, f"no parameter block {name!r}; add one ({name}: {{init, method, data, training}}) "
                          f"to conf/base/parameters_{name}.yml or conf/local.")
    merged = merge(defaults or {}, block)
    unknown = sorted(set(merged) - set(BLOCK_KEYS))
    if unknown:
        raise _fail(name, f"unknown key(s) {unknown} in its block; known: {list(BLOCK_KEYS)}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise _fail(name, f"seed must be an integer ≥ 0, got {seed!r}.")
    if isinstance(evaluation_samples, bool) or not isinstance(evaluation_samples, int) or evaluation_samples < 1:
        raise _fail(name, f"evaluation_samples must be an integer ≥ 1, got {evaluation_samples!r}.")
    architecture = (model or {}).get("architecture")
    try:
        spec = get_architecture(architecture)
        dataset_name = resolve_dataset(spec.name, dataset)
        get_architecture(spec.name, dataset_name)  # the dataset's images fit the architecture
    except ValueError as err:
        raise _fail(name, str(err)) from None
    strategy, activation = _method(name, row, _section(name, merged, "method"))
    presets = _section(name, merged, "presets")
    pruning = _section(name, merged, "pruning")
    if row.kind == "lottery":
        parsed_pruning = _pruning(name, pruning, spec)
    elif pruning:
        raise _fail(name, f"{name}.pruning is for the lottery method only.")
    else:
        parsed_pruning = None
    return RunConfig(
        method=row,
        model=ModelConfig(spec.name, activation, dataset_name),
        init=_init(name, _section(name, merged, "init")),
        strategy=strategy,
        data=_data(name, _section(name, merged, "data")),
        training=_training(name, _section(name, merged, "training"), presets, spec.name, seed),
        seed=seed,
        evaluation_samples=evaluation_samples,
        pruning=parsed_pruning,
    )


def validate_run(parameters: Mapping[str, Any], methods: Iterable[str]) -> dict[str, RunConfig]:
    """Every method's :class:`RunConfig` from the session's merged parameters, parsed in full
    (block over ``defaults``, architecture, dataset name, seed, training section included) before
    anything runs; the first bad parameter raises.

    Args:
        parameters: the session's parameters (``catalog.load("parameters")``).
        methods: names of :data:`~supermask_pipeline.experiment.methods.METHODS` the run trains.

    Returns:
        method name → its configuration, in sorted order.

    Raises:
        ParameterError: the first bad parameter (the message names it and the fix).
    """
    return {
        name: run_config(name, parameters.get(name), parameters.get("defaults"), parameters.get("model") or {},
                         parameters.get("dataset", "auto"), parameters.get("seed", 0),
                         parameters.get("evaluation_samples", 10))
        for name in sorted(set(methods))
    }


def parameter_digest(parameters: Mapping[str, Any], name: str) -> str:
    """sha256 of every parameter a run of method ``name`` reads (its block, ``defaults``, ``model``,
    ``dataset``, ``seed``, ``evaluation_samples``): equal digests, equal parameters logged to MLflow.
    Used to decide whether an interrupted MLflow run may be continued by a rerun."""
    keys = (name, "defaults", "model", "dataset", "seed", "evaluation_samples")
    text = json.dumps({key: parameters.get(key) for key in keys}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
