"""Kedro glue: one folder per pipeline, one function per node, no file I/O."""
