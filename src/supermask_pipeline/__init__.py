"""supermask_pipeline: lottery tickets, supermasks and signed supermasks as one Kedro project."""

__version__ = "0.1.0"
