"""The README's "Your logger" section runs as written: its `sgdscope` commands (a real tiny run
with the live TensorBoard mirror, then every export) and its Python blocks.

W&B and MLflow are not installed in the test environment (vendor SDKs of ~25 packages each, and
no account is needed to check what is ours): their blocks run against stand-in modules that record
the calls made through the documented signatures (``wandb.init(...)`` as a context manager with
``log(dict, step=)``, ``mlflow.start_run(run_name=)`` with ``log_metrics(dict, step=)``), and the
test checks that every stored scalar arrives at its step with its exact value.
"""

from __future__ import annotations

import contextlib
import math
import re
import shlex
import shutil
import sys
import types
from pathlib import Path

import pandas as pd
import yaml

from sgdscope.cli import main
from sgdscope.store import load_run

from .helpers import tiny_config
from .store.tb_read import same_values, store_scalars, tb_scalars

README = Path(__file__).resolve().parents[1] / "README.md"


def _section() -> str:
    text = README.read_text()
    start = text.index("## Your logger: TensorBoard, W&B, MLflow")
    return text[start : text.index("\n## ", start + 1)]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _section(), flags=re.S)


def _sgdscope_lines() -> list[list[str]]:
    lines = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            if line.startswith("sgdscope "):
                lines.append(shlex.split(line, comments=True)[1:])
    return lines


def _by_step(df: pd.DataFrame) -> dict[int, dict[str, float]]:
    return {int(s): dict(zip(g["name"], g["value"], strict=True)) for s, g in df.groupby("step")}


def _same(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]]) -> bool:
    def eq(x: float, y: float) -> bool:
        return x == y or (math.isnan(x) and math.isnan(y))

    return a.keys() == b.keys() and all(
        a[s].keys() == b[s].keys() and all(eq(a[s][k], b[s][k]) for k in a[s]) for s in a
    )


def _run_commands(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    cfg = tiny_config(
        eigenbasis={"k": 3, "every": 5},
        probes=[
            {"name": "grad_norm"},
            {"name": "sharpness", "every": 5},
        ],
    )
    Path("my.yaml").write_text(yaml.safe_dump(cfg))
    lines = _sgdscope_lines()
    assert [a[0] for a in lines] == ["run"] + ["export"] * 5
    for args in lines:
        if "runs/peak-lr" in args and not Path("runs/peak-lr").exists():
            for point in ("lr0.05", "lr0.1"):  # a sweep's folder of runs
                shutil.copytree("runs/lr005", f"runs/peak-lr/{point}")
        try:
            main(args)
        except SystemExit as e:
            assert e.code == 0, args
    return tmp_path / "runs" / "lr005"


def test_logger_commands_run_as_written(tmp_path, monkeypatch):
    run_dir = _run_commands(tmp_path, monkeypatch)
    ref = load_run(run_dir).scalars
    assert same_values(tb_scalars(run_dir / "tensorboard"), store_scalars(ref))  # live mirror
    assert same_values(tb_scalars(tmp_path / "tb" / "lr005"), store_scalars(ref))
    for point in ("lr0.05", "lr0.1"):
        assert same_values(tb_scalars(tmp_path / "tb" / point), store_scalars(ref))
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "runs" / "lr005.csv"), ref, check_dtype=False, check_exact=True
    )
    for suffix in (".parquet", ".jsonl"):
        assert (tmp_path / "runs" / f"lr005{suffix}").stat().st_size > 0


class _Recorder:
    """Records ``log(dict, step=)`` calls by step, refusing a step logged twice."""

    def __init__(self) -> None:
        self.by_step: dict[int, dict[str, float]] = {}
        self.opened: list[dict] = []

    def log(self, values: dict, step: int) -> None:
        assert isinstance(step, int) and step not in self.by_step
        assert step >= max(self.by_step, default=step)  # W&B needs increasing steps
        self.by_step[step] = {str(k): float(v) for k, v in values.items()}

    @contextlib.contextmanager
    def session(self, **kwargs):
        self.opened.append(kwargs)
        yield self


def test_logger_python_blocks_run_as_written(tmp_path, monkeypatch):
    run_dir = _run_commands(tmp_path, monkeypatch)
    wb, mlf = _Recorder(), _Recorder()
    wandb = types.ModuleType("wandb")
    wandb.init = wb.session
    mlflow = types.ModuleType("mlflow")
    mlflow.start_run = mlf.session
    mlflow.log_metrics = mlf.log
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)

    blocks = _blocks("python")
    assert len(blocks) == 3
    ns: dict = {"run_dir": run_dir}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), ns)

    r = load_run(run_dir)
    ref = _by_step(r.scalars)
    assert _same(_by_step(ns["scalars"]), ref)
    steps, eig = r.array("eigenvalues")
    assert ns["spectra"].shape == eig.shape == (len(steps), 3)
    assert (ns["spectra"] == eig).all()
    assert wb.opened == [{"project": "sgdscope", "name": "lr005"}]
    assert mlf.opened == [{"run_name": "lr005"}]
    assert _same(wb.by_step, ref) and _same(mlf.by_step, ref)
