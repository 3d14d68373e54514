"""The points of an experiment grid: expansion, names, parameters, the errors of a bad grid
block and the fingerprints that decide which finished points are skipped."""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from supermask_pipeline.experiment import METHODS, merge, run_config
from supermask_pipeline.experiment.grid import (
    GridPlan,
    GridPoint,
    plan_grid,
    point_fingerprint,
    forget_parameters,
    remember_parameters,
    session_parameters,
    session_plan,
)
from supermask_pipeline.models.architectures import resolve_dataset

REPO = Path(__file__).resolve().parents[2]
LOTTERY_A = "lottery.large_final.none.mask"
LOTTERY_B = "lottery.large_final_same_sign.random_reinit.freeze_init"


@pytest.fixture(scope="module")
def committed() -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loader = OmegaConfigLoader(
            conf_source=str(REPO / "conf"), base_env="base", default_run_env="base",
            custom_resolvers={"dataset_for": resolve_dataset}, merge_strategy={"parameters": "soft"},
        )
        return dict(loader["parameters"])


@pytest.fixture
def params(committed) -> dict:
    """A private copy of the committed parameters (tests change blocks in place)."""
    return copy.deepcopy(committed)


def with_grid(params: dict, **grid) -> dict:
    return {**params, "grid": {"id": "tiny", **grid}}


def plan(params: dict, architectures=("fcn",), methods=("dense",), seeds=(0,), **extra) -> GridPlan:
    return plan_grid(with_grid(params, architectures=list(architectures), methods=list(methods), seeds=list(seeds),
                               **extra))


def fingerprints(grid: GridPlan) -> dict[str, str]:
    return {point.name: point.fingerprint for point in grid.points}


# --- expansion --------------------------------------------------------------------------------


def test_the_committed_grid_expands(committed):
    grid = plan_grid(committed)
    spec = committed["grid"]
    assert grid.grid_id == spec["id"] and grid.force is bool(spec["force"])
    assert len(grid.points) == len(spec["architectures"]) * len(spec["methods"]) * len(spec["seeds"])


def test_points_are_architectures_by_methods_by_seeds_in_that_order(params):
    grid = plan(params, ["conv2", "conv4"], ["dense", LOTTERY_A], [3, 0])
    assert [p.name for p in grid.points] == [
        f"{a}.{m}.seed_{s}" for a in ("conv2", "conv4") for m in ("dense", LOTTERY_A) for s in (3, 0)]
    assert {p.dataset for p in grid.points} == {"cifar10"}
    assert (grid.grid_id, grid.force) == ("tiny", False)
    assert plan(params, force=True).force is True
    assert plan_grid({**params, "grid": {"architectures": ["fcn"], "methods": ["dense"], "seeds": [0]}}).grid_id == "grid"


def test_a_point_names_its_namespace_parameters_and_folder(params):
    point = plan(params, ["fcn"], [LOTTERY_A], [2]).points[0]
    assert isinstance(point, GridPoint)
    assert point.name == f"fcn.{LOTTERY_A}.seed_2"
    assert point.namespace == f"grid.fcn.{LOTTERY_A}.seed_2"
    assert point.parameters == f"grid.points.fcn.{LOTTERY_A}.seed_2"
    assert point.folder == f"grid/fcn/{LOTTERY_A}/seed_2"
    assert point.row is METHODS["lottery"] and point.dataset == "mnist" and point.seed == 2
    own = point.own_parameters()
    assert own == {
        "name": point.name, "architecture": "fcn", "method": LOTTERY_A, "seed": 2, "dataset": "mnist",
        "model": {"architecture": "fcn"}, "recipe": dict(point.recipe), "fingerprint": point.fingerprint,
    }
    assert re.fullmatch(r"[0-9a-f]{16}", point.fingerprint)


def test_the_plan_parameters_nest_architecture_method_and_seed(params):
    grid = plan(params, ["fcn"], ["dense", "threshold"], [0, 1])
    block = grid.parameters()
    assert set(block) == {"fcn"} and set(block["fcn"]) == {"dense", "threshold"}
    assert set(block["fcn"]["dense"]) == {"seed_0", "seed_1"}
    for point in grid.points:
        assert block[point.architecture][point.method][f"seed_{point.seed}"] == point.own_parameters()


