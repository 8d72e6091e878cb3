"""The README's "Lightning" and "Hugging Face Trainer" examples run as written and do what their
comments say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import sgdscope as ss

README = Path(__file__).resolve().parents[2] / "README.md"


def _section_block(heading: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.index("\n## ", start + 1)
    blocks = re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)
    assert len(blocks) == 1, heading
    return blocks[0]


@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
@pytest.mark.filterwarnings("ignore:.*treespec, LeafSpec.*")
def test_lightning_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("lightning")
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(_section_block("Lightning"), "README.md", "exec"), ns)
    trainer = ns["trainer"]
    lam = ss.load_run(tmp_path / "runs" / "lightning").scalar("lambda_1")
    assert lam.index.tolist() == [0, 8]
    assert float(trainer.callback_metrics["curvature/lambda_1"]) == pytest.approx(
        lam.loc[8], rel=1e-6
    )
    assert ss.load_run(tmp_path / "runs" / "lightning").status == "finished"
    csv = (Path(trainer.logger.log_dir) / "metrics.csv").read_text().splitlines()[0]
    assert {"curvature/lambda_1", "walk/height", "probes/distance"} <= set(csv.split(","))


def test_huggingface_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(_section_block("Hugging Face Trainer"), "README.md", "exec"), ns)
    history = ns["trainer"].state.log_history
    assert [h["step"] for h in history if "curvature/lambda_1" in h] == [0, 5]
    assert [h["step"] for h in history if "probes/distance" in h] == list(range(10))
