"""Sweeps on Slurm through submitit (``pip install "sgdscope[slurm]"``).

Each run is one Slurm job, or one element of a job array. A job that reaches its time limit or is
preempted is requeued and resumes the run from its last checkpoint: Slurm sends USR2 before the
limit (``--signal=USR2@90``), submitit's handler calls :meth:`_PointJob.checkpoint`, which hands
back the same point (its progress is in the run's own checkpoints), and requeues the job. Jobs
are also submitted with ``--requeue``, so a preemption that requeues by itself resumes the same
way.

The driver waits for the jobs and writes the summary. Interrupted (Ctrl-C, SIGTERM) it cancels
the jobs it is waiting for; killed outright, its jobs go on, and a re-run of the same sweep
re-attaches to the jobs still queued or running instead of submitting a second writer for the
same run.
"""

from __future__ import annotations

import getpass
import json
import math
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, SgdscopeError
from .executors import Outcome
from .point import RunTask, execute_point, set_threads

_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_time(value: str | int | float) -> int:
    """A Slurm time limit in whole minutes (rounded up).

    Accepts minutes (``90``), ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM`` and
    ``D-HH:MM:SS``, as ``sbatch --time`` does.
    """
    if isinstance(value, (int, float)):
        minutes = float(value)
    else:
        m = _TIME.match(value.strip())
        if not m:
            raise InvalidArgumentError(
                f"--time: expected minutes or [D-]HH:MM:SS as sbatch takes it, got {value!r}"
            )
        days, a, b, c = m.groups()
        parts = [int(x) for x in (a, b, c) if x is not None]
        if days is not None:  # D-H, D-H:M, D-H:M:S
            h, mi, s = [*parts, 0, 0][:3]
            minutes = int(days) * 1440 + h * 60 + mi + s / 60
        elif len(parts) == 1:
            minutes = parts[0]
        elif len(parts) == 2:  # M:S
            minutes = parts[0] + parts[1] / 60
        else:
            minutes = parts[0] * 60 + parts[1] + parts[2] / 60
    if minutes <= 0:
        raise InvalidArgumentError(f"--time must be positive, got {value!r}")
    return math.ceil(minutes)


def _import_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise SgdscopeError(
            'the slurm executor needs submitit: pip install "sgdscope[slurm]"'
        ) from None
    return submitit


@dataclass
class _PointJob:
    """The callable a Slurm job runs: one sweep point. Checkpointable for submitit."""

    task: RunTask
    threads: int

    def __call__(self) -> dict[str, Any]:
        set_threads(self.threads)
        return execute_point(self.task)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue the same point: its progress lives in the run's checkpoints, which the
        requeued job resumes from. Called by submitit's USR2 handler (time limit, preemption)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def _job_name(tasks: Sequence[RunTask]) -> str:
    return f"sgdscope-{Path(tasks[0].sweep_dir).name}" if tasks else "sgdscope"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}".strip()


