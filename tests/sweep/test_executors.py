"""The executor interface: options, storage check, lost workers, the live table, the CLI."""

import io
import json

import pytest
import yaml

from sgdscope.cli import main
from sgdscope.errors import ConfigError, InvalidArgumentError
from sgdscope.store import MetricsStore, is_run_dir, load_run
from sgdscope.sweep import Outcome, RunTask, execute_point, load_sweep, make_executor, run_sweep
from sgdscope.sweep.monitor import SweepMonitor
from sgdscope.sweep.point import (
    StorageNotSharedError,
    attempts_file,
    check_storage,
    new_session,
)

from ..helpers import tiny_config


def test_options_that_do_not_apply_are_refused():
    with pytest.raises(InvalidArgumentError, match=r"--address: not an option of the 'local'"):
        make_executor("local", workers=2, address="auto")
    with pytest.raises(ConfigError, match=r"unknown executor 'rya'; did you mean 'ray'"):
        make_executor("rya")
    # None means "not given": a command line passes every option it has.
    assert make_executor("local", workers=3, address=None).workers == 3


def test_storage_not_shared_refuses_before_writing(tmp_path):
    with pytest.raises(StorageNotSharedError, match="storage every node mounts"):
        check_storage(tmp_path, "20260101-000000-deadbeef")
    session = new_session(tmp_path)
    check_storage(tmp_path, session)  # the driver's own marker is seen
    task = RunTask("p", tiny_config(), [], str(tmp_path / "runs" / "p"), str(tmp_path), "nope")
    res = execute_point(task)
    assert res["status"] == "failed" and "does not see the sweep directory" in res["error"]
    assert not (tmp_path / "runs").exists()


class _LosesOne:
    """Runs every point but the second, whose worker is 'lost' after it started writing."""

    def run(self, tasks, workdir):
        for i, t in enumerate(tasks):
            if i == 1:
                store = MetricsStore(f"{t.run_dir}/metrics.sqlite")
                store.set_status("running")
                store.close()
                yield Outcome(i, error="its Ray worker was lost and the run was retried 3 times")
            else:
                yield Outcome(i, execute_point(t))


def test_a_lost_run_is_marked_failed_and_the_others_finish(tmp_path):
    (tmp_path / "s" / "runs" / "lr=0.2").mkdir(parents=True)
    out = run_sweep(
        tiny_config(train__steps=3),
        {"optim.lr": [0.1, 0.2, 0.3]},
        tmp_path / "s",
        executor=_LosesOne(),
    )
    summary = load_sweep(out).summary.set_index("run")
    assert list(summary.status) == ["finished", "failed", "finished"]
    assert "worker was lost" in summary.loc["lr=0.2", "error"]
    assert load_run(out / "runs" / "lr=0.2").status == "failed"


def _attempt(sweep_dir, name, session, attempt, from_step=None):
    path = attempts_file(sweep_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = {
        "session": session,
        "attempt": attempt,
        "host": "node7",
        "pid": 1,
        "started": 0.0,
        "from_step": from_step,
    }
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def test_monitor_counts_running_retried_done_failed(tmp_path):
    stream = io.StringIO()
    mon = SweepMonitor(["a", "b", "c"], str(tmp_path), "s2", live=True, stream=stream)
    _attempt(tmp_path, "a", "s1", 1)  # an earlier session's attempt does not count
    _attempt(tmp_path, "a", "s2", 1)
    _attempt(tmp_path, "a", "s2", 2, from_step=40)
    _attempt(tmp_path, "b", "s2", 1)
    mon.poll()
    c = mon.counts()
    assert (c["running"], c["pending"], c["retried"]) == (2, 1, 1)
    assert "a: running on node7 (attempt 2, resuming from step 40)" in stream.getvalue()
    mon.finished("a", {"status": "finished", "seconds": 2.0, "attempt": 2})
    mon.finished("b", {"status": "failed", "error": "ValueError: boom\nmore"})
    mon.finished("c", {"status": "finished", "skipped": True})
    c = mon.counts()
    assert (c["finished"], c["failed"], c["skipped"], c["running"], c["retried"]) == (1, 1, 1, 0, 1)
    assert mon.counts_text() == "2/3 done, 0 running, 1 failed, 1 retried"
    assert "b: failed: ValueError: boom  [" in stream.getvalue()

    from rich.console import Console

    con = Console(file=io.StringIO(), width=120)
    con.print(mon.table())
    text = con.file.getvalue()
    assert "resumed from step 40" in text and "ValueError: boom" in text


def _main(args):
    try:
        main(args)
    except SystemExit as e:
        return e.code
    return 0


def test_cli_device_option_and_wrong_executor_option(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    cfg = tiny_config(train__steps=2)
    cfg["device"] = "auto"
    recipe.write_text(
        yaml.safe_dump(
            {
                "title": "t",
                "paper": "A",
                "config": cfg,
                "grid": {"seed": [0, 1]},
                "variants": {"small": {}},
            }
        )
    )
    out = tmp_path / "s"
    assert _main(["sweep", str(recipe), "--out", str(out), "--device", "cpu"]) == 0
    for seed in (0, 1):
        assert load_run(out / "runs" / f"seed={seed}").config["device"] == "cpu"
    capsys.readouterr()
    assert _main(["sweep", str(recipe), "--out", str(tmp_path / "t"), "--partition", "gpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: --partition: not an option of the 'local' executor (it takes --workers); "
        "drop it or choose another --executor"
    ]
    assert not is_run_dir(tmp_path / "t" / "runs" / "seed=0")
