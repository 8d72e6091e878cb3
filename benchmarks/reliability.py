"""Reliability figures: an operator's worst day, tried on real processes, counted.

Every trial runs ``python -m sgdscope`` as a user would (real signals, exit codes, files):
malformed configs and command lines; SIGTERM / SIGINT / SIGKILL at random wall-clock moments
(then resume, compared with an uninterrupted run value for value); Ctrl-C during start-up; two
processes on one run directory; damaged checkpoints, configs and stores; a full disk and a
read-only folder (tmpfs, root only); downloads without checksum or over plain HTTP.

Usage: python benchmarks/reliability.py [--trials 5] [--seed 0] [--out FILE.md]

``--kill-everything N`` runs instead the kill-every-component sweep (issue 11, item 1): for each
registered probe and optimizer, and the variants of ``tests/reliability/kill_everything.py``, an
uninterrupted reference run, then N runs SIGKILLed at moments drawn (seeded) in the reference's
window from its first row to its last, each resumed and compared bit for bit with the reference:
``python benchmarks/reliability.py --kill-everything 3 --workers 2 --out FILE.md``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reliability import _helpers as h  # noqa: E402
from tests.reliability import kill_everything as ke  # noqa: E402
from tests.reliability.bad_inputs import CASES  # noqa: E402

from sgdscope.store import load_run  # noqa: E402
from sgdscope.train import run  # noqa: E402
from sgdscope.train.checkpoint import CHECKPOINT_NAME, PREVIOUS_NAME  # noqa: E402


@dataclass
class Row:
    case: str
    tried: int = 0
    survived: int = 0
    one_line: int | None = None
    wrong_code: int | None = None
    left_dir: int | None = None
    lost: int | None = None
    duplicated: int | None = None
    notes: list[str] = field(default_factory=list)


def _rows_of(run_dir: Path) -> tuple[int, int]:
    """(rows, duplicated (step, name) pairs) of a run's scalars."""
    con = sqlite3.connect(run_dir / "metrics.sqlite")
    try:
        n = con.execute("SELECT COUNT(*) FROM scalars").fetchone()[0]
        dup = con.execute(
            "SELECT COUNT(*) FROM (SELECT step, name FROM scalars GROUP BY step, name "
            "HAVING COUNT(*) > 1)"
        ).fetchone()[0]
    finally:
        con.close()
    return n, dup


def _identical(done: Path, ref: Path) -> tuple[bool, int, int]:
    """(identical, rows lost, rows duplicated) against the reference run."""
    try:
        h.assert_same_run(done, ref)
        same = True
    except AssertionError:
        same = False
    n, dup = _rows_of(done)
    n_ref, _ = _rows_of(ref)
    return same, max(n_ref - n, 0), dup


