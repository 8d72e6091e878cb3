"""Reading TensorBoard event files back with TensorBoard's own readers (tests only)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util import tensor_util

EVENT_GLOB = "events.out.tfevents.*"


def accumulator(log_dir: Path) -> ea.EventAccumulator:
    """Every event kept (size 0: no reservoir sampling)."""
    acc = ea.EventAccumulator(
        str(log_dir), size_guidance={ea.TENSORS: 0, ea.SCALARS: 0, ea.HISTOGRAMS: 0}
    )
    acc.Reload()
    return acc


def tb_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of the scalar-plugin tensors, in file order."""
    acc = accumulator(log_dir)
    out: dict[str, list[tuple[int, float]]] = {}
    for tag in acc.Tags()["tensors"]:
        meta = acc.SummaryMetadata(tag)
        if meta.plugin_data.plugin_name != "scalars":
            continue
        out[tag] = [
            (e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)
        ]
    return out


def provider_scalars(root: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{run: {tag: [(step, value), ...]}}`` as TensorBoard's server reads them (the data
    provider its scalars dashboard asks), every run under ``root``, nothing downsampled."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

    mux = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={"scalars": 0})
    mux.AddRunsFromDirectory(str(root))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(root))
    data = provider.read_scalars(
        context.RequestContext(), experiment_id="", plugin_name="scalars", downsample=10**9
    )
    return {
        run: {tag: [(d.step, d.value) for d in series] for tag, series in tags.items()}
        for run, tags in data.items()
    }


def store_scalars(df) -> dict[str, list[tuple[int, float]]]:
    """The same shape from a long ``step, name, value`` DataFrame (sorted by step)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for name, g in df.sort_values(["step"], kind="stable").groupby("name", sort=True):
        out[name] = [(int(s), float(v)) for s, v in zip(g.step, g.value, strict=True)]
    return out


def same_values(a: dict, b: dict) -> bool:
    """Equal tag by tag and step by step, exactly, with NaN equal to NaN."""
    if a.keys() != b.keys():
        return False
    for k in a:
        if len(a[k]) != len(b[k]):
            return False
        for (s1, v1), (s2, v2) in zip(a[k], b[k], strict=True):
            if s1 != s2 or not (v1 == v2 or (math.isnan(v1) and math.isnan(v2))):
                return False
    return True


def summary_values(log_dir: Path) -> int:
    """How many summary values the event files hold (every written scalar counts once)."""
    n = 0
    for f in sorted(log_dir.glob(EVENT_GLOB)):
        for ev in EventFileLoader(str(f)).Load():
            if ev.HasField("summary"):
                n += len(ev.summary.value)
    return n


def histogram_stats(log_dir: Path, tag: str) -> list[tuple[int, float, float, float, float]]:
    """``(step, num, min, max, sum)`` of every histogram of ``tag``."""
    acc = accumulator(log_dir)
    return [
        (h.step, h.histogram_value.num, h.histogram_value.min, h.histogram_value.max,
         h.histogram_value.sum)
        for h in acc.Histograms(tag)
    ]  # fmt: skip


def finite_stats(a: np.ndarray) -> tuple[float, float, float, float]:
    f = np.asarray(a, dtype=np.float64).ravel()
    f = f[np.isfinite(f)]
    return float(f.size), float(f.min()), float(f.max()), float(f.sum())
