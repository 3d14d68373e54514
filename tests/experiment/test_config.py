"""Parameters → typed configurations: merging over ``defaults``, per-architecture presets, the
committed conf of every method, and errors that name the parameter."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from supermask_pipeline.experiment import METHODS, Method, ParameterError, RunConfig, merge, run_config
from supermask_pipeline.experiment.config import BLOCK_KEYS, DataConfig, InitConfig, PruningConfig
from supermask_pipeline.masks import (
    ASLPStrategy,
    BernoulliStrategy,
    DenseStrategy,
    EdgePopupStrategy,
    FixedMaskStrategy,
    SignedSupermaskStrategy,
    ThresholdStrategy,
)
from supermask_pipeline.models import ARCHITECTURES
from supermask_pipeline.models.architectures import resolve_dataset
from supermask_pipeline.seeds import RunSeeds
from supermask_pipeline.training import TrainingConfig
from supermask_pipeline.training.iterative_pruning import LotteryConfiguration

REPO = Path(__file__).resolve().parents[2]
FCN = {"architecture": "fcn"}
PRESETS = {"fcn": {"learning_rate": 0.05, "epochs": 100}, "conv2": {"learning_rate": 0.04, "epochs": 100}}
STRATEGY_CLASSES = {
    "dense": DenseStrategy, "signed_supermask": SignedSupermaskStrategy, "bernoulli": BernoulliStrategy,
    "threshold": ThresholdStrategy, "edge_popup": EdgePopupStrategy, "aslp": ASLPStrategy,
    "fine_tune": FixedMaskStrategy, "lottery": FixedMaskStrategy,
}


def load_parameters() -> dict:
    """conf/base's parameters as Kedro loads them (``${globals:architecture}`` resolved; conf/local ignored)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Kedro's own register_new_resolver deprecation notices
        loader = OmegaConfigLoader(
            conf_source=str(REPO / "conf"), base_env="base", default_run_env="base",
            custom_resolvers={"dataset_for": resolve_dataset}, merge_strategy={"parameters": "soft"},
        )
        return dict(loader["parameters"])


@pytest.fixture(scope="module")
def params() -> dict:
    return load_parameters()


def tiny_block(**training) -> dict:
    """A block with every training value set (nothing from presets)."""
    return {"method": {"name": "dense"}, "training": {"epochs": 1, "batch_size": 8, "learning_rate": 0.1, **training}}


# --- merge -------------------------------------------------------------------------------------


def test_merge_is_deep_key_by_key_and_replaces_everything_else():
    base = {"training": {"epochs": 5, "optimizer": "sgd"}, "method": {"name": "dense"}, "list": [1, 2], "x": 1}
    override = {"training": {"epochs": 7, "momentum": 0.5}, "list": [3], "x": {"now": "a mapping"}, "new": None}
    merged = merge(base, override)
    assert merged == {
        "training": {"epochs": 7, "optimizer": "sgd", "momentum": 0.5},
        "method": {"name": "dense"},
        "list": [3],
        "x": {"now": "a mapping"},
        "new": None,
    }
    # A mapping replaced by a scalar, and a null value that overrides a set one.
    assert merge({"a": {"b": 1}}, {"a": 3}) == {"a": 3}
    assert merge({"a": {"b": 1}}, {"a": {"b": None}}) == {"a": {"b": None}}


def test_merge_returns_new_dicts_and_leaves_its_inputs_alone():
    base = {"training": {"epochs": 5}, "configurations": [{"criterion": "large_final"}]}
    override = {"training": {"batch_size": 8}, "extra": {"k": [1]}}
    merged = merge(base, override)
    merged["training"]["epochs"] = 99
    merged["configurations"][0]["criterion"] = "random"
    merged["extra"]["k"].append(2)
    assert base == {"training": {"epochs": 5}, "configurations": [{"criterion": "large_final"}]}
    assert override == {"training": {"batch_size": 8}, "extra": {"k": [1]}}
    assert merge({}, {}) == {}


# --- the committed conf -----------------------------------------------------------------------