def test_a_point_recipe_is_its_method_block_and_parses(params):
    grid = plan(params, ["fcn"], ["dense", "bernoulli", "fine_tune", "threshold"], [0])
    for point in grid.points:
        assert dict(point.recipe) == params[point.method]
        run = run_config(point.row.name, point.recipe, params["defaults"], point.own_parameters()["model"],
                         params["dataset"], point.seed)
        assert run.name == point.method


def test_lottery_points_get_one_configuration_each(params):
    grid = plan(params, ["fcn"], [LOTTERY_A, LOTTERY_B], [0])
    a, b = grid.points
    assert a.recipe["pruning"]["configurations"] == [
        {"criterion": "large_final", "mask_1_action": "none", "mask_0_action": "mask", "same_sign": False}]
    assert b.recipe["pruning"]["configurations"] == [
        {"criterion": "large_final", "mask_1_action": "random_reinit", "mask_0_action": "freeze_init",
         "same_sign": True}]
    # The rest of the lottery block is kept, and the committed block itself is unchanged.
    assert a.recipe["pruning"]["rounds"] == params["lottery"]["pruning"]["rounds"]
    assert a.recipe["training"] == params["lottery"]["training"]
    assert len(params["lottery"]["pruning"]["configurations"]) == 3
    for point, name in ((a, "large_final.none.mask"), (b, "large_final_same_sign.random_reinit.freeze_init")):
        run = run_config("lottery", point.recipe, params["defaults"], {"architecture": "fcn"}, "auto", 0)
        assert [c.name for c in run.pruning.configurations] == [name]


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"architectures": [], "methods": ["dense"], "seeds": [0]}, r"grid\.architectures is empty"),
        ({"architectures": ["fcn"], "methods": [], "seeds": [0]}, r"grid\.methods is empty"),
        ({"architectures": ["fcn"], "methods": ["dense"], "seeds": []}, r"grid\.seeds is empty"),
        ({"architectures": "fcn", "methods": ["dense"], "seeds": [0]}, r"grid\.architectures must be a list, e\.g\. architectures: \[fcn\]"),
        ({"architectures": ["fcn"], "methods": "dense", "seeds": [0]}, r"grid\.methods must be a list"),
        ({"architectures": ["fcn"], "methods": ["dense"], "seeds": 0}, r"grid\.seeds must be a list, e\.g\. seeds: \[0\]"),
        ({"architectures": ["fcn", "fcn"], "methods": ["dense"], "seeds": [0]}, r"grid\.architectures lists a value twice"),
        ({"architectures": ["fcn"], "methods": ["dense", "dense"], "seeds": [0]}, r"grid\.methods lists a value twice"),
        ({"architectures": ["fcn"], "methods": ["dense"], "seeds": [1, 1]}, r"grid\.seeds lists a value twice"),
        ({"architectures": ["fcn"], "methods": ["dense", "supermask"], "seeds": [0]},
         r"Unknown method 'supermask'\. Known methods: aslp, bernoulli, dense, edge_popup, fine_tune, lottery, "
         r"signed_supermask, threshold, or lottery\.<criterion>"),
        ({"architectures": ["fcn"], "methods": ["lottery.large_final.bogus.mask"], "seeds": [0]},
         r"Unknown mask-1 action 'bogus'\. Known mask-1 actions: none"),
        ({"architectures": ["fcn"], "methods": ["lottery.large_final"], "seeds": [0]}, r"e\.g\. large_final\.none\.mask"),
        ({"architectures": ["fcn9"], "methods": ["dense"], "seeds": [0]}, r"Unknown architecture 'fcn9'\. Known architectures: conv2"),
        ({"architectures": ["fcn"], "methods": ["dense"], "seeds": [0, -1]}, r"grid\.seeds must be non-negative integers; got -1"),
        ({"architectures": ["fcn"], "methods": ["dense"], "seeds": [True]}, r"non-negative integers; got True"),
        ({"architectures": ["fcn"], "methods": ["dense"], "seeds": [1.5]}, r"non-negative integers; got 1\.5"),
        ({"architectures": ["fcn"], "methods": ["dense"], "seeds": ["0"]}, r"non-negative integers; got '0'"),
        ({"architectures": ["fcn", "conv2"], "methods": ["dense"], "seeds": [0]},
         r"different datasets \(\{'fcn': 'mnist', 'conv2': 'cifar10'\}\).*two grids"),
        ({"architectures": ["fcn"], "methods": ["fine_tune"], "seeds": [0]},
         r"grid\.methods lists 'fine_tune', which fine-tunes 'threshold''s masks; add 'threshold'"),
        ({"architectures": ["fcn"], "methods": ["dense"]}, r"need a grid block with id, architectures, methods and seeds"),
    ],
)
def test_a_bad_grid_is_refused(params, grid, message):
    with pytest.raises(ValueError, match=message):
        plan_grid({**params, "grid": grid})


