"""MLflow models-from-code entry point: the compact network model (see :mod:`supermask_pipeline.export.pyfunc`)."""

import mlflow

from supermask_pipeline.export.pyfunc import CompactNetworkModel

mlflow.models.set_model(CompactNetworkModel())