def test_the_committed_conf_has_a_block_for_every_method_and_resolves_the_architecture(params):
    assert set(METHODS) <= set(params)
    assert params["model"]["architecture"] in ARCHITECTURES  # ${globals:architecture}
    assert set(params["defaults"]) <= set(BLOCK_KEYS)
    for name in METHODS:
        assert set(params[name]) <= set(BLOCK_KEYS), name


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_committed_recipe_parses_for_every_architecture(params, name, architecture):
    run = run_config(name, params[name], params["defaults"], {"architecture": architecture}, params["dataset"],
                     params["seed"], params["evaluation_samples"])
    assert isinstance(run, RunConfig)
    assert run.name == name and run.method is METHODS[name]
    assert run.model.architecture == architecture
    assert run.model.dataset == resolve_dataset(architecture, params["dataset"])
    assert isinstance(run.strategy.build(), STRATEGY_CLASSES[name])
    assert isinstance(run.training, TrainingConfig) and run.training.seed == params["seed"]
    assert (run.pruning is not None) == (name == "lottery")
    # No training value is left null: the presets filled them.
    assert all(value is not None for value in dataclasses.asdict(run.training).values())


def test_committed_presets_fill_the_null_training_values(params):
    dense = {arch: run_config("dense", params["dense"], params["defaults"], {"architecture": arch}, "auto", 0)
             for arch in ("fcn", "conv2")}
    assert (dense["fcn"].training.learning_rate, dense["fcn"].training.weight_decay) == (0.01, 5.0e-4)
    assert (dense["conv2"].training.learning_rate, dense["conv2"].training.weight_decay) == (0.008, 7.0e-4)
    assert dense["conv2"].training.epochs == 50 and dense["conv2"].training.batch_size == 128
    signed = run_config("signed_supermask", params["signed_supermask"], params["defaults"], FCN, "auto", 0)
    assert (signed.training.learning_rate, signed.training.epochs) == (0.05, 100)
    # Set in the method block: wins over defaults; not set: the defaults' value.
    assert signed.training.nesterov is True and signed.training.weight_decay_mode == "decoupled"
    assert signed.training.optimizer == params["defaults"]["training"]["optimizer"] == "sgd"
    assert signed.strategy.options == {"threshold": 0.01, "threshold_factor": 0.4}
    assert signed.model.activation == "elu"  # from defaults.method
    lottery = run_config("lottery", params["lottery"], params["defaults"], {"architecture": "conv4"}, "auto", 0)
    assert (lottery.training.epochs, lottery.training.batch_size, lottery.training.learning_rate) == (33, 60, 3.0e-4)
    assert lottery.training.optimizer == "adam" and lottery.model.activation == "relu"
    assert [c.name for c in lottery.pruning.configurations] == [
        "large_final.none.mask", "large_final.random_reinit.mask", "large_final.signed_constant.mask"]
    assert lottery.pruning.rounds == 20 and lottery.pruning.rates is None


def test_the_committed_bernoulli_recipe_is_zhou_et_al(params):
    run = run_config("bernoulli", params["bernoulli"], params["defaults"], FCN, "auto", 1)
    assert run.model == dataclasses.replace(run.model, architecture="fcn", activation="relu", dataset="mnist")
    assert (run.strategy.weight_transform, run.strategy.rescale) == ("signed_constant", True)
    assert run.init == InitConfig("xavier_normal", None, "constant", 0.0)
    assert run.data == DataConfig("scale_01", "none")
    assert run.strategy.build().stochastic


# --- presets (per-architecture recipes) -------------------------------------------------------


def test_null_values_come_from_the_architecture_preset():
    block = {"method": {"name": "dense"}, "training": {"learning_rate": None, "epochs": None, "batch_size": 8},
             "presets": PRESETS}
    run = run_config("dense", block, None, {"architecture": "conv2"}, "auto", 3)
    assert (run.training.learning_rate, run.training.epochs, run.training.seed) == (0.04, 100, 3)
    run = run_config("dense", block, None, FCN, "auto", 0)
    assert (run.training.learning_rate, run.training.epochs) == (0.05, 100)


def test_a_value_set_in_training_wins_over_the_preset():
    block = {"method": {"name": "dense"}, "training": {"learning_rate": 0.1, "epochs": None, "batch_size": 8},
             "presets": PRESETS}
    for architecture in ("fcn", "conv2"):
        run = run_config("dense", block, None, {"architecture": architecture}, "auto", 0)
        assert (run.training.learning_rate, run.training.epochs) == (0.1, 100)


