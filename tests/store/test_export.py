"""Exports read back equal to the store: CSV and Parquet through pandas, JSON Lines through json,
TensorBoard through TensorBoard's reader; a live run exports a consistent read-only snapshot."""

import json
import math
import sqlite3

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from sgdscope.errors import InvalidArgumentError, SgdscopeError
from sgdscope.store import MetricsStore, load_run
from sgdscope.store import export as ex
from sgdscope.store.export import export_run, export_runs, find_runs, read_snapshot

from .tb_read import (
    EVENT_GLOB,
    accumulator,
    finite_stats,
    histogram_stats,
    same_values,
    store_scalars,
    summary_values,
    tb_scalars,
)

AWKWARD = [1 / 3, 5e-324, 1.7976931348623157e308, -0.0, math.nan, math.inf, -math.inf]


def _fill(path, *, steps=9, arrays=True, close=True):
    """A run store with awkward scalars and arrays of several dtypes, shapes and non-finites."""
    s = MetricsStore(path / "metrics.sqlite")
    (path / "config.yaml").write_text("name: exported\noptim: {lr: 0.1}\n")
    s.set_status("running")
    rng = np.random.default_rng(0)
    for t in range(steps):
        sc = {"loss": float(rng.standard_normal()), "awkward": AWKWARD[t % len(AWKWARD)]}
        ar = {}
        if arrays:
            ar["eigenvalues"] = np.sort(rng.standard_normal(4))[::-1].copy()
            ar["grid"] = rng.standard_normal((2, 3)).astype(np.float32)
            ar["counts"] = np.arange(t + 1, dtype=np.int64)  # a shape that changes per step
            ar["flags"] = np.array([t % 2 == 0, True])
            nonfinite = np.array([1.5, math.nan, math.inf, -math.inf, -2.0])
            ar["curve"] = nonfinite if t % 2 else nonfinite[:1]
        s.write_step(t, t // 3, sc, ar)
        if t % 3 == 2:
            s.write_step(t + 1, t // 3, {"train_loss": float(rng.random())})
    if close:
        s.close()
    return s


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "runs" / "lr0.05"  # a dot in the name: the suffix must not eat it
    d.mkdir(parents=True)
    _fill(d)
    return d


def _store_arrays(run_dir):
    r = load_run(run_dir)
    out = {}
    for name in r.array_names():
        steps, values = r.array(name)
        out[name] = list(zip(steps.tolist(), list(values), strict=True))
    return out


# ------------------------------------------------------------------ formats
def test_csv_reads_back_equal(run_dir):
    path = export_run(run_dir, "csv")
    assert path == run_dir.with_name("lr0.05.csv").resolve()
    df = pd.read_csv(path)
    ref = load_run(run_dir).scalars
    assert list(df.columns) == ["step", "epoch", "name", "value"]
    pd.testing.assert_frame_equal(df, ref, check_dtype=False, check_exact=True)
    assert df.value.isna().sum() == ref.value.isna().sum() > 0
    assert np.isinf(df.value).sum() == np.isinf(ref.value).sum() > 0
    assert "nan" in path.read_text()  # NaN is written, not an empty field


def test_parquet_reads_back_equal(run_dir, tmp_path):
    path = export_run(run_dir, "parquet", tmp_path / "out" / "x.parquet")
    df = pd.read_parquet(path)
    assert list(df.columns) == ["step", "epoch", "name", "value", "dtype", "shape", "array"]
    scalars = df[df["array"].isna()].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        scalars[["step", "epoch", "name", "value"]], load_run(run_dir).scalars,
        check_dtype=False, check_exact=True,
    )  # fmt: skip
    rows = df[df["array"].notna()]
    got: dict = {}
    for r in rows.itertuples(index=False):
        a = np.reshape(r.array, r.shape).astype(r.dtype)
        got.setdefault(r.name, []).append((r.step, a))
    ref = _store_arrays(run_dir)
    assert got.keys() == ref.keys()
    for name in ref:
        for (s1, a1), (s2, a2) in zip(got[name], ref[name], strict=True):
            assert s1 == s2 and a1.dtype == a2.dtype
            np.testing.assert_array_equal(a1, a2)  # NaN == NaN here
    meta = json.loads(pq.read_schema(path).metadata[b"sgdscope"])
    assert meta["status"] == "running" and meta["last_step"] == 9


def test_jsonl_is_strict_json_and_reads_back_equal(run_dir):
    path = export_run(run_dir, "jsonl")

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    recs = [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]
    scal = [r for r in recs if "value" in r]
    df = pd.DataFrame(scal)[["step", "epoch", "name", "value"]]
    df["value"] = [float(v) for v in df["value"]]  # "NaN", "Infinity", "-Infinity" → float
    pd.testing.assert_frame_equal(
        df, load_run(run_dir).scalars, check_dtype=False, check_exact=True
    )
    ref = _store_arrays(run_dir)
    got: dict = {}
    for r in recs:
        if "array" in r:
            a = np.array(r["array"], dtype=object)
            a = np.vectorize(float, otypes=[np.float64])(a) if a.size else a.astype(np.float64)
            got.setdefault(r["name"], []).append(
                (r["step"], a.reshape(r["shape"]).astype(r["dtype"]))
            )
    for name in ref:
        for (s1, a1), (s2, a2) in zip(got[name], ref[name], strict=True):
            assert s1 == s2
            np.testing.assert_array_equal(a1, a2)
    # records are sorted by step, then name
    keys = [(r["step"], r["name"]) for r in recs]
    assert keys == sorted(keys)


def test_tensorboard_export_reads_back_equal(run_dir, tmp_path):
    out = export_run(run_dir, "tensorboard", tmp_path / "tb")
    assert same_values(tb_scalars(out), store_scalars(load_run(run_dir).scalars))
    for name, items in _store_arrays(run_dir).items():
        expected = [(s, *finite_stats(a)) for s, a in items if np.isfinite(a.astype(float)).any()]
        # min, max and count exactly; the sum up to float64 summation order
        np.testing.assert_allclose(histogram_stats(out, name), expected, rtol=1e-12, atol=0)
    text = accumulator(out).Tensors("config/text_summary")[0].tensor_proto.string_val[0]
    assert b"lr: 0.1" in text
    # A second export replaces the first: still one file, nothing doubled.
    n = summary_values(out)
    export_run(run_dir, "tensorboard", tmp_path / "tb")
    assert len(list(out.glob(EVENT_GLOB))) == 1 and summary_values(out) == n


def test_missing_arrays_and_empty_runs(tmp_path):
    d = tmp_path / "noarrays"
    d.mkdir()
    _fill(d, arrays=False)
    df = pd.read_parquet(export_run(d, "parquet"))
    assert df["array"].isna().all() and len(df) == len(load_run(d).scalars)
    recs = export_run(d, "jsonl").read_text().splitlines()
    assert len(recs) == len(df) and all("array" not in json.loads(r) for r in recs)
    assert not accumulator(export_run(d, "tensorboard")).Tags()["histograms"]
    e = tmp_path / "empty"
    e.mkdir()
    MetricsStore(e / "metrics.sqlite").close()
    assert pd.read_csv(export_run(e, "csv")).empty
    assert pd.read_parquet(export_run(e, "parquet")).empty
    assert export_run(e, "jsonl").read_text() == ""


# ------------------------------------------------------------------ a live run
def test_live_run_exports_committed_steps_and_is_not_written(tmp_path):
    d = tmp_path / "live"
    d.mkdir()
    store = _fill(d, close=False)  # still open, status running
    committed = load_run(d).scalars
    # another writer holds an open transaction with a step not yet committed
    other = sqlite3.connect(d / "metrics.sqlite", timeout=0.1, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO scalars (step, epoch, name, value, seq) VALUES (99, 9, 'x', 1, 999)")

    def files():
        # -shm is SQLite's shared-memory index (readers take read marks in it), not data
        return {
            p.name: p.read_bytes() if not p.name.endswith("-shm") else None for p in d.iterdir()
        }

    before = files()
    for fmt in ("csv", "parquet", "jsonl", "tensorboard"):
        export_run(d, fmt, tmp_path / "out" / fmt)
    assert files() == before  # no byte of the database or its WAL changed, no file added
    df = pd.read_csv(tmp_path / "out" / "csv")
    pd.testing.assert_frame_equal(df, committed, check_dtype=False, check_exact=True)
    other.execute("ROLLBACK")
    other.close()
    store.close()


def test_snapshot_is_one_transaction(tmp_path, monkeypatch):
    """A step committed between the scalar and the array query is in neither."""
    d = tmp_path / "live"
    d.mkdir()
    store = _fill(d, close=False)
    real = ex._read_arrays

    def commit_then_read(con):
        store.write_step(50, 9, {"late": 1.0}, {"late_array": np.ones(2)})
        return real(con)

    monkeypatch.setattr(ex, "_read_arrays", commit_then_read)
    snap = read_snapshot(d)
    assert "late" not in set(snap.scalars.name)
    assert "late_array" not in {n for _, _, n, _ in snap.arrays}
    assert snap.status == "running"
    store.close()
    assert "late_array" in load_run(d).array_names()  # it was committed, after the snapshot


# ------------------------------------------------------------------ folders of runs
def test_sweep_folder_exports_one_file_per_run_named_by_path(tmp_path):
    root = tmp_path / "sweep"
    for rel in ("lr0.1", "sub/lr0.2", ".hidden/lr0.3"):
        (root / rel).mkdir(parents=True)
        _fill(root / rel, steps=3)
    (root / "sweep.yaml").write_text("grid: {}\n")
    assert find_runs(root) == [root / "lr0.1", root / "sub/lr0.2"]
    written = export_runs(root, "csv", tmp_path / "csv")
    assert written == [tmp_path / "csv/lr0.1.csv", tmp_path / "csv/sub/lr0.2.csv"]
    for w, r in zip(written, find_runs(root), strict=True):
        pd.testing.assert_frame_equal(
            pd.read_csv(w), load_run(r).scalars,
            check_dtype=False, check_exact=True,
        )  # fmt: skip
    tb = export_runs(root, "tensorboard")
    assert tb == [tmp_path / "sweep-tensorboard/lr0.1", tmp_path / "sweep-tensorboard/sub/lr0.2"]
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "sweep-tensorboard"))
    assert sorted(mux.Runs()) == ["lr0.1", "sub/lr0.2"]  # TensorBoard names runs by path


