"""mask_criteria: dense initial + trained weights → supermask-at-initialisation table and plot."""

from kedro.pipeline import Node, Pipeline

from supermask_pipeline.pipelines.mask_criteria.nodes import evaluate_mask_criteria, plot_mask_criteria


def create_pipeline(source: str = "dense", **kwargs) -> Pipeline:
    """Evaluate every criterion's mask on the weights of the ``source`` method namespace."""
    template = Pipeline(
        [
            Node(
                func=evaluate_mask_criteria,
                inputs=[
                    "initial_weights", "trained_weights", "train_split", "val_split", "test_split",
                    "params:recipe", "params:defaults", "params:model", "params:dataset", "params:seed",
                    "params:mask_criteria",
                ],
                outputs="accuracy_table",
                name="evaluate",
                tags=["mask_criteria"],
            ),
            Node(func=plot_mask_criteria, inputs="accuracy_table", outputs="accuracy_plot", name="plot",
                 tags=["mask_criteria", "reporting"]),
        ]
    )
    return Pipeline(
        template,
        namespace="mask_criteria",
        inputs={"initial_weights": f"{source}.initial_weights", "trained_weights": f"{source}.trained_weights",
                **{name: name for name in ("train_split", "val_split", "test_split")}},
        parameters={"params:recipe": f"params:{source}",
                    **{name: name for name in ("params:defaults", "params:model", "params:dataset", "params:seed",
                                               "params:mask_criteria")}},
    )