def test_a_null_default_is_filled_from_the_method_preset_and_a_method_value_wins_over_defaults():
    defaults = {"training": {"epochs": None, "batch_size": None, "learning_rate": None, "momentum": 0.5}}
    block = {"method": {"name": "dense"}, "training": {"batch_size": 16},
             "presets": {"fcn": {"epochs": 3, "learning_rate": 0.2, "batch_size": 999}}}
    run = run_config("dense", block, defaults, FCN, "auto", 0)
    assert (run.training.epochs, run.training.learning_rate) == (3, 0.2)
    assert run.training.batch_size == 16  # set in the block: the preset is not used
    assert run.training.momentum == 0.5  # from defaults, key by key


def test_a_missing_preset_or_preset_key_is_named():
    block = {"method": {"name": "dense"}, "training": {"learning_rate": None, "batch_size": 8}, "presets": PRESETS}
    with pytest.raises(ParameterError, match=r"dense\.presets has no entry 'conv6' \(known: \['conv2', 'fcn'\]\)"):
        run_config("dense", block, None, {"architecture": "conv6"}, "auto", 0)
    block = {"method": {"name": "dense"}, "training": {"batch_size": None}, "presets": PRESETS}
    with pytest.raises(ParameterError, match=r"dense\.training\.batch_size is null and dense\.presets\.fcn has no batch_size"):
        run_config("dense", block, None, FCN, "auto", 0)
    with pytest.raises(ParameterError, match=r"dense\.presets has no entry 'fcn' \(known: \[\]\)"):
        run_config("dense", {"method": {"name": "dense"}, "training": {"epochs": None}}, None, FCN, "auto", 0)


# --- the parts of a RunConfig -----------------------------------------------------------------


def test_a_run_config_is_frozen_and_carries_the_seed_streams():
    run = run_config("dense", tiny_block(), None, FCN, "auto", 7, evaluation_samples=3)
    assert run.seed == 7 and run.training.seed == 7 and run.evaluation_samples == 3
    assert run.seeds == RunSeeds(7)
    assert run.seeds.weights != run_config("dense", tiny_block(), None, FCN, "auto", 8).seeds.weights
    assert run.init == InitConfig()  # nothing given: the dataclass defaults
    assert run.data == DataConfig()
    assert run.model.spec is ARCHITECTURES["fcn"]
    for part in (run, run.model, run.init, run.strategy, run.data, run.training):
        with pytest.raises(dataclasses.FrozenInstanceError):
            part.seed = 1


def test_the_run_identity_names_the_network_the_method_and_the_data():
    block = {"method": {"name": "edge_popup", "keep_fraction": 0.3, "activation": "relu",
                        "weight_transform": "signed_kaiming_constant"},
             "data": {"normalisation": "scale_01"}, "training": tiny_block()["training"]}
    run = run_config("edge_popup", block, None, {"architecture": "conv2"}, "auto", 0)
    assert run.identity() == {
        "architecture": "conv2",
        "activation": "relu",
        "method": {"name": "edge_popup", "keep_fraction": 0.3, "weight_transform": "signed_kaiming_constant",
                   "rescale": False},
        "data": {"dataset": "cifar10", "normalisation": "scale_01", "augmentation": "none"},
    }
    strategy = run.strategy.build()
    assert isinstance(strategy, EdgePopupStrategy) and strategy is not run.strategy.build()  # a fresh one each time


def test_fine_tune_and_lottery_default_to_the_fixed_mask_strategy():
    run = run_config("fine_tune", {"training": tiny_block()["training"]}, None, FCN, "auto", 0)
    assert run.strategy.strategy == "fixed_mask" and run.method.source == "threshold"
    block = {"training": tiny_block()["training"], "pruning": {"rounds": 2, "configurations": [{}]}}
    lottery = run_config("lottery", block, None, FCN, "auto", 0)
    assert lottery.strategy.strategy == "fixed_mask"
    assert lottery.pruning == PruningConfig(2, None, (LotteryConfiguration(),))


def test_a_registered_method_parses_with_its_own_block():
    from supermask_pipeline.experiment.methods import METHODS as table, register_method

    saved = dict(table)
    try:
        register_method(Method("bernoulli_short", description="bernoulli, 1 epoch"))
        block = {"method": {"name": "bernoulli"}, "training": tiny_block()["training"]}
        run = run_config("bernoulli_short", block, None, FCN, "auto", 0)
        assert run.name == "bernoulli_short" and isinstance(run.strategy.build(), BernoulliStrategy)
    finally:
        table.clear()
        table.update(saved)