def test_no_grid_block_and_a_method_without_a_block_are_refused(params):
    with pytest.raises(ValueError, match="need a grid block"):
        plan_grid({k: v for k, v in params.items() if k != "grid"})
    with pytest.raises(ValueError, match="need a grid block"):
        plan_grid({**params, "grid": ["fcn"]})
    del params["threshold"]
    with pytest.raises(ValueError, match=r"lists 'threshold', but the parameters have no block 'threshold'; add "
                                         r"conf/base/parameters_threshold\.yml"):
        plan(params, methods=["dense", "threshold"])
    del params["lottery"]
    with pytest.raises(ValueError, match=r"lists 'lottery\.large_final\.none\.mask', but the parameters have no block 'lottery'"):
        plan(params, methods=[LOTTERY_A])


def test_a_dataset_that_does_not_fit_is_refused(params):
    with pytest.raises(ValueError, match=r"dataset 'mnist' has images of 28×28×1, but architecture 'conv6'"):
        plan_grid({**with_grid(params, architectures=["conv6"], methods=["dense"], seeds=[0]), "dataset": "mnist"})
    grid = plan_grid({**with_grid(params, architectures=["conv2"], methods=["dense"], seeds=[0]), "dataset": "cifar10"})
    assert grid.points[0].dataset == "cifar10"


# --- fingerprints -----------------------------------------------------------------------------

METHODS_OF_GRID = ["dense", "threshold", "fine_tune", LOTTERY_A, LOTTERY_B]


def test_fingerprints_are_reproducible_and_differ_between_points(params):
    first = fingerprints(plan(params, ["fcn"], METHODS_OF_GRID, [0, 1]))
    again = fingerprints(plan(copy.deepcopy(params), ["fcn"], METHODS_OF_GRID, [0, 1]))
    assert first == again
    assert len(set(first.values())) == len(first) == 10
    # The grid's id, its force flag and other points leave a point's fingerprint as it is.
    other = fingerprints(plan(params, ["fcn"], ["dense"], [1], id="other", force=True))
    assert other["fcn.dense.seed_1"] == first["fcn.dense.seed_1"]


def _changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert set(before) == set(after)
    return {name for name in before if before[name] != after[name]}


def test_changing_one_method_block_changes_only_that_method_points(params):
    before = fingerprints(plan(params, ["fcn"], METHODS_OF_GRID, [0, 1]))
    changed = copy.deepcopy(params)
    changed["dense"]["training"]["learning_rate"] = 0.02
    after = fingerprints(plan(changed, ["fcn"], METHODS_OF_GRID, [0, 1]))
    assert _changed(before, after) == {"fcn.dense.seed_0", "fcn.dense.seed_1"}


def test_fine_tune_points_follow_their_source_block(params):
    before = fingerprints(plan(params, ["fcn"], METHODS_OF_GRID, [0]))
    changed = copy.deepcopy(params)
    changed["threshold"]["training"]["epochs"] = 3
    assert _changed(before, fingerprints(plan(changed, ["fcn"], METHODS_OF_GRID, [0]))) == {
        "fcn.threshold.seed_0", "fcn.fine_tune.seed_0"}
    changed = copy.deepcopy(params)
    changed["fine_tune"]["training"]["epochs"] = 3
    assert _changed(before, fingerprints(plan(changed, ["fcn"], METHODS_OF_GRID, [0]))) == {"fcn.fine_tune.seed_0"}


