"""Shared fixtures. Each test worker uses one torch thread (two workers share the 2 cores)."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory, monkeypatch):
    """Point the dataset cache at a per-session temp folder so tests never touch ~/.cache."""
    root = tmp_path_factory.getbasetemp() / "sgdscope-data"
    monkeypatch.setenv("SGDSCOPE_DATA", str(root))
    yield


@pytest.fixture
def seeded():
    torch.manual_seed(0)
    return 0