# --- errors name the parameter ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "block", "message"),
    [
        ("signed_supermask", {"method": {"name": "signed_supermask"}, "training": {"learning_rate": -1.0}},
         r"signed_supermask\.training\.learning_rate must be a positive number, got -1\.0"),
        ("dense", tiny_block(batch_size=2.5), r"dense\.training\.batch_size must be a positive integer"),
        ("dense", tiny_block(optimizer="adagrad"), r"dense\.training\.optimizer must be one of .*'adagrad'"),
        ("dense", tiny_block(lr_decay_rate=1.5), r"dense\.training\.lr_decay_rate must lie in \(0, 1\]"),
        ("dense", tiny_block(foo=1), r"Unknown training parameter\(s\) \['foo'\]"),
        ("dense", {**tiny_block(), "trainig": {}}, r"unknown key\(s\) \['trainig'\] in its block"),
        ("dense", {**tiny_block(), "training": "fast"}, r"dense\.training must be a mapping, got 'fast'"),
        ("dense", {**tiny_block(), "init": {"weight_inti": "x"}}, r"unknown dense\.init key\(s\) \['weight_inti'\]"),
        ("dense", {**tiny_block(), "init": {"weight_init": "he"}}, r"dense\.init\.weight_init: Unknown initialiser 'he'"),
        ("dense", {**tiny_block(), "init": {"mask_score_init": "he"}}, r"dense\.init\.mask_score_init: Unknown"),
        ("dense", {**tiny_block(), "method": {"name": "bogus"}}, r"dense\.method: Unknown method 'bogus'"),
        ("dense", {**tiny_block(), "method": {}}, r"dense\.method\.name must name a mask strategy, got None"),
        ("dense", {**tiny_block(), "method": {"name": "dense", "activation": "tanh"}},
         r"dense\.method\.activation .*'tanh'.*\['elu', 'relu'\]"),
        ("dense", {**tiny_block(), "method": {"name": "dense", "weight_transform": "flip"}},
         r"dense\.method\.weight_transform .*'flip'"),
        ("dense", {**tiny_block(), "method": {"name": "dense", "rescale": "yes"}},
         r"dense\.method\.rescale must be true or false, got 'yes'"),
        ("dense", {**tiny_block(), "method": {"name": "dense", "threshold": 0.1}}, r"dense\.method: Bad options"),
        ("edge_popup", {**tiny_block(), "method": {"name": "edge_popup", "keep_fraction": 1.5}},
         r"edge_popup\.method: edge_popup\.keep_fraction must be a number in \(0, 1\]"),
        ("dense", {**tiny_block(), "data": {"normalisation": "zscore"}}, r"dense\.data\.normalisation .*'zscore'"),
        ("dense", {**tiny_block(), "data": {"augmentation": "flip"}}, r"dense\.data\.augmentation: Unknown augmentation"),
        ("dense", {**tiny_block(), "data": {"augment": "none"}}, r"unknown dense\.data key\(s\) \['augment'\]"),
        ("dense", {**tiny_block(), "pruning": {"rounds": 1}}, r"dense\.pruning is for the lottery method only"),
        ("fine_tune", {**tiny_block(), "method": {"name": "threshold"}},
         r"fine_tune\.method\.name must be fixed_mask \(or left out\) for a fine_tune method, got 'threshold'"),
        ("lottery", {**tiny_block(), "method": {"name": "dense"}}, r"lottery\.method\.name must be fixed_mask"),
        ("lottery", {**tiny_block(), "method": {}}, r"lottery\.pruning\.rounds must be an integer ≥ 0, got None"),
        ("lottery", {**tiny_block(), "method": {}, "pruning": {"rounds": True, "configurations": [{}]}},
         r"lottery\.pruning\.rounds must be an integer ≥ 0, got True"),
        ("lottery", {**tiny_block(), "method": {}, "pruning": {"rounds": 1, "configurations": []}},
         r"lottery\.pruning\.configurations must be a non-empty list"),
        ("lottery", {**tiny_block(), "method": {}, "pruning": {"rounds": 1, "configurations": [{}, {}]}},
         r"lottery\.pruning\.configurations lists \['large_final\.none\.mask'\] more than once"),
        ("lottery", {**tiny_block(), "method": {}, "pruning": {"rounds": 1, "configurations": [{"criterion": "big"}]}},
         r"lottery\.pruning\.configurations: Unknown criterion 'big'"),
        ("lottery", {**tiny_block(), "method": {}, "pruning": {"rounds": 1, "configurations": [{}], "rate": 0.2}},
         r"unknown lottery\.pruning key\(s\) \['rate'\]"),
        ("lottery", {**tiny_block(), "method": {}, "pruning": {"rounds": 1, "configurations": [{}], "rates": 0.2}},
         r"lottery\.pruning\.rates must be null or a mapping"),
        ("lottery", {**tiny_block(), "method": {}, "pruning": {"rounds": 1, "configurations": [{}], "rates": {"fc": 1.5}}},
         r"lottery\.pruning\.rates: Prune rate 'fc'"),
        ("lottery", {**tiny_block(), "method": {}, "pruning": {"rounds": 1, "configurations": [{}], "rates": {"dense": 0.2}}},
         r"lottery\.pruning\.rates: Unknown prune-rate key 'dense'"),
        ("dense", {**tiny_block(), "init": {"weight_init_scale": -1.0}},
         r"dense\.init\.weight_init_scale must be null .* or a positive number .*got -1\.0"),
        ("dense", {**tiny_block(), "init": {"weight_init": "signed_constant", "weight_init_scale": 0}},
         r"dense\.init\.weight_init_scale must be null"),
        ("dense", {**tiny_block(), "init": {"mask_score_init_scale": "big"}},
         r"dense\.init\.mask_score_init_scale must be null .*got 'big'"),
        ("dense", {**tiny_block(), "init": {"mask_score_init": "constant", "mask_score_init_scale": float("nan")}},
         r"dense\.init\.mask_score_init_scale must be null .*got nan"),
    ],
)
def test_a_bad_block_is_refused_with_the_parameter_named(name, block, message):
    with pytest.raises(ParameterError, match=message) as caught:
        run_config(name, block, None, FCN, "auto", 0)
    assert str(caught.value).startswith(f"Parameters of method {name!r}: ")
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "supermask"}, r"Unknown method 'supermask'\. Known methods: aslp, bernoulli, dense"),
        ({"block": None}, r"no parameter block 'dense'; add one .*conf/base/parameters_dense\.yml"),
        ({"model": {"architecture": "conv9"}}, r"Unknown architecture 'conv9'\. Known architectures: conv2, conv4"),
        ({"model": {}}, r"Unknown architecture None"),
        ({"model": {"architecture": "conv6"}, "dataset": "mnist"},
         r"dataset 'mnist' has images of 28×28×1, but architecture 'conv6' has 3 2×2 max-pools"),
        ({"dataset": "svhn"}, r"Unknown dataset 'svhn'\. Known datasets: cifar10, cifar100, kmnist, mnist"),
        ({"seed": -1}, r"seed must be an integer ≥ 0, got -1"),
        ({"seed": True}, r"seed must be an integer ≥ 0, got True"),
        ({"seed": 1.0}, r"seed must be an integer ≥ 0, got 1\.0"),
        ({"evaluation_samples": 0}, r"evaluation_samples must be an integer ≥ 1, got 0"),
        ({"evaluation_samples": False}, r"evaluation_samples must be an integer ≥ 1, got False"),
    ],
)
def test_bad_run_arguments_are_refused(kwargs, message):
    arguments = {"name": "dense", "block": tiny_block(), "defaults": None, "model": FCN, "dataset": "auto", "seed": 0,
                 **kwargs}
    with pytest.raises(ParameterError, match=message):
        run_config(**arguments)


def test_good_scales_and_rates_pass():
    init = {"weight_init": "signed_constant", "weight_init_scale": 3, "mask_score_init": "constant",
            "mask_score_init_scale": -2.0}  # constant: the scale is the value itself, any finite number
    assert run_config("dense", {**tiny_block(), "init": init}, None, FCN, "auto", 0).init == InitConfig(**init)
    block = {**tiny_block(), "method": {}, "pruning": {"rounds": 1, "configurations": [{}],
                                                      "rates": {"fc": 0.5, "output": 0.0, "conv": 1}}}
    for architecture in ("fcn", "conv6"):
        run = run_config("lottery", block, None, {"architecture": architecture}, "auto", 0)
        assert run.pruning.rates == {"fc": 0.5, "output": 0.0, "conv": 1}


def test_a_bad_value_in_defaults_is_named_under_the_method_that_reads_it():
    defaults = {"training": {"momentum": -0.1}}
    with pytest.raises(ParameterError, match=r"threshold\.training\.momentum must be a number ≥ 0"):
        run_config("threshold", {**tiny_block(), "method": {"name": "threshold"}}, defaults, FCN, "auto", 0)