def test_lottery_points_follow_the_lottery_block_but_not_its_configuration_list(params):
    before = fingerprints(plan(params, ["fcn"], METHODS_OF_GRID, [0]))
    changed = copy.deepcopy(params)
    changed["lottery"]["pruning"]["configurations"] = [{"criterion": "random"}]
    assert _changed(before, fingerprints(plan(changed, ["fcn"], METHODS_OF_GRID, [0]))) == set()
    changed["lottery"]["pruning"]["rounds"] = 2
    assert _changed(before, fingerprints(plan(changed, ["fcn"], METHODS_OF_GRID, [0]))) == {
        f"fcn.{LOTTERY_A}.seed_0", f"fcn.{LOTTERY_B}.seed_0"}


def test_shared_blocks_change_every_fingerprint(params):
    before = fingerprints(plan(params, ["fcn"], METHODS_OF_GRID, [0]))
    for key, change in (("defaults", {"training": {"momentum": 0.5}}), ("data_processing", {"num_val": 6})):
        changed = copy.deepcopy(params)
        changed[key] = merge(changed[key], change)
        assert _changed(before, fingerprints(plan(changed, ["fcn"], METHODS_OF_GRID, [0]))) == set(before), key


def test_the_number_of_sampled_evaluation_masks_is_in_every_fingerprint(params):
    before = fingerprints(plan(params, ["fcn"], ["bernoulli", "dense"], [0]))
    changed = {**params, "evaluation_samples": params["evaluation_samples"] + 1}
    assert _changed(before, fingerprints(plan(changed, ["fcn"], ["bernoulli", "dense"], [0]))) == set(before)


def test_a_method_block_not_in_the_grid_changes_no_fingerprint(params):
    before = fingerprints(plan(params, ["fcn"], ["dense"], [0]))
    changed = copy.deepcopy(params)
    changed["signed_supermask"]["training"]["epochs"] = 1
    assert fingerprints(plan(changed, ["fcn"], ["dense"], [0])) == before


def test_point_fingerprint_hashes_point_recipe_and_shared_blocks():
    point = {"architecture": "fcn", "method": "dense", "seed": 0, "dataset": "mnist"}
    recipe = {"training": {"epochs": 1, "batch_size": 8}}
    shared = {"defaults": {}, "data_processing": {"num_val": 5}}
    value = point_fingerprint(point, recipe, shared)
    assert re.fullmatch(r"[0-9a-f]{16}", value)
    # Key order does not matter; every value does.
    assert point_fingerprint(dict(reversed(point.items())), {"training": {"batch_size": 8, "epochs": 1}}, shared) == value
    assert point_fingerprint({**point, "seed": 1}, recipe, shared) != value
    assert point_fingerprint(point, {"training": {"epochs": 2, "batch_size": 8}}, shared) != value
    assert point_fingerprint(point, recipe, {**shared, "data_processing": {"num_val": 6}}) != value


def test_session_parameters_hold_the_last_remembered_parameters():
    from supermask_pipeline.experiment import grid as module

    saved = dict(module._SESSION)
    try:
        remember_parameters({"seed": 1})
        remember_parameters({"seed": 2})
        assert session_parameters() == {"seed": 2}
        forget_parameters()
        assert session_parameters() is None
    finally:
        module._SESSION.clear()
        module._SESSION.update(saved)


def test_the_sessions_plan_is_handed_to_the_catalog_hook_once(params):
    from supermask_pipeline.experiment import grid as module

    saved = dict(module._SESSION)
    try:
        remember_parameters(params)
        plan = session_plan(params)
        assert plan == plan_grid(params)
        assert forget_parameters() is plan  # planned once: the hook takes the registry's plan
        assert forget_parameters() is None and session_parameters() is None
        session_plan(copy.deepcopy(params))  # parameters of no session: nothing is kept
        assert forget_parameters() is None
    finally:
        module._SESSION.clear()
        module._SESSION.update(saved)

