import os
import subprocess
import sys

import yaml

from sgdscope.cli import main
from sgdscope.store import load_run

from ..helpers import tiny_config


def _main(args):
    try:
        main(args)
    except SystemExit as e:
        return e.code
    return 0


def test_run_ls_show(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config()))
    out = tmp_path / "runs" / "one"
    assert _main(["run", str(cfg), "optim.lr=0.05", "--out", str(out)]) == 0
    assert "run finished" in capsys.readouterr().out
    assert load_run(out).config["optim"]["lr"] == 0.05
    assert _main(["ls", str(tmp_path / "runs")]) == 0
    text = capsys.readouterr().out
    assert "one" in text and "finished" in text
    assert _main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    assert "lr: 0.05" in text and "train_loss" in text


def test_bad_config_exits_2_without_traceback(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config()))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sgdscope",
            "run",
            str(cfg),
            "optim.lrr=0.1",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: unknown config key 'optim.lrr'; did you mean 'optim.lr'? "
        "(valid keys here: name, lr, momentum, weight_decay, nesterov, options)"
    )
    assert "Traceback" not in proc.stderr + proc.stdout


def test_debug_variable_shows_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sgdscope", "run", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, SGDSCOPE_DEBUG="1", OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "not found" in proc.stderr


def test_diverged_run_exits_3(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(optim__lr=1e25, model__options__activation="relu")))
    assert _main(["run", str(cfg), "--out", str(tmp_path / "r")]) == 3
    assert "diverged: training diverged" in capsys.readouterr().err
    assert load_run(tmp_path / "r").status == "diverged"


def test_every_command_has_help_with_example(capsys):
    for cmd in ("run", "resume", "demo", "ls", "show"):
        assert _main([cmd, "--help"]) == 0
        assert "Example:" in capsys.readouterr().out