def _tree(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


# --------------------------------------------------------------------------- bad inputs
def bad_inputs(workers: int) -> Row:
    row = Row("malformed configs and command lines", one_line=0, wrong_code=0, left_dir=0)

    def one(case) -> tuple[str, bool, bool, bool]:
        tmp = Path(tempfile.mkdtemp(prefix="sgdscope-rel-"))
        try:
            args = case.build(tmp)
            before = _tree(tmp)
            p = h.run_cli(args, timeout=300)
            lines = h.stderr_lines(p.stderr)
            clear = (
                p.returncode == 2
                and len(lines) == 1
                and lines[0].startswith("error: ")
                and case.expect in lines[0]
                and "Traceback" not in p.stderr
            )
            return case.id, clear, p.returncode != 2, _tree(tmp) != before
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    import torch

    cases = [c for c in CASES if not (c.needs_no_cuda and torch.cuda.is_available())]
    with cf.ThreadPoolExecutor(workers) as pool:
        for cid, clear, wrong, left in pool.map(one, cases):
            row.tried += 1
            row.one_line += clear
            row.wrong_code += wrong
            row.left_dir += left
            row.survived += clear and not wrong and not left
            if not clear or wrong or left:
                row.notes.append(cid)
    return row


# --------------------------------------------------------------------------- signals
def _finite(steps: int = 3000) -> dict:
    cfg = h.long_config()
    cfg["train"].update(steps=steps, checkpoint_every=40)
    return cfg


def signal_at_random(sig: int, trials: int, rng: random.Random, ref: Path, tmp: Path) -> Row:
    name = signal.Signals(sig).name
    row = Row(f"{name} at a random moment, then resume", one_line=0, wrong_code=0, lost=0)
    row.duplicated = 0
    cfg = h.write_config(tmp / "finite.yaml", _finite())
    for i in range(trials):
        out = tmp / f"{name}-{i}"
        proc = h.spawn(["run", cfg, "--out", out])
        h.wait_for_step(out, 0, proc)
        time.sleep(rng.uniform(0.0, 2.5))
        rc, _, err = h.stop(proc, sig)
        if rc == 0:  # finished before the signal: not a trial
            continue
        row.tried += 1
        lines = h.stderr_lines(err)
        good_line = bool(lines) and lines[-1].endswith(f"`sgdscope resume {out}`")
        row.one_line += good_line and "Traceback" not in err
        row.wrong_code += rc != 128 + sig
        status = load_run(out).status
        resumed = h.run_cli(["resume", out], timeout=600)
        same, lost, dup = _identical(out, ref)
        row.lost += lost
        row.duplicated += dup
        ok = rc == 128 + sig and good_line and status == "interrupted" and resumed.returncode == 0
        row.survived += ok and same
        if not (ok and same):
            row.notes.append(f"#{i}: rc={rc} status={status} same={same}")
    return row


def sigkill_at_random(trials: int, rng: random.Random, ref: Path, tmp: Path) -> Row:
    row = Row("SIGKILL at a random moment: `ls` says stale, resume", lost=0, duplicated=0)
    cfg = h.write_config(tmp / "finite.yaml", _finite())
    for i in range(trials):
        out = tmp / f"KILL-{i}"
        proc = h.spawn(["run", cfg, "--out", out])
        h.wait_for_step(out, 0, proc)
        time.sleep(rng.uniform(0.0, 2.5))
        rc, _, _ = h.stop(proc, signal.SIGKILL)
        if rc == 0:
            continue
        row.tried += 1
        ls = h.run_cli(["ls", out])
        stale = "stale" in ls.stdout
        resumed = h.run_cli(["resume", out], timeout=600)
        same, lost, dup = _identical(out, ref)
        row.lost += lost
        row.duplicated += dup
        row.survived += stale and resumed.returncode == 0 and same
        if not (stale and same):
            row.notes.append(f"#{i}: stale={stale} same={same}")
    return row


def ctrl_c_at_start(trials: int, rng: random.Random, tmp: Path) -> Row:
    row = Row("Ctrl-C during start-up", one_line=0, wrong_code=0, left_dir=0)
    cfg = h.write_config(tmp / "long.yaml", h.long_config())
    for i in range(trials):
        out = tmp / f"START-{i}"
        proc = h.spawn(["run", cfg, "--out", out])
        time.sleep(rng.uniform(0.05, 3.0))
        rc, _, err = h.stop(proc, signal.SIGINT)
        row.tried += 1
        lines = h.stderr_lines(err)
        started = (out / "metrics.sqlite").exists()
        one = "Traceback" not in err and bool(lines) and lines[-1].startswith("interrupted")
        one = one and (len(lines) == 1 or started)  # a started run also said "stopping after..."
        row.one_line += one
        row.wrong_code += rc != 130
        row.left_dir += out.exists() and not started
        row.survived += one and rc == 130 and (started or not out.exists())
        if not one or rc != 130:
            row.notes.append(f"#{i}: rc={rc} {lines[-1:]}")
    return row


def second_ctrl_c(trials: int, tmp: Path) -> Row:
    row = Row("second Ctrl-C stops at once", one_line=0, wrong_code=0)
    cfg = h.long_config(model__options__widths=[256])
    cfg["probes"] = [{"name": "sharpness", "every": 1, "options": {"k": 20, "tol": 1e-8}}]
    path = h.write_config(tmp / "slow.yaml", cfg)
    for i in range(trials):
        out = tmp / f"TWICE-{i}"
        proc = h.spawn(["run", path, "--out", out])
        h.wait_for_step(out, 2, proc)
        proc.send_signal(signal.SIGINT)
        proc.stderr.readline()
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
        waited = time.monotonic() - t0
        row.tried += 1
        last = h.stderr_lines(err)[-1]
        ok = "(at once)" in last and "Traceback" not in err
        row.one_line += ok
        row.wrong_code += proc.returncode != 130
        row.survived += ok and proc.returncode == 130 and load_run(out).status == "interrupted"
        row.notes.append(f"stopped {waited:.2f} s after the second Ctrl-C")
    return row


# --------------------------------------------------------------------------- concurrency
def _killed(tmp: Path, name: str, step: int = 9) -> Path:
    out = tmp / name
    cfg = h.write_config(tmp / "short.yaml", h.short_config())
    proc = h.spawn(["run", cfg, "--out", out], SGDSCOPE_KILL_AT_STEP=str(step))
    proc.communicate(timeout=300)
    return out


def concurrency(trials: int, short_ref: Path, tmp: Path) -> list[Row]:
    rows = []
    row = Row("two `resume`s at once", wrong_code=0, lost=0, duplicated=0)
    for i in range(trials):
        out = _killed(tmp, f"TWO-{i}")
        a, b = h.spawn(["resume", out]), h.spawn(["resume", out])
        res = [h.finish(p) for p in (a, b)]
        codes = sorted(r[0] for r in res)
        internal = any("internal error" in r[2] or "Traceback" in r[2] for r in res)
        same, lost, dup = _identical(out, short_ref)
        row.tried += 1
        row.wrong_code += codes not in ([0, 0], [0, 2])
        row.lost += lost
        row.duplicated += dup
        row.survived += codes in ([0, 0], [0, 2]) and not internal and same
    rows.append(row)

    row = Row("`resume` of a run being written", one_line=0, wrong_code=0)
    cfg = h.write_config(tmp / "long.yaml", h.long_config())
    for i in range(trials):
        out = tmp / f"BUSY-{i}"
        proc = h.spawn(["run", cfg, "--out", out])
        h.wait_for_step(out, 20, proc)
        second = h.run_cli(["resume", out])
        status = load_run(out).status
        h.stop(proc, signal.SIGTERM)
        lines = h.stderr_lines(second.stderr)
        named = len(lines) == 1 and f"in use by process {proc.pid}" in lines[0]
        row.tried += 1
        row.one_line += named
        row.wrong_code += second.returncode != 2
        row.survived += named and second.returncode == 2 and status == "running"
    rows.append(row)

    row = Row("two configs into one --out at once", wrong_code=0)
    for i in range(trials):
        out = tmp / f"CFG-{i}"
        paths = []
        for lr in (0.1, 0.05):
            cfg = h.short_config(optim__lr=lr)
            cfg["probes"] = [{"name": "lr"}, {"name": "grad_norm"}]
            paths.append(h.write_config(tmp / f"cfg-{lr}.yaml", cfg))
        res = [h.finish(p) for p in [h.spawn(["run", c, "--out", out]) for c in paths]]
        codes = sorted(r[0] for r in res)
        r = load_run(out)
        consistent = set(r.scalar("lr").unique()) == {r.config["optim"]["lr"]}
        row.tried += 1
        row.wrong_code += codes != [0, 2]
        row.survived += codes == [0, 2] and r.status == "finished" and consistent
    rows.append(row)

    row = Row("deleted checkpoints/ then resume", one_line=0, wrong_code=0, lost=0)
    for i in range(trials):
        out = _killed(tmp, f"NOCKPT-{i}", step=13)
        n, _ = _rows_of(out)
        shutil.rmtree(out / "checkpoints")
        p = h.run_cli(["resume", out])
        n2, _ = _rows_of(out)
        lines = h.stderr_lines(p.stderr)
        row.tried += 1
        row.one_line += len(lines) == 1 and "no checkpoint" in lines[0]
        row.wrong_code += p.returncode != 2
        row.lost += n - n2
        row.survived += p.returncode == 2 and n2 == n
    rows.append(row)
    return rows


# --------------------------------------------------------------------------- damaged files
def damaged(short_ref: Path, tmp: Path) -> list[Row]:
    from tests.reliability.test_corruption import DAMAGE

    base = _killed(tmp, "DAMAGE-base", step=13)
    row = Row("damaged newest checkpoint: falls back, identical", lost=0, duplicated=0)
    for kind, fn in DAMAGE.items():
        d = tmp / f"DAMAGE-{kind}"
        shutil.copytree(base, d)
        last = d / "checkpoints" / CHECKPOINT_NAME
        last.write_bytes(fn(last.read_bytes()))
        p = h.run_cli(["resume", d])
        same, lost, dup = _identical(d, short_ref)
        row.tried += 1
        row.lost += lost
        row.duplicated += dup
        row.survived += p.returncode == 0 and same and "Traceback" not in p.stderr
        if not same:
            row.notes.append(kind)
    rows = [row]

    row = Row("no usable checkpoint / stale temp file", one_line=0, wrong_code=0)
    d = tmp / "DAMAGE-both"
    shutil.copytree(base, d)
    for name in (CHECKPOINT_NAME, PREVIOUS_NAME):
        (d / "checkpoints" / name).write_bytes(b"junk")
    p = h.run_cli(["resume", d])
    lines = h.stderr_lines(p.stderr)
    row.tried += 1
    row.one_line += len(lines) == 1 and "no usable checkpoint" in lines[0]
    row.wrong_code += p.returncode != 2
    row.survived += p.returncode == 2 and len(lines) == 1
    d = tmp / "DAMAGE-tmpfile"
    shutil.copytree(base, d)
    junk = d / "checkpoints" / f".{CHECKPOINT_NAME}.tmp-4242"
    junk.write_bytes(b"\0" * 50_000)
    p = h.run_cli(["resume", d])
    row.tried += 1
    row.survived += p.returncode == 0 and not junk.exists() and _identical(d, short_ref)[0]
    rows.append(row)

    row = Row("garbled config.yaml / meta.yaml / store: `ls` of the others", wrong_code=0)
    folder = tmp / "LS"
    for name in ("good", "bad-config", "bad-meta", "bad-store"):
        shutil.copytree(short_ref, folder / name)
    (folder / "bad-config" / "config.yaml").write_text("optim: {lr: [0.1\n\t: :")
    (folder / "bad-meta" / "meta.yaml").write_bytes(b"\xff\xfe\x00junk")
    for f in (folder / "bad-store").glob("metrics.sqlite*"):
        f.write_bytes(random.Random(1).randbytes(4096))
    p = h.run_cli(["ls", folder])
    for name in ("bad-config", "bad-meta", "bad-store"):
        row.tried += 1
        row.wrong_code += p.returncode != 0
        row.survived += p.returncode == 0 and name in p.stdout and "good" in p.stdout
    rows.append(row)
    return rows


# --------------------------------------------------------------------------- disks
def _mount(path: Path, *opts: str) -> bool:
    return subprocess.run(["mount", *opts, str(path)], capture_output=True).returncode == 0


def disks(tmp: Path) -> list[Row]:
    rows = []
    fs = tmp / "fs"
    fs.mkdir()
    if os.geteuid() != 0 or not _mount(fs, "-t", "tmpfs", "-o", "size=320k", "tmpfs"):
        return [Row("full disk / read-only folder", notes=["skipped: needs root and tmpfs"])]
    try:
        cfg = _finite(2500)
        cfg["train"]["checkpoint_every"] = 100
        ref = run(cfg, out=tmp / "disk-ref")
        path = h.write_config(tmp / "disk.yaml", cfg)
        row = Row("full disk, then space freed and resume", one_line=0, wrong_code=0, lost=0)
        p = h.run_cli(["run", path, "--out", fs / "r"])
        lines = h.stderr_lines(p.stderr)
        row.tried = 1
        row.one_line = int(len(lines) == 1 and "no space left" in lines[0])
        row.wrong_code = int(p.returncode != 2)
        status = load_run(fs / "r").status
        _mount(fs, "-o", "remount,size=64m")
        resumed = h.run_cli(["resume", fs / "r"], timeout=600)
        same, lost, _ = _identical(fs / "r", ref)
        row.lost = lost
        row.survived = int(p.returncode == 2 and resumed.returncode == 0 and same)
        row.notes.append(f"status after the failure: {status}")
        rows.append(row)

        row = Row("read-only run directory", one_line=0, wrong_code=0)
        out = _killed(fs, "ro", step=10)
        _mount(fs, "-o", "remount,ro")
        p = h.run_cli(["resume", out])
        ls = h.run_cli(["ls", fs])
        lines = h.stderr_lines(p.stderr)
        row.tried = 1
        row.one_line = int(len(lines) == 1 and "Read-only" in lines[0])
        row.wrong_code = int(p.returncode != 2)
        row.survived = int(p.returncode == 2 and row.one_line and ls.returncode == 0)
        rows.append(row)
    finally:
        subprocess.run(["umount", "-l", str(fs)], check=False)
    return rows


# --------------------------------------------------------------------------- every component
@dataclass
class KillRow:
    component: str
    tried: int = 0
    killed: int = 0  # still running at the moment drawn (the others had finished: no kill)
    identical: int = 0
    lost: int = 0
    duplicated: int = 0
    steps: list[str] = field(default_factory=list)  # last stored step when killed
    notes: list[str] = field(default_factory=list)


def kill_component(c: ke.Component, kills: int, seed: int, tmp: Path) -> KillRow:
    """Reference run, then ``kills`` SIGKILLs at random moments, each resumed and compared."""
    row = KillRow(c.id)
    d = tmp / c.slug
    d.mkdir()
    cfg = ke.write_config(d / "config.yaml", c.config())
    ref = d / "ref"
    timing = ke.run_timed(c, cfg, ref)
    high = max(timing.last_row - timing.first_row, 0.05)
    for i in range(kills):
        delay = ke.kill_delay(seed, c.id, i, 0.0, high)
        out = d / f"killed-{i}"
        row.tried += 1
        try:
            trial = ke.kill_and_resume(c, cfg, out, delay)
        except (AssertionError, subprocess.SubprocessError) as e:
            row.notes.append(f"kill {i}: {str(e)[:150]}")
            continue
        row.killed += trial.killed
        row.steps.append(str(trial.step) if trial.killed else "finished first")
        if trial.rc != 0:
            row.notes.append(
                f"kill {i} ({trial.resumed_with}) exit {trial.rc}: {trial.stderr[-150:]}"
            )
            continue
        cmp = ke.compare_runs(out, ref)
        row.identical += cmp.identical
        row.lost += cmp.lost
        row.duplicated += cmp.duplicated
        if not cmp.identical:
            row.notes.append(f"kill {i}: {'; '.join(cmp.differences[:2])[:150]}")
        shutil.rmtree(out, ignore_errors=True)
    return row


def kill_everything(
    kills: int, seed: int, workers: int, tmp: Path, only: list[str] | None = None
) -> list[KillRow]:
    comps = [c for c in ke.all_components() if not only or c.id in only]
    with cf.ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(kill_component, c, kills, seed, tmp) for c in comps]
        rows = []
        for f in futures:
            r = f.result()
            rows.append(r)
            print(
                f"{r.component}: {r.identical}/{r.tried} identical, {r.killed} killed at steps "
                f"{r.steps}, lost {r.lost}, duplicated {r.duplicated} {'; '.join(r.notes)}",
                flush=True,
            )
    return rows


