"""The malformed configs and command lines a user can type: each must end with exit status 2,
one line on stderr, no traceback, and no run directory left behind.

Each case builds its command line in a fresh folder ``tmp``: ``base.yaml`` there is a valid tiny
config whose runs go under ``tmp/runs``; ``tmp/out`` is the ``--out`` used by most cases. Used by
``test_bad_inputs.py`` (in-process) and ``benchmarks/reliability.py`` (real subprocesses).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..helpers import tiny_config


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path], list[str]]
    #: a piece of the expected error line (the case fails for the reason it is meant to test)
    expect: str = ""
    #: the case only holds on a machine without CUDA
    needs_no_cuda: bool = False


def base_config(tmp: Path) -> dict[str, Any]:
    cfg = tiny_config(train__steps=2, train__epochs=None)
    cfg["store"] = {"root": str(tmp / "runs")}
    cfg["probes"] = [{"name": "grad_norm"}]
    return cfg


def _base(tmp: Path) -> Path:
    path = tmp / "base.yaml"
    if not path.exists():
        path.write_text(yaml.safe_dump(base_config(tmp), sort_keys=False))
    return path


def over(*overrides: str) -> Callable[[Path], list[str]]:
    """``sgdscope run base.yaml OVERRIDES --out tmp/out``."""
    return lambda tmp: ["run", str(_base(tmp)), *overrides, "--out", str(tmp / "out")]


def text(content: str | bytes, name: str = "c.yaml") -> Callable[[Path], list[str]]:
    """``sgdscope run FILE --out tmp/out`` with a config file holding ``content``."""

    def build(tmp: Path) -> list[str]:
        path = tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return ["run", str(path), "--out", str(tmp / "out")]

    return build


def edited(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], list[str]]:
    """A config file made from the base config by ``edit`` (for structures overrides can't)."""

    def build(tmp: Path) -> list[str]:
        cfg = copy.deepcopy(base_config(tmp))
        edit(cfg)
        path = tmp / "edited.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return ["run", str(path), "--out", str(tmp / "out")]

    return build


def argv(*args: str) -> Callable[[Path], list[str]]:
    """Any command line; ``{tmp}`` and ``{base}`` are filled in."""

    def build(tmp: Path) -> list[str]:
        base = str(_base(tmp))
        return [a.format(tmp=tmp, base=base) for a in args]

    return build


def _probes(*entries: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def edit(cfg: dict[str, Any]) -> None:
        cfg["probes"] = list(entries)

    return edit


def _with_basis(basis: dict[str, Any], *probes: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def edit(cfg: dict[str, Any]) -> None:
        cfg["eigenbasis"] = dict(basis)
        cfg["probes"] = list(probes)

    return edit


def _set(**kv: Any) -> Callable[[dict[str, Any]], None]:
    def edit(cfg: dict[str, Any]) -> None:
        cfg.update(kv)

    return edit


GOOD_HEAD = "name: x\ndata: {name: synthetic}\n"

CASES: list[Case] = [
    # --- the file itself
    Case(
        "yaml-syntax", text("optim: {lr: [0.1\n"), expect="is not valid YAML: expected ',' or ']'"
    ),
    Case("yaml-tab-indent", text("optim:\n\tlr: 0.1\n"), expect="indent with spaces, not tabs"),
    Case(
        "yaml-bad-indent",
        text("optim:\n  lr: 0.1\n momentum: 0.9\n"),
        expect="is not valid YAML: expected <block end>",
    ),
    Case(
        "yaml-unclosed-quote",
        text('name: "abc\n'),
        expect="is not valid YAML: found unexpected end of stream",
    ),
    Case(
        "non-utf8",
        text(b"name: caf\xe9\noptim: {lr: 0.1}\n"),
        expect="is not UTF-8 text (byte 0xe9 at offset 9)",
    ),
    Case("utf16-file", text("name: x\n".encode("utf-16")), expect="holds NUL bytes"),
    Case(
        "binary-file",
        text(b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256))),
        expect="holds NUL bytes",
    ),
    Case(
        "directory-as-config",
        lambda tmp: ["run", str(tmp), "--out", str(tmp / "out")],
        expect="is a directory: give a YAML file",
    ),
    Case(
        "missing-file",
        argv("run", "{tmp}/nope.yaml", "--out", "{tmp}/out"),
        expect="nope.yaml' not found",
    ),
    Case(
        "duplicate-key-top",
        text("seed: 1\nseed: 2\n"),
        expect="duplicate key 'seed' (first given on line 1) at line 2",
    ),
    Case(
        "duplicate-key-nested",
        text("optim:\n  lr: 0.1\n  lr: 0.2\n"),
        expect="duplicate key 'lr' (first given on line 2) at line 3",
    ),
    Case("top-level-list", text("- 1\n- 2\n"), expect="must hold a mapping at the top level"),
    Case("top-level-scalar", text("just text\n"), expect="must hold a mapping at the top level"),
    Case("unknown-top-key", text("epochs: 3\n"), expect="unknown config key 'epochs'"),
    Case(
        "unknown-nested-key",
        text("optim: {lrr: 0.1}\n"),
        expect="unknown config key 'optim.lrr'; did you mean 'optim.lr'?",
    ),
    Case(
        "section-is-number", text("optim: 5\n"), expect="optim: Input should be a valid dictionary"
    ),
    Case(
        "section-is-list", text("data: [1, 2]\n"), expect="data: Input should be a valid dictionary"
    ),
    Case(
        "probes-not-list",
        text("probes: {name: grad_norm}\n"),
        expect="probes: Input should be a valid list",
    ),
    Case(
        "probe-without-name", text("probes: [{every: 2}]\n"), expect="probes.0.name: Field required"
    ),
    Case(
        "probe-not-mapping",
        text("probes: [3]\n"),
        expect="probes.0: Input should be a valid dictionary",
    ),
    Case(
        "yaml-python-tag",
        text("seed: !!python/object/apply:os.system ['true']\n"),
        expect="could not determine a constructor for the tag",
    ),
    # --- recipes and command lines
    Case(
        "unknown-recipe",
        argv("run", "a-eigenvalue", "--out", "{tmp}/out"),
        expect="did you mean 'a-eigenvalues'?",
    ),
    Case(
        "recipe-is-sweep",
        argv("run", "a-peak-vs-lr", "--out", "{tmp}/out"),
        expect="is a sweep over optim.lr",
    ),
    Case(
        "unknown-variant",
        argv("run", "b-walk-sgd", "--variant", "huge", "--out", "{tmp}/out"),
        expect="has no variant 'huge'",
    ),
    Case(
        "unknown-command", argv("rn", "{base}"), expect="No such command 'rn'. Did you mean 'run'?"
    ),
    Case(
        "unknown-option",
        argv("run", "{base}", "--outt", "{tmp}/out"),
        expect="No such option: --outt",
    ),
    Case("missing-argument", argv("run"), expect="Missing argument 'config'"),
    Case(
        "resume-flag-without-out",
        argv("run", "{base}", "--resume"),
        expect="--resume needs the run directory",
    ),
    Case(
        "resume-missing-dir",
        argv("resume", "{tmp}/nope"),
        expect="is not a run directory (it does not exist)",
    ),
    Case(
        "resume-not-a-run",
        argv("resume", "{tmp}"),
        expect="is not a run directory (it has no metrics.sqlite)",
    ),
    Case("show-missing", argv("show", "{tmp}/nope"), expect="is not a run directory"),
    Case("ls-missing", argv("ls", "{tmp}/nope"), expect="is not a directory"),
    Case(
        "device-option-bad",
        argv("run", "{base}", "--device", "gpu", "--out", "{tmp}/out"),
        expect="device: Value error, must be auto, cpu, cuda, cuda:N or mps (got 'gpu')",
    ),
    Case(
        "device-option-cuda-absent",
        argv("run", "{base}", "--device", "cuda:0", "--out", "{tmp}/out"),
        needs_no_cuda=True,
        expect="CUDA is not available here",
    ),
    # --- overrides: syntax
    Case("override-no-equals", over("optim.lr"), expect="must look like key=value"),
    Case("override-empty-key", over("=3"), expect="has an empty key"),
    Case("override-not-a-section", over("optim.lr.x=3"), expect="'optim.lr' is not a section"),
    Case(
        "override-list-index-out-of-range",
        over("probes.7.every=3"),
        expect="'probes.7' is not an index of a 1-item list",
    ),
    Case(
        "override-list-index-not-number",
        over("probes.x.every=3"),
        expect="'probes.x' is not an index",
    ),
    Case(
        "override-section-replaced",
        over("train=5"),
        expect="train: Input should be a valid dictionary",
    ),
    # --- top-level values
    Case(
        "seed-negative", over("seed=-1"), expect="seed: Input should be greater than or equal to 0"
    ),
    Case("seed-2**70-text", over("seed=2**70"), expect="seed: Input should be a valid integer"),
    Case(
        "seed-2**70-number",
        over(f"seed={2**70}"),
        expect="seed: Input should be less than 9223372036854775808",
    ),
    Case("seed-float", over("seed=1.5"), expect="seed: Input should be a valid integer"),
    Case("seed-text", over("seed=abc"), expect="seed: Input should be a valid integer"),
    Case("device-gpu", over("device=gpu"), expect="(got 'gpu')"),
    Case("device-cuda-x", over("device=cuda:x"), expect="(got 'cuda:x')"),
    Case(
        "device-cuda-absent",
        over("device=cuda"),
        needs_no_cuda=True,
        expect="CUDA is not available here",
    ),
    Case("name-list", over("name=[1, 2]"), expect="name: Input should be a valid string"),
    # --- optimizer
    Case("lr-text", over("optim.lr=abc"), expect="optim.lr: Input should be a valid number"),
    Case("lr-negative", over("optim.lr=-1"), expect="optim.lr: Input should be greater than 0"),
    Case("lr-zero", over("optim.lr=0"), expect="optim.lr: Input should be greater than 0"),
    Case(
        "lr-nan", over("optim.lr=.nan"), expect="optim.lr: Input should be greater than 0 (got nan)"
    ),
    Case(
        "momentum-1.5",
        over("optim.momentum=1.5"),
        expect="optim.momentum: Input should be less than 1",
    ),
    Case(
        "weight-decay-negative",
        over("optim.weight_decay=-0.1"),
        expect="optim.weight_decay: Input should be greater than or equal to 0",
    ),
    Case(
        "nesterov-without-momentum",
        over("optim.nesterov=true"),
        expect="nesterov=True needs momentum > 0",
    ),
    Case("optimizer-unknown", over("optim.name=lbfgs"), expect="unknown optimizer 'lbfgs'"),
    Case("optimizer-typo", over("optim.name=nsdg"), expect="did you mean 'nsgd'?"),
    Case(
        "optimizer-option-unknown",
        over("optim.options.foo=1"),
        expect="optim.options.foo: unknown option for optimizer 'sgd'",
    ),
    Case(
        "nsgd-option-type",
        over("optim.name=nsgd", "optim.options.gamma=abc"),
        expect="optim.options.gamma='abc': expected a number or null",
    ),
    Case(
        "nsgd-k-too-large",
        over(
            "optim.name=nsgd", "optim.options.gamma=0.1", "optim.options.k=100000", "eigenbasis.k=5"
        ),
        expect="optim.options.k=100000 for 'nsgd' but eigenbasis.k=5",
    ),
    Case(
        "nsgd-without-eigenbasis",
        over("optim.name=nsgd", "optim.options.gamma=0.1"),
        expect="add an `eigenbasis:` section",
    ),
    # --- schedule
    Case("schedule-step-alias", over("schedule.name=step"), expect="did you mean 'step_decay'?"),
    Case(
        "schedule-unknown",
        over("schedule.name=cosine"),
        expect="unknown schedule (available: constant, cyclical, step_decay, trapezoid)",
    ),
    Case(
        "schedule-option-unknown",
        over("schedule.options.foo=1"),
        expect="schedule.options.foo: unknown option",
    ),
    Case(
        "schedule-epochs-text",
        over("schedule.name=step_decay", "schedule.options.epochs=abc"),
        expect="schedule.options.epochs='abc': expected a list of numbers",
    ),
    Case(
        "schedule-factor-text",
        over("schedule.name=step_decay", "schedule.options.factor=x"),
        expect="schedule.options.factor='x': expected a number",
    ),
    Case(
        "schedule-cyclical-max-lr-text",
        over("schedule.name=cyclical", "schedule.options.max_lr=x"),
        expect="schedule.options.max_lr='x': expected a number or null",
    ),
    # --- training
    Case(
        "epochs-zero",
        over("train.epochs=0"),
        expect="train.epochs: Input should be greater than or equal to 1",
    ),
    Case(
        "steps-negative",
        over("train.steps=-5"),
        expect="train.steps: Input should be greater than or equal to 1",
    ),
    Case(
        "steps-text",
        over("train.steps=many"),
        expect="train.steps: Input should be a valid integer",
    ),
    Case(
        "batch-size-zero",
        over("train.batch_size=0"),
        expect="must be a positive integer or 'full' (got 0)",
    ),
    Case(
        "batch-size-text",
        over("train.batch_size=abc"),
        expect="must be a positive integer or 'full' (got 'abc')",
    ),
    Case(
        "batch-size-float",
        over("train.batch_size=3.5"),
        expect="must be a positive integer or 'full' (got 3.5)",
    ),
    Case(
        "batch-size-too-large",
        over("train.batch_size=100000"),
        expect="train.batch_size=100000: larger than the 256 training examples",
    ),
    Case(
        "eval-splits-unknown",
        over("train.eval_splits=[foo]"),
        expect="train.eval_splits.0: Input should be 'train', 'val' or 'test'",
    ),
    Case(
        "eval-every-negative",
        over("train.eval_every=-1"),
        expect="train.eval_every: Input should be greater than or equal to 0",
    ),
    Case(
        "eval-batch-size-zero",
        over("train.eval_batch_size=0"),
        expect="train.eval_batch_size: Input should be greater than or equal to 1",
    ),
    Case(
        "checkpoint-every-negative",
        over("train.checkpoint_every=-1"),
        expect="train.checkpoint_every: Input should be greater than or equal to 0",
    ),
    Case(
        "grad-chunk-zero",
        over("train.grad_chunk_size=0"),
        expect="train.grad_chunk_size: Input should be greater than or equal to 1",
    ),
    # --- model
    Case(
        "model-unknown",
        over("model.name=resnet"),
        expect="unknown model 'resnet'; did you mean 'resnet56'?",
    ),
    Case(
        "model-widths-text",
        over("model.options.widths=abc"),
        expect="model.options.widths='abc': expected a list of integers",
    ),
    Case(
        "model-widths-zero",
        over("model.options.widths=[0]"),
        expect="parameter '1.weight' has shape (0, 12) (no weights)",
    ),
    Case(
        "model-widths-negative",
        over("model.options.widths=[-3]"),
        expect="Trying to create tensor with negative dimension -3",
    ),
    Case(
        "model-widths-float",
        over("model.options.widths=[16.5]"),
        expect="model.options.widths=[16.5]: expected a list of integers",
    ),
    Case(
        "model-activation-unknown",
        over("model.options.activation=swish2"),
        expect="model.options.activation='swish2': must be one of",
    ),
    Case(
        "model-batchnorm-text",
        over("model.options.batchnorm=maybe"),
        expect="model.options.batchnorm='maybe': expected true or false",
    ),
    Case(
        "model-option-unknown",
        over("model.options.depth=3"),
        expect="model.options.depth: unknown option for model 'mlp'",
    ),
    Case(
        "model-dtype-float16",
        over("model.dtype=float16"),
        expect="model.dtype: Input should be 'float32' or 'float64'",
    ),
    # --- data
    Case(
        "dataset-unknown",
        over("data.name=imagenet"),
        expect="unknown dataset 'imagenet'; did you mean 'tinyimagenet'?",
    ),
    Case(
        "dataset-option-of-another",
        over("data.name=cifar10"),
        expect="data.options.num_samples: unknown option for dataset 'cifar10'",
    ),
    Case(
        "dataset-missing-cifar10",
        over("data.name=cifar10", "data.options={}"),
        expect="dataset 'cifar10': files not found",
    ),
    Case(
        "dataset-missing-mnist",
        over("data.name=mnist", "data.options={}"),
        expect="dataset 'mnist': files not found",
    ),
    Case(
        "dataset-missing-ptb",
        over("data.name=ptb", "data.options={}"),
        expect="dataset 'ptb': files not found",
    ),
    Case(
        "val-fraction-1.5",
        over("data.val_fraction=1.5"),
        expect="data.val_fraction: Input should be less than 1",
    ),
    Case(
        "subset-zero",
        over("data.subset=0"),
        expect="data.subset: Input should be greater than or equal to 1",
    ),
    Case(
        "subset-too-large",
        over("data.subset=100000"),
        expect="data.subset=100000: must be between 1 and the 256 training examples",
    ),
    Case(
        "probe-size-zero",
        over("data.probe_size=0"),
        expect="data.probe_size: Input should be greater than or equal to 1",
    ),
    Case(
        "probe-size-too-large",
        over("data.probe_size=100000"),
        expect="data.probe_size=100000: must be between 1 and the train size 256",
    ),
    Case(
        "probe-fraction-zero",
        over("data.probe_fraction=0"),
        expect="data.probe_fraction: Input should be greater than 0",
    ),
    Case(
        "data-option-unknown",
        over("data.options.nope=1"),
        expect="data.options.nope: unknown option for dataset 'synthetic'",
    ),
    Case(
        "data-option-type",
        over("data.options.num_classes=abc"),
        expect="data.options.num_classes='abc': expected an integer",
    ),
    # --- probes
    Case(
        "probe-unknown",
        over("probes.0.name=sharpnes"),
        expect="unknown probe 'sharpnes'; did you mean 'sharpness'?",
    ),
    Case(
        "probe-every-zero",
        over("probes.0.every=0"),
        expect="probes.0.every: Input should be greater than or equal to 1",
    ),
    Case(
        "probe-option-unknown",
        over("probes.0.options.nope=1"),
        expect="unknown option for probe 'grad_norm'",
    ),
    Case(
        "eigenbasis-k-too-large",
        edited(_with_basis({"k": 100000}, {"name": "sharpness"})),
        expect="k=100000 eigen-directions but the model has only 276 trainable parameters",
    ),
    Case(
        "eigenbasis-k-zero",
        edited(_with_basis({"k": 0}, {"name": "sharpness"})),
        expect="eigenbasis.k: Input should be greater than or equal to 1",
    ),
    Case(
        "eigenbasis-k-text",
        edited(_with_basis({"k": "ten"}, {"name": "sharpness"})),
        expect="eigenbasis.k: Input should be a valid integer",
    ),
    Case(
        "sharpness-without-eigenbasis",
        edited(_probes({"name": "sharpness"})),
        expect="probe 'sharpness' reads the top Hessian eigenvectors: give the run an eigenbasis",
    ),
    Case(
        "eigenbasis-option-typo",
        edited(_with_basis({"k": 3, "evry": 5}, {"name": "sharpness"})),
        expect="unknown config key 'eigenbasis.evry'; did you mean 'eigenbasis.every'?",
    ),
    Case(
        "consumer-bn-mismatch",
        edited(
            _with_basis({"k": 3}, {"name": "alignment", "options": {"k": 3, "bn_mode": "train"}})
        ),
        expect="but its eigenbasis was computed with bn_mode='eval'",
    ),
    Case(
        "probe-never-due-steps",
        edited(_probes({"name": "grad_norm", "steps": [100000]})),
        expect="probes.0 (grad_norm) is never due in this run's 2 steps",
    ),
    Case(
        "probe-never-due-epochs",
        edited(_probes({"name": "grad_norm", "epochs": [50]})),
        expect="probes.0 (grad_norm) is never due in this run's 2 steps",
    ),
    Case(
        "probe-epochs-text",
        edited(_probes({"name": "grad_norm", "epochs": "first"})),
        expect="probes.0.epochs: Input should be a valid list",
    ),
    # --- where the run would go
    Case(
        "out-is-a-file",
        lambda tmp: _file_out(tmp, "out"),
        expect="is an existing file, not a directory",
    ),
    Case(
        "out-below-a-file",
        lambda tmp: _file_out(tmp, "out/run"),
        expect="is a file, not a directory",
    ),
    Case(
        "out-holds-a-run",
        lambda tmp: _existing_run(tmp),
        expect="already holds a run: pass --resume",
    ),
    Case(
        "store-root-is-a-file",
        lambda tmp: _store_root_file(tmp),
        expect="a part of the path is a file, not a folder",
    ),
]


def _file_out(tmp: Path, out: str) -> list[str]:
    (tmp / "out").write_text("not a folder")
    return ["run", str(_base(tmp)), "--out", str(tmp / out)]


def _existing_run(tmp: Path) -> list[str]:
    """A finished run's directory given as --out (made without training: a bare store)."""
    from sgdscope.store import MetricsStore

    d = tmp / "out"
    d.mkdir()
    MetricsStore(d / "metrics.sqlite").close()
    return ["run", str(_base(tmp)), "--out", str(d)]


def _store_root_file(tmp: Path) -> list[str]:
    (tmp / "runs").write_text("not a folder")
    return ["run", str(_base(tmp))]
