"""Run assembly (no Kedro): the methods table, parameters → typed configurations, and building
and running what one run needs.

- :mod:`.methods`: the one table of methods (:data:`METHODS`, :func:`register_method`).
- :mod:`.config`: a method's parameter block over ``defaults`` → :class:`RunConfig` (:func:`run_config`).
- :mod:`.assembly`: initial tensors, the masked network, tensors on the device, train,
  evaluate, sampled evaluation, lottery rounds.
- :mod:`.grid`: the points of an experiment grid (:func:`plan_grid`).
"""

from supermask_pipeline.experiment.config import ParameterError, RunConfig, merge, run_config
from supermask_pipeline.experiment.methods import METHODS, Method, get_method, grid_method, register_method

__all__ = [
    "METHODS",
    "Method",
    "ParameterError",
    "RunConfig",
    "get_method",
    "grid_method",
    "merge",
    "register_method",
    "run_config",
]
