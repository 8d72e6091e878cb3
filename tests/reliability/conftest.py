"""Fixtures for the reliability suite (the local HTTP file server of the dataset tests)."""

from ..data.formats import file_server  # noqa: F401  (fixture)
