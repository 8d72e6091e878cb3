"""The Slurm executor: submitit's local executor runs the real code path (minus sbatch); a fake
``sbatch`` on PATH captures the submission scripts for checking their parameters."""

import json
import os
import signal
import stat

import pytest

from sgdscope.errors import InvalidArgumentError, SgdscopeError
from sgdscope.sweep import run_sweep
from sgdscope.sweep.point import RunTask, read_attempts

from ..helpers import tiny_config
from .sweep_cases import (
    GRID4,
    assert_same_runs,
    kill,
    long_config,
    running_pid,
    sweep_in_thread,
    wait_for,
)

submitit = pytest.importorskip("submitit")
from sgdscope.sweep.slurm_executor import SlurmExecutor, parse_time  # noqa: E402


def test_same_sweep_same_results_as_local(tmp_path):
    cfg = tiny_config(train__steps=6)
    ex = SlurmExecutor(cluster="local", workers=2)
    a = run_sweep(cfg, GRID4, tmp_path / "slurm", executor=ex)
    # serial: the local executor's own code path in this process (test_sweep checks that
    # workers=2 gives the same numbers), without spawning two more interpreters here.
    b = run_sweep(cfg, GRID4, tmp_path / "local", executor="serial")
    assert_same_runs(a, b)
    # submitit's files (pickles, logs) live under the sweep, beside the runs.
    assert list((a / "logs" / "slurm").glob("*/*_log.out"))


@pytest.mark.slow
def test_preempted_job_is_requeued_and_resumes(tmp_path):
    cfg = long_config(steps=3000)
    ref = run_sweep(cfg, None, tmp_path / "ref", executor="serial")
    out = tmp_path / "slurm"
    t, done = sweep_in_thread(cfg, None, out, executor=SlurmExecutor(cluster="local"))
    try:
        pid = wait_for(lambda: running_pid(out, "run", 200, 100), "the run to pass step 200")
        # What Slurm sends before the time limit or on preemption (--signal=USR2@90); submitit's
        # handler checkpoints the job and requeues it.
        kill(pid, signal.SIGUSR2)
    finally:
        t.join(300)
    assert done["path"] == out
    recs = read_attempts(out, "run")
    logs = "".join(p.read_text() for p in (out / "logs" / "slurm").glob("*/*_log.*"))
    assert [r["attempt"] for r in recs] == [1, 2], logs
    assert recs[1]["from_step"] >= 100
    assert "Caught signal SIGUSR2" in logs
    assert "Requeued job" in logs
    assert_same_runs(ref, out)


@pytest.mark.slow
def test_killed_job_is_submitted_again_and_resumes(tmp_path):
    cfg = long_config(steps=3000)
    ref = run_sweep(cfg, None, tmp_path / "ref", executor="serial")
    out = tmp_path / "slurm"
    t, done = sweep_in_thread(cfg, None, out, executor=SlurmExecutor(cluster="local"))
    try:
        pid = wait_for(lambda: running_pid(out, "run", 200, 100), "the run to pass step 200")
        kill(pid, signal.SIGKILL)  # as the OOM killer or a dying node would
    finally:
        t.join(300)
    assert done["path"] == out
    recs = read_attempts(out, "run")
    assert [r["attempt"] for r in recs] == [1, 2]
    assert recs[1]["from_step"] >= 100
    assert_same_runs(ref, out)


# ----------------------------------------------------------------- the sbatch script


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """``sbatch``, ``srun``, ``sacct`` and ``scancel`` stand-ins on PATH. sbatch keeps each
    script it is given and answers with job id 4242, 4243, ...; sacct reports the state written
    in ``state`` for every job."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    captured = tmp_path / "scripts"
    captured.mkdir()
    state = tmp_path / "state"
    state.write_text("RUNNING")
    scripts = {
        "sbatch": f"""#!/bin/sh
n=$(ls {captured} | wc -l)
cp "$1" {captured}/$n.sh
echo "Submitted batch job $((4242 + n))"
""",
        "srun": "#!/bin/sh\nexit 0\n",
        "sacct": f"""#!/bin/sh
echo "JobID|State|NodeList"
for id in 4242 4242_0 4242_1 4242_2; do echo "$id|$(cat {state})|node1"; done
""",
        # The queue: the job ids listed in ``queue`` (none until a test writes some).
        "squeue": f"""#!/bin/sh
