"""The live TensorBoard mirror: event files read back with TensorBoard's reader equal the store,
step by step, exactly (float64), through NaN/inf, truncation (resume), a reopened store and a
SIGKILLed training run that is resumed."""

import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import yaml

from sgdscope.config import load_config
from sgdscope.errors import ConfigError
from sgdscope.store import MetricsStore, load_run
from sgdscope.store.tensorboard import TENSORBOARD_DIR, TensorBoardMirror, attach_tensorboard
from sgdscope.train import resume_run, run

from ..helpers import tiny_config
from .tb_read import (
    EVENT_GLOB,
    provider_scalars,
    same_values,
    store_scalars,
    summary_values,
    tb_scalars,
)

# Values that float32 or a text format would change: a third, a subnormal, the largest double,
# a value one ulp above 1, and the non-finite ones.
AWKWARD = [1 / 3, 5e-324, 1.7976931348623157e308, 1.0000000000000002, math.nan, math.inf, -math.inf]


def _write(store: MetricsStore, steps: range, offset: float = 0.0) -> None:
    for t in steps:
        scalars = {"loss": 1.0 / (t + 1) + offset, "awkward": AWKWARD[t % len(AWKWARD)]}
        if t % 3 == 0:
            scalars["lambda_1"] = 10.0 + t + offset
        store.write_step(t, t // 4, scalars, {"eigenvalues": np.arange(3.0) + t})
        if t % 4 == 3:  # an evaluation at the next step, in its own transaction
            store.write_step(t + 1, t // 4, {"train_loss": 0.5 / (t + 1) + offset})


def _check(run_dir):
    """TensorBoard's reader sees exactly the store's scalars, each (step, name) once."""
    log_dir = run_dir / TENSORBOARD_DIR
    df = load_run(run_dir).scalars
    assert same_values(tb_scalars(log_dir), store_scalars(df))
    assert summary_values(log_dir) == len(df)  # no (step, name) written twice
    assert len(list(log_dir.glob(EVENT_GLOB))) == 1


def test_mirror_equals_store_with_nan_and_inf(tmp_path):
    store = MetricsStore(tmp_path / "metrics.sqlite")
    attach_tensorboard(store, tmp_path)
    _write(store, range(14))
    store.close()
    got = tb_scalars(tmp_path / TENSORBOARD_DIR)
    assert [v for _, v in got["awkward"][:4]] == AWKWARD[:4]  # bit-exact, not float32
    assert math.isnan(got["awkward"][4][1]) and got["awkward"][5][1] == math.inf
    assert "eigenvalues" not in got  # arrays are not mirrored
    _check(tmp_path)


def test_mirror_is_live_after_sync(tmp_path):
    """What a checkpoint syncs is readable while the store stays open."""
    store = MetricsStore(tmp_path / "metrics.sqlite")
    attach_tensorboard(store, tmp_path)
    _write(store, range(5))
    store.sync()
    assert same_values(
        tb_scalars(tmp_path / TENSORBOARD_DIR), store_scalars(load_run(tmp_path).scalars)
    )
    store.close()


def test_truncate_rewrites_without_duplicates(tmp_path):
    store = MetricsStore(tmp_path / "metrics.sqlite")
    mirror = attach_tensorboard(store, tmp_path)
    _write(store, range(6))
    seq = store.seq
    _write(store, range(6, 12))
    store.sync()
    store.truncate_after(seq)  # a resume from the checkpoint at `seq`...
    _write(store, range(6, 12), offset=100.0)  # ...rewrites those steps, here with new values
    store.close()
    assert mirror.rebuilds == 1
    _check(tmp_path)
    loss = dict(tb_scalars(tmp_path / TENSORBOARD_DIR)["loss"])
    assert loss[7] == 1.0 / 8 + 100.0 and loss[5] == 1.0 / 6


def test_reopened_store_replays_lost_events(tmp_path):
    """A killed writer's unflushed events are lost; the next mirror rebuilds them from the store."""
    store = MetricsStore(tmp_path / "metrics.sqlite")
    _write(store, range(5))  # written without a mirror: TensorBoard has nothing yet
    (tmp_path / TENSORBOARD_DIR).mkdir()
    stale = tmp_path / TENSORBOARD_DIR / "events.out.tfevents.1.host.1.0"
    stale.write_bytes(b"")  # an event file a dead process left behind
    mirror = TensorBoardMirror(store, tmp_path / TENSORBOARD_DIR)
    store.add_mirror(mirror)
    _write(store, range(5, 9))
    store.close()
    assert not stale.exists() and mirror.rebuilds == 1
    _check(tmp_path)


def test_store_without_mirror_writes_no_events(tmp_path):
    store = MetricsStore(tmp_path / "metrics.sqlite")
    _write(store, range(3))
    store.close()
    assert not (tmp_path / TENSORBOARD_DIR).exists()


def test_config_field_and_missing_package(monkeypatch):
    assert load_config(None).store.tensorboard is False
    assert load_config(None, ["store.tensorboard=true"]).store.tensorboard is True
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "tensorboard" else real(n, *a)
    )
    with pytest.raises(
        ConfigError, match=r"store\.tensorboard.*pip install 'sgdscope\[tensorboard\]'"
    ):
        load_config(None, ["store.tensorboard=true"])


# ------------------------------------------------------------------ a real training run
def _cfg():
    # 8 steps per epoch, 3 epochs, a checkpoint every 3 steps (as in tests/train/test_resume.py)
    return tiny_config(
        train__epochs=3, train__checkpoint_every=3, store={"root": "runs", "tensorboard": True}
    )


def test_training_run_mirrors_every_scalar(tmp_path):
    out = run(_cfg(), out=tmp_path / "r")
    _check(out)
    # what TensorBoard's server shows: one run, named by its folder, with the store's values
    shown = provider_scalars(tmp_path)
    assert list(shown) == ["r/tensorboard"]
    assert same_values(shown["r/tensorboard"], store_scalars(load_run(out).scalars))
    assert "batch_loss" in shown["r/tensorboard"]


def test_sigkill_then_resume_leaves_one_copy_of_each_step(tmp_path):
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(_cfg()))
    out = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-m", "sgdscope", "run", str(cfg_path), "--out", str(out)],
        env=dict(os.environ, SGDSCOPE_KILL_AT_STEP="13", OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # Steps 12 and 13 were committed after the last checkpoint: the store drops them on
    # resume and the mirror must not keep its copies.
    resume_run(out)
    _check(out)
    steps = [s for s, _ in tb_scalars(out / TENSORBOARD_DIR)["batch_loss"]]
    assert steps == list(range(24))
