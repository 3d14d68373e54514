"""Kedro project settings.

kedro-mlflow registers its hooks through its entry point; tracking is configured in
``conf/base/mlflow.yml`` (sqlite store: MLflow 3 refuses the ``./mlruns`` fallback).
"""

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
