"""Template: initialise → train → evaluate → report, instantiated once per method namespace."""

from kedro.pipeline import Node, Pipeline

from supermask_pipeline.pipelines.training.nodes import (
    evaluate_network,
    initialise_network,
    plot_results,
    train_network,
)

SHARED_INPUTS = {"train_split", "val_split", "test_split"}
SHARED_PARAMETERS = {"params:model", "params:seed", "params:dataset"}


def create_pipeline(**kwargs) -> Pipeline:
    """The un-namespaced template; see :func:`create_method_pipeline`."""
    return Pipeline(
        [
            Node(
                func=initialise_network,
                inputs=["params:model", "params:init", "params:seed"],
                outputs=["initial_weights", "initial_mask_scores"],
                name="initialise",
                tags=["init_weights"],
            ),
            Node(
                func=train_network,
                inputs=[
                    "initial_weights",
                    "initial_mask_scores",
                    "train_split",
                    "val_split",
                    "training_checkpoints",
                    "params:model",
                    "params:dataset",
                    "params:method",
                    "params:data",
                    "params:training",
                    "params:presets",
                    "params:seed",
                ],
                outputs=["trained_weights", "trained_mask_scores", "masks", "training_history"],
                name="train",
                tags=["training"],
            ),
            Node(
                func=evaluate_network,
                inputs=[
                    "trained_weights",
                    "masks",
                    "test_split",
                    "train_split",
                    "params:model",
                    "params:data",
                    "params:training",
                    "params:presets",
                ],
                outputs=["test_metrics", "evaluation_summary", "remaining_weights_per_layer"],
                name="evaluate",
                tags=["evaluation"],
            ),
            Node(
                func=plot_results,
                inputs=["training_history", "remaining_weights_per_layer"],
                outputs=["training_curves_plot", "remaining_weights_plot"],
                name="plot",
                tags=["reporting"],
            ),
        ]
    )


def create_method_pipeline(namespace: str) -> Pipeline:
    """The template under ``namespace``: its datasets become ``<namespace>.<name>`` and its
    parameters ``params:<namespace>.<key>``, except the shared splits, ``model`` and ``seed``."""
    return Pipeline(
        create_pipeline(),
        namespace=namespace,
        inputs=SHARED_INPUTS,
        parameters=SHARED_PARAMETERS,
    )
