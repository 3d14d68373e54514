"""Kedro project settings.

kedro-mlflow registers its hooks through its entry point; tracking is configured in
``conf/base/mlflow.yml`` (sqlite store: MLflow 3 refuses the ``./mlruns`` fallback).
"""

from supermask_pipeline.hooks import PROJECT_HOOKS
from supermask_pipeline.models.architectures import resolve_dataset

# The session's parameters for the registry, validation before the first node, the grid's
# per-point parameters, and each grid point in its own nested MLflow run (hooks.py).
HOOKS = PROJECT_HOOKS
# kedro-viz (the dev extra) registers hooks that write dataset statistics to .viz/ in every
# `kedro run`; `kedro viz run` does not need them.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-viz",)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # ${dataset_for:<architecture>,<dataset>} in catalog.yml: the dataset follows the
    # architecture (fcn → mnist, conv* → cifar10) unless `dataset` names one.
    "custom_resolvers": {"dataset_for": resolve_dataset},
    # Runtime parameters (--params) are merged into conf/base and into conf/local separately,
    # and Kedro's default "destructive" merge then lets conf/local replace whole top-level keys:
    # --params=supermask.strategy=threshold would leave `supermask` with only `strategy`, and
    # --params=model.architecture=conv6 would drop model.activation. A soft (deep) merge keeps
    # every key that neither conf/local nor the command line names.
    "merge_strategy": {"parameters": "soft"},
}
