"""lottery: initial weights → rounds of train / prune / reset / retrain → table and plot."""

from kedro.pipeline import Node, Pipeline

from supermask_pipeline.pipelines.lottery.nodes import plot_lottery, train_lottery_tickets
from supermask_pipeline.pipelines.training.nodes import initialise_network


def create_template() -> Pipeline:
    """The un-namespaced template; :func:`create_pipeline` puts it under ``lottery``, the grid
    under ``grid.<architecture>.lottery.<configuration>.seed_<seed>``."""
    return Pipeline(
        [
            Node(
                func=initialise_network,
                inputs=["params:model", "params:init", "params:seed"],
                outputs=["initial_weights", "initial_mask_scores"],
                name="initialise",
                tags=["init_weights", "lottery"],
            ),
            Node(
                func=train_lottery_tickets,
                inputs=[
                    "initial_weights",
                    "train_split",
                    "val_split",
                    "test_split",
                    "training_checkpoints",
                    "params:model",
                    "params:dataset",
                    "params:activation",
                    "params:pruning",
                    "params:data",
                    "params:training",
                    "params:presets",
                    "params:seed",
                ],
                outputs=["round_weights", "round_masks", "rounds_table", "training_history"],
                name="train",
                tags=["training", "lottery"],
            ),
            Node(
                func=plot_lottery,
                inputs="rounds_table",
                outputs="accuracy_plot",
                name="plot",
                tags=["reporting", "lottery"],
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Initialise (seeded ``lottery.init``), run every configuration's rounds, tabulate and plot."""
    return Pipeline(
        create_template(),
        namespace="lottery",
        inputs={"train_split", "val_split", "test_split"},
        parameters={"params:model", "params:dataset", "params:seed"},
    )
