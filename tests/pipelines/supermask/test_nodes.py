"""The supermask nodes' own logic: recipe selection, the committed recipes, learned-scale recovery."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from supermask_pipeline.masks import ASLPStrategy, get_mask_strategy
from supermask_pipeline.models import MaskedNetwork, get_architecture, initialise_tensors
from supermask_pipeline.pipelines.supermask.nodes import learned_scales, select_recipe
from supermask_pipeline.pipelines.training.nodes import NETWORK_OPTIONS, training_config

REPO = Path(__file__).resolve().parents[3]
PARAMETERS = yaml.safe_load((REPO / "conf/base/parameters_supermask.yml").read_text())["supermask"]
RECIPE = {"init": {}, "method": {"name": "bernoulli"}, "data": {}, "training": {}}


def test_an_unknown_strategy_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown supermask strategy 'topk'\. Known strategies: aslp, bernoulli, "
                                         r"edge_popup, threshold\. Choose one with --params=supermask.strategy="):
        select_recipe("topk", PARAMETERS["recipes"])


@pytest.mark.parametrize(
    ("recipes", "catalog", "message"),
    [
        ({"bernoulli": {**RECIPE, "method": {"name": "aslp"}}}, None, r"method.name is 'aslp'; it must be 'bernoulli'"),
        ({"bernoulli": {"init": {}, "method": {}}}, None, r"lacks \['data', 'training'\]"),
        ({"bernoulli": RECIPE}, "edge_popup", r"the catalog's paths are those of 'edge_popup'"),
        ({}, None, "supermask.recipes must map"),
    ],
)
def test_inconsistent_recipes_are_refused(recipes, catalog, message):
    with pytest.raises(ValueError, match=message):
        select_recipe("bernoulli", recipes, catalog)


def test_a_recipe_gets_its_name_and_empty_presets():
    recipe = select_recipe("bernoulli", {"bernoulli": {**RECIPE, "method": {"rescale": True}}}, "bernoulli")
    assert recipe["method"] == {"rescale": True, "name": "bernoulli"}
    assert recipe["presets"] == {}


@pytest.mark.parametrize("strategy", ["bernoulli", "threshold", "edge_popup", "aslp"])
def test_every_committed_recipe_is_valid(strategy):
    recipe = select_recipe(strategy, PARAMETERS["recipes"])
    spec = get_architecture("conv2")
    initialise_tensors(spec, recipe["init"]["weight_init"], 0, recipe["init"]["weight_init_scale"])
    initialise_tensors(spec, recipe["init"]["mask_score_init"], 1, recipe["init"]["mask_score_init_scale"])
    options = {k: v for k, v in recipe["method"].items() if k not in ("name", "activation", *NETWORK_OPTIONS)}
    assert get_mask_strategy(strategy, **options).binary
    for arch in ("fcn", "conv2", "conv4", "conv6", "conv8"):
        training_config(recipe["training"], recipe["presets"], arch)
    training_config(PARAMETERS["fine_tune"]["training"], {}, "fcn")


def test_learned_scales_are_recovered_from_the_pruned_weights():
    spec = get_architecture("fcn")
    weights = initialise_tensors(spec, "kaiming_normal", 0)
    scores = initialise_tensors(spec, "xavier_uniform", 1)
    scores["fc3"] = -scores["fc3"].abs()  # a layer with nothing kept keeps s = 1
    strategy = ASLPStrategy(learn_scale=True)
    options = {"weight_transform": "signed_kaiming_constant", "rescale": True}
    trained = MaskedNetwork(spec, strategy, weights, scores, "relu", **options)
    with torch.no_grad():
        for layer, value in zip(trained.masked_layers(), (0.5, 1.7, 3.0)):
            layer.scale.fill_(value)
    rebuilt = MaskedNetwork(spec, strategy, weights, scores, "relu", **options)
    scales = learned_scales(rebuilt, trained.effective_weights(), trained.masks())
    assert scales == pytest.approx({"fc1": 0.5, "fc2": 1.7, "fc3": 1.0}, rel=1e-6)
    for name, weight in rebuilt.effective_weights().items():
        torch.testing.assert_close(weight, trained.effective_weights()[name], rtol=1e-6, atol=0)
