"""Kedro project settings.

kedro-mlflow registers its hooks through its entry point; tracking is configured in
``conf/base/mlflow.yml`` (sqlite store: MLflow 3 refuses the ``./mlruns`` fallback).

Datasets are configuration: ``conf/<env>/datasets.yml`` (config key ``datasets``, merged soft
over the environments, so conf/local adds entries) holds a project's own dataset entries
beside the published ones of the library (``images/published.py``). The config loader
registers them when it is created, before the pipeline registry, the catalog (resolver
``dataset_for``) and the validation hook look a dataset up by name; a bad entry stops the
session there with a message naming the field.
"""

from kedro.config import MissingConfigException, OmegaConfigLoader

from supermask_pipeline.hooks import PROJECT_HOOKS
from supermask_pipeline.images.specs import configure_datasets
from supermask_pipeline.models.architectures import resolve_dataset


class ProjectConfigLoader(OmegaConfigLoader):
    """Kedro's OmegaConfigLoader that also registers ``conf/<env>/datasets.yml`` by name.

    A separate config key rather than a parameters block: the catalog (raw folder, split paths)
    needs the dataset before any parameter is read, and resolvers cannot read parameters.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        try:
            entries = self["datasets"]
        except MissingConfigException:
            entries = {}
        configure_datasets(entries)


# The session's parameters for the registry, validation before the first node, the grid's
# per-point parameters, and each grid point in its own nested MLflow run (hooks.py).
HOOKS = PROJECT_HOOKS
# kedro-viz (the dev extra) registers hooks that write dataset statistics to .viz/ in every
# `kedro run`; `kedro viz run` does not need them.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-viz",)

CONFIG_LOADER_CLASS = ProjectConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Every dataset entry: conf/base/datasets.yml, conf/local/datasets.yml (README, "Your own dataset").
    "config_patterns": {"datasets": ["datasets*", "datasets*/**", "**/datasets*"]},
    # ${dataset_for:<architecture>,<dataset>} in catalog.yml: the dataset follows the
    # architecture (fcn → mnist, conv* → cifar10) unless `dataset` names one; an unknown name
    # lists the configured datasets.
    "custom_resolvers": {"dataset_for": resolve_dataset},
    # Runtime parameters (--params) are merged into conf/base and into conf/local separately,
    # and Kedro's default "destructive" merge then lets conf/local replace whole top-level keys:
    # --params=supermask.strategy=threshold would leave `supermask` with only `strategy`, and
    # --params=model.architecture=conv6 would drop model.activation. A soft (deep) merge keeps
    # every key that neither conf/local nor the command line names.
    "merge_strategy": {"parameters": "soft", "datasets": "soft"},
}