class SlurmExecutor:
    """Run each point as a Slurm job (or an element of one job array) through submitit.

    Args:
        partition: the Slurm partition (``--partition``); None: the cluster's default.
        time: the time limit of one job, in minutes or ``[D-]HH:MM:SS``. A run longer than that
            goes on in a requeued job from its last checkpoint.
        cpus_per_run: ``--cpus-per-task``; also the run's torch threads.
        gpus_per_run: ``--gpus-per-node`` (whole GPUs).
        mem_gb: memory per job in GB (``--mem``); None: the partition's default.
        array: submit one job array (True) or one job per run.
        workers: at most this many runs at once (the array's ``%`` limit).
        max_retries: how many time limits a run may hit (each followed by a requeue), and how
            often a job that died without a result (killed, out of memory, node failure) is
            submitted again, before the run is given up. Preemptions do not count. Either way
            the run resumes from its last checkpoint.
        sbatch: more ``#SBATCH`` options, e.g. ``{"account": "proj", "qos": "high",
            "constraint": "a100"}``.
        setup: shell lines run in the job before Python (``module load ...``, ``source
            venv/bin/activate``).
        cluster: ``slurm``, or ``local`` to run the same code path in local processes with
            submitit's local executor (tests, trying a sweep on a laptop).
        poll_s: seconds between looks at the jobs' states.
    """

    def __init__(
        self,
        *,
        partition: str | None = None,
        time: str | int = "1:00:00",
        cpus_per_run: float = 1,
        gpus_per_run: float = 0,
        mem_gb: float | None = None,
        array: bool = True,
        workers: int | None = None,
        max_retries: int = 3,
        sbatch: dict[str, Any] | None = None,
        setup: list[str] | None = None,
        cluster: str = "slurm",
        poll_s: float | None = None,
    ) -> None:
        if cluster not in ("slurm", "local"):
            raise InvalidArgumentError(f"cluster must be 'slurm' or 'local', got {cluster!r}")
        for name, v in (("cpus-per-run", cpus_per_run), ("gpus-per-run", gpus_per_run)):
            if v != int(v) or v < 0:
                raise InvalidArgumentError(
                    f"--{name}: Slurm reserves whole CPUs and GPUs, got {v}; pass an integer "
                    "(fractions are for --executor ray)"
                )
        if cpus_per_run < 1:
            raise InvalidArgumentError(f"--cpus-per-run must be >= 1, got {cpus_per_run}")
        if workers is not None and workers < 1:
            raise InvalidArgumentError(f"--workers must be >= 1, got {workers}")
        if max_retries < 0:
            raise InvalidArgumentError(f"--max-retries must be >= 0, got {max_retries}")
        self.partition = partition
        self.time_min = parse_time(time)
        self.cpus = int(cpus_per_run)
        self.gpus = int(gpus_per_run)
        self.mem_gb = mem_gb
        self.array = array
        self.workers = workers
        self.max_retries = int(max_retries)
        self.sbatch = dict(sbatch or {})
        self.setup = list(setup or [])
        self.cluster = cluster
        self.poll_s = poll_s if poll_s is not None else (0.1 if cluster == "local" else 10.0)

    # ----------------------------------------------------------------- submission
    def executor(self, folder: Path, job_name: str) -> Any:
        """The configured ``submitit.AutoExecutor`` writing into ``folder``."""
        submitit = _import_submitit()
        try:
            ex = submitit.AutoExecutor(
                folder=folder / "%j",
                cluster=self.cluster,
                slurm_max_num_timeout=self.max_retries,
                local_max_num_timeout=self.max_retries,
            )
        except RuntimeError as e:  # submitit: 'Could not detect "srun"'
            raise SgdscopeError(
                f"no Slurm found on this machine ({_first_line(e)}): run the sweep from a Slurm "
                "login node, or choose --executor local or ray"
            ) from e
        params: dict[str, Any] = {
            "name": job_name,
            "timeout_min": self.time_min,
            "cpus_per_task": self.cpus,
            "gpus_per_node": self.gpus,
            "tasks_per_node": 1,
            "nodes": 1,
        }
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        if self.cluster == "slurm":
            params["slurm_additional_parameters"] = {"requeue": True, **self.sbatch}
            if self.partition:
                params["slurm_partition"] = self.partition
            if self.setup:
                params["slurm_setup"] = self.setup
            if self.workers:
                params["slurm_array_parallelism"] = self.workers
        ex.update_parameters(**params)
        return ex

    def submit(self, tasks: Sequence[RunTask], workdir: Path) -> list[Any]:
        """Submit ``tasks`` (all at once: one array, or one job each); return submitit jobs."""
        ex = self.executor(workdir / "slurm", _job_name(tasks))
        calls = [_PointJob(t, self.cpus) for t in tasks]
        if self.array and self.cluster == "slurm" and len(calls) > 1:
            with ex.batch():
                jobs = [ex.submit(c) for c in calls]
        else:
            jobs = [ex.submit(c) for c in calls]
        self._record(workdir, {t.name: j.job_id for t, j in zip(tasks, jobs, strict=True)})
        return jobs

    # ----------------------------------------------------------------- re-attaching
    @staticmethod
    def _records_file(workdir: Path) -> Path:
        return workdir / "slurm" / "jobs.json"

    def _record(self, workdir: Path, ids: dict[str, str]) -> None:
        path = self._records_file(workdir)
        path.parent.mkdir(parents=True, exist_ok=True)
        old = json.loads(path.read_text()) if path.exists() else {}
        old.update({k: {"job_id": v, "cluster": self.cluster} for k, v in ids.items()})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(old, indent=1))
        tmp.replace(path)

    def _still_queued(self, workdir: Path, tasks: Sequence[RunTask]) -> dict[str, Any]:
        """Jobs of an earlier driver of this sweep that are still queued or running.

        Asks ``squeue`` (which works without Slurm accounting, unlike ``sacct``) for the user's
        jobs with this sweep's job name, one line per array element.
        """
        path = self._records_file(workdir)
        if self.cluster != "slurm" or not path.exists():
            return {}
        records = json.loads(path.read_text())
        wanted = {
            t.name: rec["job_id"]
            for t in tasks
            if (rec := records.get(t.name)) and rec.get("cluster") == "slurm"
        }
        if not wanted:
            return {}
        cmd = ["squeue", "--noheader", "--array", "--user", getpass.getuser(), "--format", "%i"]
        cmd += ["--name", _job_name(tasks)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            proc = None
            why = _first_line(e)
        if proc is None or proc.returncode != 0:
            why = why if proc is None else proc.stderr.strip() or f"exit {proc.returncode}"
            raise SgdscopeError(
                f"cannot list the Slurm queue ({why}) to re-attach to this sweep's jobs; "
                f"retry when squeue answers, or delete {path} to submit every unfinished run again"
            )
        active = set(proc.stdout.split())
        submitit = _import_submitit()
        return {
            name: submitit.SlurmJob(folder=workdir / "slurm" / "%j", job_id=job_id)
            for name, job_id in wanted.items()
            if job_id in active
        }

    # ----------------------------------------------------------------- runs
    def run(self, tasks: Sequence[RunTask], workdir: Path) -> Iterator[Outcome]:
        tasks = list(tasks)
        if not tasks:
            return
        attached = self._still_queued(workdir, tasks)
        waiting: dict[Any, int] = {}
        for i, t in enumerate(tasks):
            if t.name in attached:
                waiting[attached[t.name]] = i
        fresh = [(i, t) for i, t in enumerate(tasks) if t.name not in attached]
        # An array (or a real cluster's queue) throttles itself; local jobs are throttled here.
        limit = (
            self.workers
            if self.workers and (self.cluster == "local" or not self.array)
            else len(tasks)
        )
        died: dict[int, int] = {}
        clean = False
        try:
            while fresh or waiting:
                room = max(0, limit - len(waiting))
                if fresh and room:
                    batch, fresh = fresh[:room], fresh[room:]
                    for (i, _), job in zip(
                        batch, self.submit([t for _, t in batch], workdir), strict=True
                    ):
                        waiting[job] = i
                done = [j for j in waiting if j.done()]
                for job in done:
                    i = waiting.pop(job)
                    try:
                        result = job.result()
                    except Exception as e:
                        # execute_point never raises: no result means the job itself died
                        # (killed, out of memory, node failure). Submit it again; it resumes.
                        if died.get(i, 0) < self.max_retries:
                            died[i] = died.get(i, 0) + 1
                            (again,) = self.submit([tasks[i]], workdir)
                            waiting[again] = i
                            continue
                        result = None
                        error = (
                            f"its Slurm job died {died.get(i, 0) + 1} times; the last, "
                            f"{job.job_id}, ended without a result ({_first_line(e)}); its log: "
                            f"{job.paths.stderr}"
                        )
                    yield Outcome(i, result) if result is not None else Outcome(i, error=error)
                if not done:
                    time.sleep(self.poll_s)
            clean = True
        finally:
            if not clean:
                for job in waiting:
                    try:
                        job.cancel(check=False)
                    except Exception:  # already gone
                        pass
