"""supermask_pipeline: lottery tickets, supermasks and signed supermasks as one Kedro project.

Importing the package turns MLflow's usage telemetry off (``MLFLOW_DISABLE_TELEMETRY=true``
unless the environment sets it): the project sends nothing to any address but the tracking
server it is given. Kedro's telemetry is off through the project's ``.telemetry`` file
(``consent: false``), which Kedro reads before the package is imported.
"""

import os
import sys

__version__ = "0.1.0"

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
if "mlflow.telemetry.client" in sys.modules:  # imported before us (kedro-mlflow's CLI plugin): re-read the setting
    from mlflow.telemetry.client import set_telemetry_client

    set_telemetry_client()
