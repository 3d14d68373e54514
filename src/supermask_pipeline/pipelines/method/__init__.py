"""The one method template: every method is a namespace over it (see pipeline.py)."""
