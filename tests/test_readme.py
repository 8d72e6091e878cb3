"""The README's library examples run as written, and its config reference matches the schema."""

import re
from pathlib import Path

import torch

from sgdscope.config import config_reference

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_curvature_and_nsgd_examples_run():
    blocks = _python_blocks()
    code = blocks[0].replace("# ... one optimizer step ...", "_step()") + "\n" + blocks[1]
    torch.manual_seed(0)
    ns: dict = {}

    def _step():
        model = ns["model"]
        model.zero_grad()
        ns["loss_fn"](model(ns["x"]), ns["y"]).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad

    ns["_step"] = _step
    exec(compile(code, "README.md", "exec"), ns)
    res, warm = ns["res"], ns["warm"]
    assert res.converged and res.eigenvalues.shape == (10,)
    assert torch.all(res.eigenvalues[:-1] >= res.eigenvalues[1:])
    assert warm.num_matvecs < res.num_matvecs
    torch.testing.assert_close(warm.eigenvalues, res.eigenvalues, rtol=1e-3, atol=1e-6)
    assert 0.0 <= ns["stats"].alpha_star <= 1.0


def test_config_reference_in_readme_is_current():
    assert config_reference() in README.read_text()
