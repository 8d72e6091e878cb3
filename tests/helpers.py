"""Tiny configs shared by the tests."""

from __future__ import annotations

from typing import Any


def tiny_config(**over: Any) -> dict[str, Any]:
    """A synthetic 8-class problem, a 16-wide MLP, SGD with S=32: ~8 steps per epoch."""
    cfg: dict[str, Any] = {
        "name": "tiny",
        "seed": 3,
        "device": "cpu",
        "data": {
            "name": "synthetic",
            "val_fraction": 0.1,
            "probe_size": 32,
            "options": {"num_samples": 284, "num_test": 64, "num_classes": 4, "input_shape": [12]},
        },
        "model": {"name": "mlp", "options": {"widths": [16], "activation": "tanh"}},
        "optim": {"name": "sgd", "lr": 0.1},
        "train": {"epochs": 2, "batch_size": 32, "progress": False},
    }
    for key, value in over.items():
        node = cfg
        parts = key.split("__")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return cfg
