"""Fixtures for the dataset tests (the format writers live in ``formats.py``)."""

from .formats import file_server  # noqa: F401  (fixture)
