"""supermask: initialise → train the mask → prune and test → sampled masks → plots; and
supermask_fine_tune's extra nodes: train the kept weights under the fixed mask → test."""

from kedro.pipeline import Node, Pipeline

from supermask_pipeline.pipelines.supermask.nodes import (
    NAMESPACE,
    evaluate_fine_tuned,
    evaluate_sampled_masks,
    evaluate_supermask,
    fine_tune_supermask,
    initialise_supermask,
    train_supermask,
)
from supermask_pipeline.pipelines.training.nodes import plot_results

SHARED_INPUTS = {"train_split", "val_split", "test_split"}
SHARED_PARAMETERS = {"params:model", "params:dataset", "params:seed"}
RECIPE = ["params:strategy", "params:recipes", "catalog_strategy"]


def create_template() -> Pipeline:
    """The un-namespaced template (inputs ``params:strategy``, ``params:recipes``,
    ``catalog_strategy``, …); :func:`create_pipeline` puts it under ``supermask`` and the
    grid under ``grid.<architecture>.<strategy>.seed_<seed>``."""
    return Pipeline(
        [
            Node(
                func=initialise_supermask,
                inputs=["params:model", *RECIPE, "params:seed"],
                outputs=["initial_weights", "initial_mask_scores"],
                name="initialise",
                tags=["init_weights", "supermask"],
            ),
            Node(
                func=train_supermask,
                inputs=[
                    "initial_weights",
                    "initial_mask_scores",
                    "train_split",
                    "val_split",
                    "training_checkpoints",
                    "params:model",
                    "params:dataset",
                    *RECIPE,
                    "params:seed",
                ],
                outputs=["trained_weights", "trained_mask_scores", "masks", "training_history"],
                name="train",
                tags=["training", "supermask"],
            ),
            Node(
                func=evaluate_supermask,
                inputs=["trained_weights", "masks", "test_split", "train_split", "params:model", *RECIPE],
                outputs=["test_metrics", "evaluation_summary", "remaining_weights_per_layer"],
                name="evaluate",
                tags=["evaluation", "supermask"],
            ),
            Node(
                func=evaluate_sampled_masks,
                inputs=[
                    "initial_weights",
                    "trained_mask_scores",
                    "trained_weights",
                    "masks",
                    "evaluation_summary",
                    "test_split",
                    "train_split",
                    "params:model",
                    *RECIPE,
                    "params:evaluation_samples",
                    "params:seed",
                ],
                outputs=["sampled_test_metrics", "sampled_evaluation"],
                name="evaluate_sampled",
                tags=["evaluation", "supermask"],
            ),
            Node(
                func=plot_results,
                inputs=["training_history", "remaining_weights_per_layer"],
                outputs=["training_curves_plot", "remaining_weights_plot"],
                name="plot",
                tags=["reporting", "supermask"],
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    """The supermask of ``supermask.strategy`` with its recipe (``supermask.recipes.<strategy>``)."""
    return Pipeline(create_template(), namespace=NAMESPACE, inputs=SHARED_INPUTS, parameters=SHARED_PARAMETERS)


def create_fine_tune_pipeline(**kwargs) -> Pipeline:
    """Fine-tuning after :func:`create_pipeline` (same namespace): it consumes ``supermask.trained_weights``
    and ``supermask.masks`` and trains with ``supermask.fine_tune.training``."""
    template = Pipeline(
        [
            Node(
                func=fine_tune_supermask,
                inputs=[
                    "trained_weights",
                    "masks",
                    "train_split",
                    "val_split",
                    "fine_tune_checkpoints",
                    "params:model",
                    "params:dataset",
                    *RECIPE,
                    "params:fine_tune",
                    "params:seed",
                ],
                outputs=["fine_tuned_weights", "fine_tune_history"],
                name="fine_tune",
                tags=["training", "supermask", "fine_tune"],
            ),
            Node(
                func=evaluate_fine_tuned,
                inputs=[
                    "fine_tuned_weights",
                    "masks",
                    "evaluation_summary",
                    "test_split",
                    "train_split",
                    "params:model",
                    *RECIPE,
                    "params:fine_tune",
                ],
                outputs=["fine_tuned_test_metrics", "fine_tuned_evaluation_summary"],
                name="evaluate_fine_tuned",
                tags=["evaluation", "supermask", "fine_tune"],
            ),
        ]
    )
    return Pipeline(template, namespace=NAMESPACE, inputs=SHARED_INPUTS, parameters=SHARED_PARAMETERS)
