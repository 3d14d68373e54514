"""The one table of methods: its rows, their validation, registration and grid method names."""

from __future__ import annotations

import pytest

from supermask_pipeline.experiment import METHODS, Method, get_method, grid_method, register_method
from supermask_pipeline.experiment.methods import KINDS, LOTTERY_PREFIX
from supermask_pipeline.masks import MASK_STRATEGIES

EXPECTED = {
    "dense": "training",
    "signed_supermask": "training",
    "bernoulli": "training",
    "threshold": "training",
    "edge_popup": "training",
    "aslp": "training",
    "fine_tune": "fine_tune",
    "lottery": "lottery",
}


@pytest.fixture
def restore_methods():
    """Registration mutates the one global table: put it back after the test."""
    saved = dict(METHODS)
    yield
    METHODS.clear()
    METHODS.update(saved)


def test_the_table_holds_every_method_with_its_kind():
    assert {name: row.kind for name, row in METHODS.items()} == EXPECTED
    assert all(name == row.name for name, row in METHODS.items())
    assert {name for name, row in METHODS.items() if row.default} == {"dense", "signed_supermask"}
    assert all(row.description and row.reference for row in METHODS.values())


def test_training_rows_name_a_mask_strategy_and_fine_tune_names_its_source():
    for row in METHODS.values():
        if row.kind == "training":
            assert row.name in MASK_STRATEGIES and row.source is None
    assert METHODS["fine_tune"].source == "threshold"
    assert METHODS[METHODS["fine_tune"].source].kind == "training"
    assert METHODS["lottery"].source is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "x", "kind": "boosting"}, r"unknown kind 'boosting'; known kinds: training, fine_tune, lottery"),
        ({"name": "x", "kind": "fine_tune"}, "a fine_tune method names its source"),
        ({"name": "x", "source": "threshold"}, "a fine_tune method names its source"),
        ({"name": "x", "kind": "lottery", "source": "dense"}, "a fine_tune method names its source"),
        ({"name": "two words"}, "must be a Python identifier"),
        ({"name": "lottery.large"}, "must be a Python identifier"),
    ],
)
def test_a_bad_row_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Method(**kwargs)


def test_a_row_is_frozen_and_defaults_to_the_training_kind():
    row = Method("mine")
    assert (row.kind, row.source, row.default) == ("training", None, False)
    assert KINDS == ("training", "fine_tune", "lottery")
    with pytest.raises(AttributeError):
        row.kind = "lottery"  # type: ignore[misc]


def test_register_method_adds_and_replaces_a_row(restore_methods):
    row = Method("bernoulli_long", description="bernoulli, longer")
    assert register_method(row) is row
    assert get_method("bernoulli_long") is row
    assert grid_method("bernoulli_long") == (row, {})
    replacement = Method("bernoulli_long", description="again")
    register_method(replacement)
    assert METHODS["bernoulli_long"] is replacement
    assert list(METHODS).count("bernoulli_long") == 1


def test_the_table_is_restored_after_registration(restore_methods):
    assert "bernoulli_long" not in METHODS


def test_get_method_returns_the_row_or_lists_the_known_methods():
    assert get_method("dense") is METHODS["dense"]
    known = ", ".join(sorted(EXPECTED))
    with pytest.raises(ValueError, match=rf"Unknown method 'supermask'\. Known methods: {known}\."):
        get_method("supermask")


def test_a_plain_grid_method_is_its_row_without_overrides():
    for name in EXPECTED:
        assert grid_method(name) == (METHODS[name], {})


@pytest.mark.parametrize(
    ("name", "configuration"),
    [
        ("lottery.large_final.none.mask",
         {"criterion": "large_final", "mask_1_action": "none", "mask_0_action": "mask", "same_sign": False}),
        ("lottery.large_final_same_sign.random_reinit.freeze_init",
         {"criterion": "large_final", "mask_1_action": "random_reinit", "mask_0_action": "freeze_init",
          "same_sign": True}),
        ("lottery.movement.signed_constant.mask",
         {"criterion": "movement", "mask_1_action": "signed_constant", "mask_0_action": "mask", "same_sign": False}),
    ],
)
def test_a_lottery_grid_method_runs_the_lottery_row_with_one_configuration(name, configuration):
    row, overrides = grid_method(name)
    assert row is METHODS["lottery"]
    assert name.startswith(LOTTERY_PREFIX)
    assert overrides == {"pruning": {"configurations": [configuration]}}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("supermask", r"Unknown method 'supermask'\. Known methods: aslp, bernoulli, dense, .*lottery\.<criterion>"),
        ("lottery", None),  # the plain row is a method
        ("lottery.large_final", r"<criterion>\[_same_sign\]\.<mask-1 action>\.<mask-0 action>.*got 'large_final'"),
        ("lottery.big_final.none.mask", r"Unknown criterion 'big_final'\. Known criterions: .*large_final"),
        ("lottery.large_final.bogus.mask", r"Unknown mask-1 action 'bogus'\. Known mask-1 actions: none"),
        ("lottery.large_final.none.bogus", r"Unknown mask-0 action 'bogus'\. Known mask-0 actions: .*mask"),
    ],
)
def test_an_unknown_grid_method_lists_the_choices(name, message):
    if message is None:
        assert grid_method(name) == (METHODS["lottery"], {})
        return
    with pytest.raises(ValueError, match=message):
        grid_method(name)
