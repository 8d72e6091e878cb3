"""The README's section after both papers runs as written and measures what it says."""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_beyond_example_runs() -> None:
    (block,) = [
        b
        for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
        if "GGNOperator(" in b
    ]
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    assert 0 < float(ns["lam_g"]) and math.isfinite(float(ns["lam_h"]))
    assert ns["threshold"] == ns["opt"].stability_threshold() and round(ns["threshold"]) == 38000
    m = ns["m"]
    assert m.scalars["stability_threshold"] == ns["threshold"]
    assert m.scalars["stability"] == m.scalars["precond_lambda_1"] / ns["threshold"]
    assert m.scalars["batch_sharpness_batches"] == 8
    assert isinstance(ns["Fi"] @ torch.zeros(ns["Fi"].shape[0]), torch.Tensor)
