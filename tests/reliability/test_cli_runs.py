"""The run commands as a new user meets them: ``ls`` finds runs at any depth (sweeps, demos),
``show`` reads a sweep, names are never cut at 80 columns, ``--device`` on run and resume."""

from __future__ import annotations

import yaml

from sgdscope.recipes import list_recipes
from sgdscope.store import list_runs, load_run
from sgdscope.sweep import run_sweep
from sgdscope.train import run

from ..helpers import tiny_config
from ._helpers import cli, write_config


def _one_epoch(**over):
    return tiny_config(**{"train__epochs": 1, **over})


def test_ls_and_show_find_runs_inside_sweeps_and_folders(tmp_path, capsys):
    root = tmp_path / "runs"
    run(_one_epoch(), out=root / "single")
    sweep = run_sweep(
        _one_epoch(), {"optim.lr": [0.1, 0.05]}, root / "peak-lr-small", executor="serial"
    )
    nested = run(_one_epoch(), out=root / "demo" / "part-a" / "r1")
    assert len(list_runs(root)) == 4
    capsys.readouterr()
    assert cli(["ls", root]) == 0
    out = capsys.readouterr().out
    for rel in ("single", "peak-lr-small/runs/lr=0.1", "demo/part-a/r1"):
        assert rel in out, out
    assert cli(["ls", sweep]) == 0  # a sweep folder on its own
    out = capsys.readouterr().out
    assert "runs/lr=0.05" in out and "no runs" not in out
    assert cli(["show", sweep]) == 0
    out = capsys.readouterr().out
    assert "sweep over optim.lr: 2 runs, 2 finished" in out
    assert "lr=0.1" in out and "lr=0.05" in out
    assert cli(["show", root / "demo"]) == 0
    out = capsys.readouterr().out
    assert "a folder of 1 runs" in out and "part-a/r1" in out
    assert load_run(nested).status == "finished"


def test_long_names_are_never_cut(tmp_path, capsys):
    name = "a-very-long-run-name-" + "x" * 90
    run(_one_epoch(), out=tmp_path / "runs" / name)
    capsys.readouterr()
    assert cli(["ls", tmp_path / "runs"]) == 0
    out = capsys.readouterr().out
    assert name in out and "…" not in out
    assert cli(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out
    for r in list_recipes():
        assert r.name in out and r.title in out, r.name


def test_device_option_on_run_and_resume(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", _one_epoch(device="auto"))
    out = tmp_path / "r"
    assert cli(["run", cfg, "--device", "cpu", "--out", out]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["device"] == "cpu"
    assert cli(["resume", out, "--device", "cpu"]) == 0  # a finished run: nothing to redo
    assert load_run(out).status == "finished"


def test_rejected_config_without_out_creates_no_store_root(tmp_path, capsys):
    cfg = _one_epoch()
    cfg["store"] = {"root": str(tmp_path / "runs")}
    path = write_config(tmp_path / "c.yaml", cfg)
    assert cli(["run", path, "model.name=resnet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown model 'resnet'"), err
    assert not (tmp_path / "runs").exists()
    assert cli(["run", path, "data.name=cifar10", "data.options={}"]) == 2
    assert "dataset 'cifar10': files not found" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