echo "$@" > {tmp_path}/squeue-args
cat {tmp_path}/queue 2>/dev/null
exit 0
""",
        "scancel": f'#!/bin/sh\necho "$@" >> {tmp_path}/cancelled\n',
    }
    for name, text in scripts.items():
        p = bin_dir / name
        p.write_text(text)
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    submitit.SlurmJob.watcher.clear()
    yield captured, state
    submitit.SlurmJob.watcher.clear()


def _tasks(tmp_path, n):
    return [
        RunTask(
            name=f"lr={i}",
            base=tiny_config(),
            overrides=[f"optim.lr={0.1 * (i + 1)}"],
            run_dir=str(tmp_path / "sw" / "runs" / f"lr={i}"),
            sweep_dir=str(tmp_path / "sw"),
        )
        for i in range(n)
    ]


def test_sbatch_parameters_of_a_job_array(tmp_path, fake_slurm):
    captured, _ = fake_slurm
    ex = SlurmExecutor(
        partition="gpu",
        time="2:30:00",
        cpus_per_run=4,
        gpus_per_run=1,
        mem_gb=32,
        workers=2,
        sbatch={"account": "proj", "qos": "high"},
        setup=["module load cuda"],
    )
    jobs = ex.submit(_tasks(tmp_path, 3), tmp_path / "sw" / "logs")
    assert [j.job_id for j in jobs] == ["4242_0", "4242_1", "4242_2"]
    (script,) = captured.iterdir()
    text = script.read_text()
    lines = set(text.splitlines())
    for flag in (
        "--partition=gpu",
        "--time=150",
        "--cpus-per-task=4",
        "--gpus-per-node=1",
        "--mem=32GB",
        "--array=0-2%2",
        "--signal=USR2@90",
        "--requeue",
        "--account=proj",
        "--qos=high",
        "--job-name=sgdscope-sw",
        "--nodes=1",
        "--ntasks-per-node=1",
    ):
        assert f"#SBATCH {flag}" in lines, (flag, text)
    assert "module load cuda" in lines
    assert "-m submitit.core._submit" in text
    records = json.loads((tmp_path / "sw" / "logs" / "slurm" / "jobs.json").read_text())
    assert records["lr=1"] == {"job_id": "4242_1", "cluster": "slurm"}


def test_one_job_per_run_without_array(tmp_path, fake_slurm):
    captured, _ = fake_slurm
    jobs = SlurmExecutor(array=False).submit(_tasks(tmp_path, 2), tmp_path / "sw" / "logs")
    assert [j.job_id for j in jobs] == ["4242", "4243"]
    texts = [p.read_text() for p in sorted(captured.iterdir())]
    assert len(texts) == 2
    assert not any("--array" in t for t in texts)
    assert all("#SBATCH --time=60" in t for t in texts)  # the 1-hour default


def test_rerun_reattaches_to_queued_jobs_instead_of_resubmitting(tmp_path, fake_slurm):
    captured, _ = fake_slurm
    tasks = _tasks(tmp_path, 2)
    workdir = tmp_path / "sw" / "logs"
    ex = SlurmExecutor(poll_s=0.05)
    jobs = ex.submit(tasks, workdir)  # a first driver, then killed
    assert len(list(captured.iterdir())) == 1
    # A second driver of the same sweep finds the jobs still in the queue and waits for them.
    queue = tmp_path / "queue"
    queue.write_text("4242_0\n4242_1\n4242_7\n")  # 4242_7: another sweep's job
    attached = ex._still_queued(workdir, tasks)
    assert sorted(attached) == ["lr=0", "lr=1"]
    args = (tmp_path / "squeue-args").read_text().split()
    assert args[args.index("--name") + 1] == "sgdscope-sw" and "--array" in args
    for job, t in zip(jobs, tasks, strict=True):  # the jobs end with their results
        with submitit.core.utils.temporary_save_path(job.paths.result_pickle) as tmp:
            submitit.core.utils.cloudpickle_dump(("success", {"name": t.name, "ok": 1}), tmp)
    outcomes = list(ex.run(tasks, workdir))
    assert sorted(o.result["name"] for o in outcomes) == ["lr=0", "lr=1"]
    assert len(list(captured.iterdir())) == 1  # nothing resubmitted
    # Jobs no longer queued are not re-attached: the next driver submits anew.
    queue.write_text("")
    assert ex._still_queued(workdir, tasks) == {}


def test_rerun_refuses_when_the_queue_cannot_be_read(tmp_path, fake_slurm):
    tasks = _tasks(tmp_path, 1)
    workdir = tmp_path / "sw" / "logs"
    SlurmExecutor().submit(tasks, workdir)
    squeue = tmp_path / "bin" / "squeue"
    squeue.write_text("#!/bin/sh\necho 'slurm_load_jobs error: Socket timed out' >&2\nexit 1\n")
    with pytest.raises(SgdscopeError, match=r"cannot list the Slurm queue .*Socket timed out"):
        list(SlurmExecutor().run(tasks, workdir))


def test_no_slurm_here_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    with pytest.raises(SgdscopeError, match="no Slurm found"):
        SlurmExecutor().submit(_tasks(tmp_path, 1), tmp_path / "logs")


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("90", 90), ("30:30", 31), ("2:30:00", 150), ("1-0", 1440), ("1-02:03", 1563), (15, 15)],
)
def test_parse_time(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize(
    "kwargs",
    [{"time": "soon"}, {"time": "0"}, {"gpus_per_run": 0.5}, {"cpus_per_run": 0}, {"workers": 0}],
)
def test_bad_options_refused(kwargs):
    with pytest.raises(InvalidArgumentError):
        SlurmExecutor(**kwargs)
