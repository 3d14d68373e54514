"""The one method template: start → train → evaluate → sampled evaluation → plots (→ MLflow).

Every method of :data:`~supermask_pipeline.experiment.methods.METHODS` is a namespace over
it; the row's ``kind`` picks the start and the training node:

- ``training``: ``initialise`` (seeded weights and mask scores) → ``train`` (one engine run);
- ``fine_tune``: ``initialise`` takes the source method's ``trained_weights`` and ``masks`` →
  ``train`` under that fixed mask;
- ``lottery``: ``initialise`` → ``train`` runs the pruning rounds (each round one engine run)
  and hands its ticket to the same ``evaluate`` and ``plot``; ``plot_rounds`` adds the
  accuracy-against-remaining plot.

Every kind ends with ``export`` (the found network as a compact file and ONNX, reloaded and
tested) and ``log_model`` (that file as the run's MLflow model ``model``).

Inside the template the parameters are ``params:recipe`` (the method's block),
``params:defaults``, ``params:model``, ``params:dataset``, ``params:seed`` and
``params:evaluation_samples``; :func:`create_pipeline` maps them to the method's own.
"""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from supermask_pipeline.experiment.methods import Method
from supermask_pipeline.pipelines.method import nodes

RUN = ["params:recipe", "params:defaults", "params:model", "params:dataset", "params:seed"]
SHARED_INPUTS = {"train_split", "val_split", "test_split"}
SHARED_PARAMETERS = {"params:defaults", "params:model", "params:dataset", "params:seed", "params:evaluation_samples"}
TRAINED = ["trained_weights", "trained_mask_scores", "masks", "training_history"]


def _bind(func, **kwargs):
    """``func`` with keyword-only arguments bound, keeping its name and docstring (Kedro, kedro-viz)."""
    return update_wrapper(partial(func, **kwargs), func)


def create_template(method: Method, tag: str | None = None) -> Pipeline:
    """The template for ``method``'s kind, un-namespaced; ``tag`` is the MLflow ``method`` tag
    (default: the method's name)."""
    tag = tag or method.name
    if method.kind == "fine_tune":
        start = Node(_bind(nodes.start_from_found_mask, method=method.name), ["found_weights", "found_masks", *RUN],
                     ["initial_weights", "initial_mask_scores"], name="initialise", tags=["init_weights"])
    else:
        start = Node(_bind(nodes.initialise, method=method.name), RUN, ["initial_weights", "initial_mask_scores"],
                     name="initialise", tags=["init_weights"])
    if method.kind == "lottery":
        train = Node(_bind(nodes.train_lottery, method=method.name, tag=tag),
                     ["initial_weights", "train_split", "val_split", "test_split", "training_checkpoints", *RUN],
                     ["round_weights", "round_masks", "rounds_table", *TRAINED], name="train", tags=["training"])
    else:
        train = Node(_bind(nodes.train, method=method.name, tag=tag),
                     ["initial_weights", "initial_mask_scores", "train_split", "val_split", "training_checkpoints", *RUN],
                     TRAINED, name="train", tags=["training"])
    steps = [
        start,
        train,
        Node(_bind(nodes.evaluate, method=method.name), ["trained_weights", "masks", "test_split", "train_split", *RUN],
             ["test_metrics", "evaluation_summary", "remaining_weights_per_layer"], name="evaluate", tags=["evaluation"]),
        Node(_bind(nodes.evaluate_sampled, method=method.name),
             ["initial_weights", "trained_mask_scores", "trained_weights", "masks", "test_split", "train_split", *RUN,
              "params:evaluation_samples"],
             ["sampled_test_metrics", "sampled_evaluation"], name="evaluate_sampled", tags=["evaluation"]),
        Node(nodes.plot, ["training_history", "remaining_weights_per_layer"],
             ["training_curves_plot", "remaining_weights_plot"], name="plot", tags=["reporting"]),
        Node(_bind(nodes.export, method=method.name), ["trained_weights", "masks", "train_split", "test_split", *RUN],
             ["compact_network", "onnx_network", "export_metrics", "export_summary"], name="export", tags=["export"]),
        Node(_bind(nodes.log_model, tag=tag), ["compact_network", "test_split"], "mlflow_model", name="log_model",
             tags=["export"]),
    ]
    if method.kind == "lottery":
        steps.append(Node(nodes.plot_lottery, "rounds_table", "accuracy_plot", name="plot_rounds", tags=["reporting"]))
    return Pipeline(steps)


def source_inputs(method: Method, source_namespace: str) -> dict[str, str]:
    """A fine-tuning method's inputs from its source's namespace (``{}`` for other kinds)."""
    if method.kind != "fine_tune":
        return {}
    return {"found_weights": f"{source_namespace}.trained_weights", "found_masks": f"{source_namespace}.masks"}


def create_pipeline(method: Method) -> Pipeline:
    """``method``'s namespace over the template, reading ``params:<method>`` as its recipe and
    the shared splits and parameters."""
    return Pipeline(
        create_template(method),
        namespace=method.name,
        inputs={**{name: name for name in SHARED_INPUTS}, **source_inputs(method, method.source or "")},
        parameters={**{name: name for name in SHARED_PARAMETERS}, "params:recipe": f"params:{method.name}"},
    )
