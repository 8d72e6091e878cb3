"""The README's "Several processes" Python example runs as written under two processes (torchrun's
environment variables, gloo) and gives the one-process result on all the data."""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F

import sgdscope as ss
from tests.ranks import run_ranks

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text()
    start = text.index("## Several processes: torchrun and data-parallel curvature")
    section = text[start : text.index("\n## ", start + 1)]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return block


def _run_example(rank: int, world_size: int, code: str) -> dict:
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    torch.distributed.destroy_process_group()
    return {
        "top": ns["top"].eigenvalues,
        "trace": ns["tr"].estimate,
        "curve": ns["curve"].losses,
        "info": ns["op"].info["data_parallel"],
    }


def test_the_data_parallel_example_runs_under_two_processes():
    out = run_ranks(_run_example, _example(), init=False)
    assert [o["info"]["mode"] for o in out] == ["sharded", "sharded"]
    assert torch.equal(out[0]["top"], out[1]["top"]) and out[0]["trace"] == out[1]["trace"]
    # one process on all the data (the example's seed draws the same model and data)
    torch.manual_seed(0)
    model = ss.build_model("mlp", (64,), 10, widths=[32])
    x, y = torch.randn(4096, 64), torch.randint(0, 10, (4096,))
    ref = ss.lanczos(ss.HessianOperator(model, F.cross_entropy, (x, y)), k=5)
    torch.testing.assert_close(out[0]["top"], ref.eigenvalues, rtol=1e-5, atol=1e-7)
    theta = ss.probes.flat_params(model)
    curve = ss.interpolate(model, F.cross_entropy, (x, y), theta, 0.9 * theta, num_points=5)
    torch.testing.assert_close(
        torch.from_numpy(out[1]["curve"]), torch.from_numpy(curve.losses), rtol=1e-6, atol=0
    )