# ------------------------------------------------------------------ bad input
def test_bad_input_is_one_clear_error(tmp_path, run_dir):
    with pytest.raises(
        InvalidArgumentError, match=r"unknown export format 'parqet'; did you mean 'parquet'\?"
    ):
        export_run(run_dir, "parqet")
    with pytest.raises(InvalidArgumentError, match="formats: csv, parquet, jsonl, tensorboard"):
        export_run(run_dir, "xlsx")
    with pytest.raises(SgdscopeError, match="does not exist"):
        export_run(tmp_path / "nope", "csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SgdscopeError, match="is not a run directory"):
        export_run(tmp_path / "empty", "csv")
    with pytest.raises(SgdscopeError, match="no runs in"):
        export_runs(tmp_path / "empty", "csv")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(SgdscopeError, match=r"cannot write .*choose another --out"):
        export_run(run_dir, "csv", blocker / "x.csv")
    with pytest.raises(SgdscopeError, match=r"cannot write .*choose another --out"):
        export_run(run_dir, "tensorboard", blocker)
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "metrics.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(SgdscopeError, match="cannot read"):
        export_run(bad, "csv")
    assert not list(tmp_path.glob("**/.*.tmp-*"))  # no temporary file left behind


def test_missing_optional_packages_are_one_clear_error(run_dir, tmp_path, monkeypatch):
    import importlib.util
    import sys

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "tensorboard" else real(n, *a)
    )
    with pytest.raises(SgdscopeError, match=r"pip install 'sgdscope\[tensorboard\]'"):
        export_run(run_dir, "tensorboard", tmp_path / "tb")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    with pytest.raises(SgdscopeError, match=r"pip install 'sgdscope\[parquet\]'"):
        export_run(run_dir, "parquet", tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()