def kill_markdown(rows: list[KillRow], command: str, seconds: float) -> str:
    head = (
        "| component | N tried | N identical | rows lost | duplicated | killed at step |\n"
        "| --- | ---: | ---: | ---: | ---: | --- |\n"
    )
    body = "".join(
        f"| {r.component} | {r.tried} | {r.identical} | {r.lost} | {r.duplicated} | "
        f"{', '.join(map(str, r.steps))}{' — ' + '; '.join(r.notes)[:200] if r.notes else ''} |\n"
        for r in rows
    )
    tot = KillRow(
        "**all**",
        sum(r.tried for r in rows),
        sum(r.killed for r in rows),
        sum(r.identical for r in rows),
        sum(r.lost for r in rows),
        sum(r.duplicated for r in rows),
    )
    body += (
        f"| {tot.component} | {tot.tried} | {tot.identical} | {tot.lost} | {tot.duplicated} | |\n"
    )
    return f"`{command}` ({seconds / 60:.1f} min)\n\n{head}{body}"


# --------------------------------------------------------------------------- report
def _cell(v: int | None) -> str:
    return "-" if v is None else str(v)


def markdown(rows: list[Row], command: str, seconds: float) -> str:
    head = (
        "| case | tried | survived | clear one-line | wrong code | left a directory | "
        "rows lost | rows duplicated | notes |\n| --- | ---: | ---: | ---: | ---: | ---: | "
        "---: | ---: | --- |\n"
    )
    body = "".join(
        f"| {r.case} | {r.tried} | {r.survived} | {_cell(r.one_line)} | {_cell(r.wrong_code)} | "
        f"{_cell(r.left_dir)} | {_cell(r.lost)} | {_cell(r.duplicated)} | "
        f"{'; '.join(r.notes)[:200]} |\n"
        for r in rows
    )
    return f"`{command}` ({seconds / 60:.1f} min)\n\n{head}{body}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/reliability.md")
    ap.add_argument(
        "--kill-everything",
        type=int,
        default=0,
        metavar="N",
        help="only the sweep: N SIGKILLs at random moments per registered probe and optimizer",
    )
    ap.add_argument(
        "--components",
        default="",
        help="with --kill-everything: only these, comma-separated (probe:sharpness,variant:...)",
    )
    args = ap.parse_args()
    if args.kill_everything:
        _main_kill_everything(args)
        return
    # Started in the background, this process ignores SIGINT and its children would inherit
    # that: give them the default, as a user's foreground command has.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="sgdscope-reliability-"))
    os.environ.setdefault("SGDSCOPE_DATA", str(tmp / "data"))
    steps: list[Callable[[], list[Row]]] = []
    try:
        ref = run(_finite(), out=tmp / "ref")
        short_ref = run(h.short_config(), out=tmp / "short-ref")
        steps = [
            lambda: [bad_inputs(args.workers)],
            lambda: [signal_at_random(signal.SIGTERM, args.trials, rng, ref, tmp)],
            lambda: [signal_at_random(signal.SIGINT, args.trials, rng, ref, tmp)],
            lambda: [sigkill_at_random(args.trials, rng, ref, tmp)],
            lambda: [ctrl_c_at_start(args.trials, rng, tmp)],
            lambda: [second_ctrl_c(2, tmp)],
            lambda: concurrency(max(args.trials // 2, 2), short_ref, tmp),
            lambda: damaged(short_ref, tmp),
            lambda: disks(tmp),
        ]
        rows: list[Row] = []
        for step in steps:
            for r in step():
                rows.append(r)
                print(f"{r.case}: {r.survived}/{r.tried} {'; '.join(r.notes)[:200]}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    command = "python benchmarks/reliability.py " + " ".join(sys.argv[1:])
    text = markdown(rows, command.strip(), time.monotonic() - t0)
    args.out.write_text("# Reliability figures\n\n" + text)
    print(text)


def _main_kill_everything(args: argparse.Namespace) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ["OMP_NUM_THREADS"] = "1"  # every process one thread (the children inherit it)
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="sgdscope-kill-everything-"))
    try:
        only = [c for c in args.components.split(",") if c]
        rows = kill_everything(args.kill_everything, args.seed, args.workers, tmp, only)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    command = "python benchmarks/reliability.py " + " ".join(sys.argv[1:])
    text = kill_markdown(rows, command.strip(), time.monotonic() - t0)
    args.out.write_text("# Kill every component at a random moment\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
