"""Project pipelines: each named pipeline a user runs is complete (data → … → MLflow)."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from supermask_pipeline.pipelines.data_processing.pipeline import create_pipeline as data_processing
from supermask_pipeline.pipelines.lottery.pipeline import create_pipeline as lottery
from supermask_pipeline.pipelines.mask_criteria.pipeline import create_pipeline as mask_criteria
from supermask_pipeline.pipelines.supermask.pipeline import create_fine_tune_pipeline as supermask_fine_tune
from supermask_pipeline.pipelines.supermask.pipeline import create_pipeline as supermask
from supermask_pipeline.pipelines.training.pipeline import create_method_pipeline

METHOD_NAMESPACES = ("dense", "signed_supermask")


def register_pipelines() -> dict[str, Pipeline]:
    """``data_processing``, ``init_weights``, one pipeline per method, ``mask_criteria`` (on the
    dense run), ``lottery`` (iterative pruning), ``supermask`` (learned supermask of
    ``supermask.strategy``), ``supermask_fine_tune`` (the same, then fine-tuning under its mask)
    and ``__default__`` (data, dense and signed supermask)."""
    data = data_processing()
    methods = {name: create_method_pipeline(name) for name in METHOD_NAMESPACES}
    pipelines: dict[str, Pipeline] = {"data_processing": data}
    lottery_pipeline = lottery()
    supermask_pipeline = supermask()
    pipelines["init_weights"] = sum(
        (p.only_nodes_with_tags("init_weights") for p in [*methods.values(), lottery_pipeline, supermask_pipeline]),
        Pipeline([]),
    )
    for name, method in methods.items():
        pipelines[name] = data + method
    pipelines["mask_criteria"] = data + methods["dense"] + mask_criteria("dense")
    pipelines["lottery"] = data + lottery_pipeline
    pipelines["supermask"] = data + supermask_pipeline
    pipelines["supermask_fine_tune"] = data + supermask_pipeline + supermask_fine_tune()
    pipelines["__default__"] = data + sum(methods.values(), Pipeline([]))
    return pipelines
