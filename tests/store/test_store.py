import sqlite3

import numpy as np
import pytest

from sgdscope.store import MetricsStore, load_run


def test_write_read_scalars_and_arrays(tmp_path):
    s = MetricsStore(tmp_path / "metrics.sqlite")
    s.write_step(0, 0, {"a": 1.5, "b": -2.0}, {"v": np.arange(6, dtype=np.float32).reshape(2, 3)})
    s.write_step(1, 0, {"a": 2.5}, {"v": np.ones((2, 3), dtype=np.float32)})
    s.set_status("finished")
    s.close()
    r = load_run(tmp_path)
    assert r.status == "finished"
    assert r.scalars[["step", "name", "value"]].values.tolist() == [
        [0, "a", 1.5],
        [0, "b", -2.0],
        [1, "a", 2.5],
    ]
    steps, v = r.array("v")
    assert steps.tolist() == [0, 1]
    assert v.shape == (2, 2, 3) and v.dtype == np.float32
    np.testing.assert_array_equal(v[0], np.arange(6).reshape(2, 3))
    assert r.wide().loc[1, "a"] == 2.5


def test_duplicate_step_name_is_refused_and_rolled_back(tmp_path):
    s = MetricsStore(tmp_path / "metrics.sqlite")
    s.write_step(0, 0, {"a": 1.0})
    with pytest.raises(sqlite3.IntegrityError):
        s.write_step(0, 0, {"z": 3.0, "a": 2.0})
    # the failed transaction left nothing behind (z not written)
    assert load_run(tmp_path).last() == {"a": 1.0}


def test_truncate_after_seq(tmp_path):
    s = MetricsStore(tmp_path / "metrics.sqlite")
    s.write_step(0, 0, {"a": 1.0})
    seq = s.write_step(1, 0, {"a": 2.0})
    s.write_step(2, 0, {"a": 3.0}, {"v": np.zeros(2)})
    assert s.truncate_after(seq) == 2
    assert load_run(tmp_path).scalar("a").tolist() == [1.0, 2.0]
    s2 = MetricsStore(tmp_path / "metrics.sqlite")  # reopening recovers the sequence number
    assert s2.seq == seq


def test_wal_mode(tmp_path):
    s = MetricsStore(tmp_path / "metrics.sqlite")
    mode = s.con.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
