"""SgdscopeCallback in a real ``lightning.Trainer`` (CPU, tiny float64 models, a few steps): the
keys logged at the steps they belong to, the very numbers a plain loop's ProbeSet measures, an
exact resume from a Lightning checkpoint, gradient accumulation, LR schedulers, an untouched
training run, and clear refusals."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import sgdscope as ss
from sgdscope.errors import InvalidArgumentError
from sgdscope.store import MetricsStore

L = pytest.importorskip("lightning")
from lightning.pytorch.loggers import CSVLogger  # noqa: E402

from sgdscope.integrations.lightning import SgdscopeCallback  # noqa: E402

# Lightning's advice for real runs (workers, logging interval, tips) is noise on 6-batch tests.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers.*"),
    pytest.mark.filterwarnings("ignore:.*smaller than the logging interval.*"),
    pytest.mark.filterwarnings("ignore:.*treespec, LeafSpec.*"),
    pytest.mark.filterwarnings("ignore:.*Checkpoint directory .* exists and is not empty.*"),
]

N, D, C, B = 96, 6, 3, 16  # examples, inputs, classes, batch size: 6 steps per epoch
STEPS_PER_EPOCH = N // B


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (N,), generator=g)
    return x, y


def _net(dropout: float = 0.0, bn: bool = True) -> nn.Module:
    torch.manual_seed(1)
    layers = [nn.Linear(D, 8), *([nn.BatchNorm1d(8)] if bn else []), nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(8, C)).double()


class Lit(L.LightningModule):
    def __init__(self, net: nn.Module, lr: float = 0.1, schedule: bool = False) -> None:
        super().__init__()
        self.net, self.lr, self.schedule = net, lr, schedule

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.5)
        if not self.schedule:
            return opt
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _probes(store=None, basis_data: str = "probe") -> ss.ProbeSet:
    return ss.ProbeSet(
        [
            ss.SharpnessProbe(),
            ss.AlignmentProbe(k=2),
            ss.DistanceProbe(),
            ss.GradCosineProbe(),
            ss.LearningRateProbe(),
            ss.WalkProbe(ss.When(every=4)),
        ],
        eigenbasis=ss.EigenBasis(k=2, every=4, data=basis_data),
        store=store,
    )


def _trainer(tmp_path, cb, name="lit", **kw) -> L.Trainer:
    kw.setdefault("max_epochs", 2)
    return L.Trainer(
        callbacks=[cb, *kw.pop("callbacks", [])],
        logger=CSVLogger(tmp_path, name=name),
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        accelerator="cpu",
        deterministic=True,
        **kw,
    )


def _loader(x, y, batch_size=B):
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def _logged(trainer: L.Trainer) -> pd.DataFrame:
    """The CSV logger's rows as (step, name) -> value."""
    trainer.logger.save()
    df = pd.read_csv(f"{trainer.logger.log_dir}/metrics.csv")
    long = df.melt(id_vars=["step"], var_name="name").dropna()
    return long.set_index(["step", "name"])["value"].sort_index()


def _steps(logged: pd.Series, name: str) -> list[int]:
    return sorted(logged.xs(name, level="name").index.tolist())


def _plain_loop(x, y, net, probes, *, epochs=2, lr=0.1, batches=None, schedule=False):
    """The README's own loop around torch.optim.SGD, the same steps Lightning takes."""
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5) if schedule else None
    probes.on_train_start(net, (x, y), loss_fn=F.cross_entropy, optimizer=opt)
    for _ in range(epochs):
        for xb, yb in batches if batches is not None else _loader(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(net(xb), yb)
            loss.backward()
            opt.step()
            probes.after_step(net, (xb, yb), loss, opt)
            if sched is not None:
                sched.step()
        probes.on_epoch_end()
    probes.close()


def _store_frame(path) -> pd.Series:
    s = ss.load_run(path).scalars
    return s.set_index(["step", "name"])["value"].sort_index()


def test_logs_expected_keys_at_expected_steps(tmp_path):
    x, y = _data()
    cb = SgdscopeCallback(_probes(), data=(x, y), loss_fn=F.cross_entropy, monitor=True)
    trainer = _trainer(tmp_path, cb)
    trainer.fit(Lit(_net()), _loader(x, y))
    logged = _logged(trainer)
    steps = 2 * STEPS_PER_EPOCH
    assert _steps(logged, "curvature/lambda_1") == [0, 4, 8]
    assert _steps(logged, "curvature/alignment_1") == [0, 4, 8]
    assert _steps(logged, "curvature/eigenbasis_matvecs") == [0, 4, 8]
    assert _steps(logged, "walk/height") == [0, 4, 8]
    assert _steps(logged, "walk/epoch_height_mean") == [STEPS_PER_EPOCH - 1, steps - 1]
    assert _steps(logged, "probes/distance") == list(range(steps))
    assert _steps(logged, "probes/grad_cosine") == list(range(1, steps))
    assert _steps(logged, "probes/batch_loss") == list(range(steps))
    # Step t is the step at which Lightning logs the same update's training_step values.
    batch_loss = logged.xs("probes/batch_loss", level="name")
    train_loss = logged.xs("train_loss", level="name")
    np.testing.assert_allclose(batch_loss.values, train_loss.loc[batch_loss.index].values)
    # No other names: plain names never leak, every key is namespaced.
    names = set(logged.index.get_level_values("name")) - {"train_loss", "epoch"}
    assert all(n.split("/")[0] in ("curvature", "walk", "probes") for n in names), names
    # The latest value of each is in callback_metrics (for ModelCheckpoint / EarlyStopping).
    lam = float(trainer.callback_metrics["curvature/lambda_1"])
    assert lam == pytest.approx(logged[(8, "curvature/lambda_1")], rel=1e-6)  # logged as float32
    assert "walk/epoch_height_mean" in trainer.callback_metrics


@pytest.mark.parametrize("monitor", [None, ["curvature/lambda_1"], False])
def test_monitor_chooses_what_reaches_callback_metrics(tmp_path, monitor):
    x, y = _data()
    kw = {} if monitor is None else {"monitor": monitor}  # None: the default, λ₁ alone
    cb = SgdscopeCallback(_probes(), data=(x, y), loss_fn=F.cross_entropy, **kw)
    trainer = _trainer(tmp_path, cb)
    trainer.fit(Lit(_net()), _loader(x, y))
    # The loggers receive every scalar whatever monitor says ...
    logged = _logged(trainer)
    assert _steps(logged, "curvature/lambda_1") == [0, 4, 8]
    assert _steps(logged, "walk/height") == [0, 4, 8]
    # ... and callback_metrics only the monitored ones.
    ours = {k for k in trainer.callback_metrics if k.split("/")[0] in ("curvature", "walk")}
    assert ours == ({"curvature/lambda_1"} if monitor is not False else set())


@pytest.mark.parametrize("monitor", ["curvature/lambda_1", [1, 2]])
def test_monitor_must_be_a_bool_or_a_list_of_names(monitor):
    with pytest.raises(InvalidArgumentError, match="monitor: expected True, False or a list"):
        SgdscopeCallback(_probes(), loss_fn=F.cross_entropy, monitor=monitor)


def test_values_equal_a_plain_loop(tmp_path):
    """The callback measures exactly what the same ProbeSet measures in a hand-written loop (and
    writes the same store)."""
    x, y = _data()
    cb = SgdscopeCallback(_probes(tmp_path / "lit-run"), data=(x, y), loss_fn=F.cross_entropy)
    trainer = _trainer(tmp_path, cb)
    trainer.fit(Lit(_net()), _loader(x, y))
    _plain_loop(x, y, _net(), _probes(tmp_path / "own-run"))

    lit, own = _store_frame(tmp_path / "lit-run"), _store_frame(tmp_path / "own-run")
    assert lit.index.equals(own.index)
    np.testing.assert_allclose(lit.values, own.values, rtol=1e-10, atol=1e-12)
    assert ss.load_run(tmp_path / "lit-run").status == "finished"
    # ... and the loggers got the store's numbers under their namespaces.
    logged = _logged(trainer)
    for name in ("lambda_1", "alignment_mean5", "height", "distance", "lr"):
        store_rows = lit.xs(name, level="name")
        ns = {"height": "walk", "distance": "probes", "lr": "probes"}.get(name, "curvature")
        got = logged.xs(f"{ns}/{name}", level="name")
        np.testing.assert_allclose(got.values, store_rows.loc[got.index].values, rtol=1e-12)
        assert got.index.tolist() == store_rows.index.tolist()


def test_resumed_checkpoint_continues_identically(tmp_path):
    """2 epochs, a Lightning checkpoint, 2 more epochs from it == 4 epochs straight: the store and
    the logged values, eigenbasis warm starts, grad cosines, random directions and per-epoch walk
    aggregates included."""
    x, y = _data()

    def fit(store, epochs, name, ckpt_path=None, ckpt_cb=None):
        cb = SgdscopeCallback(_probes(store), data=(x, y), loss_fn=F.cross_entropy)
        extra = [ckpt_cb] if ckpt_cb is not None else []
        trainer = _trainer(tmp_path, cb, name=name, max_epochs=epochs, callbacks=extra)
        trainer.fit(Lit(_net()), _loader(x, y), ckpt_path=ckpt_path)
        return trainer

    straight = fit(tmp_path / "straight", 4, "straight")
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    fit(tmp_path / "resumed", 2, "first", ckpt_cb=ckpt)
    # The first run's store gets rows past the checkpoint (as a crash after it would leave):
    # the resume drops them and measures those steps again.
    store = MetricsStore(tmp_path / "resumed" / "metrics.sqlite")
    store.write_step(2 * STEPS_PER_EPOCH, 2, {"lambda_1": -1.0})
    store.close()
    again = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    resumed = fit(tmp_path / "resumed", 4, "second", ckpt_path=ckpt.last_model_path, ckpt_cb=again)

    a, b = _store_frame(tmp_path / "straight"), _store_frame(tmp_path / "resumed")
    assert a.index.equals(b.index)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-10, atol=1e-12)
    later = _logged(resumed)
    later = later[later.index.get_level_values("name") != "epoch"]
    full = _logged(straight).loc[later.index]
    np.testing.assert_allclose(later.values, full.values, rtol=1e-10, atol=1e-12)
    assert min(later.index.get_level_values("step")) == 2 * STEPS_PER_EPOCH
    assert _steps(later, "curvature/lambda_1") == [12, 16, 20]


def test_gradient_accumulation_steps_once_per_update(tmp_path):
    """accumulate_grad_batches=2: the probes run once per optimizer step, on its two
    micro-batches, as a plain loop does with the union batch (equal halves: same update; no
    BatchNorm, whose batch statistics would differ between halves and the whole)."""
    x, y = _data()
    cb = SgdscopeCallback(
        _probes(tmp_path / "lit", basis_data="batch"), data=(x, y), loss_fn=F.cross_entropy
    )
    trainer = _trainer(tmp_path, cb, accumulate_grad_batches=2)
    trainer.fit(Lit(_net(bn=False)), _loader(x, y, batch_size=B // 2))
    assert cb.probes.step == trainer.global_step == 2 * STEPS_PER_EPOCH
    _plain_loop(x, y, _net(bn=False), _probes(tmp_path / "own", basis_data="batch"))
    lit, own = _store_frame(tmp_path / "lit"), _store_frame(tmp_path / "own")
    assert lit.index.equals(own.index)
    np.testing.assert_allclose(lit.values, own.values, rtol=1e-8, atol=1e-10)


def test_lr_is_the_step_s_own_under_a_per_step_scheduler(tmp_path):
    """Lightning steps a per-step scheduler before on_train_batch_end; the probes still get η_t."""
    x, y = _data()
    cb = SgdscopeCallback(_probes(tmp_path / "lit"), data=(x, y), loss_fn=F.cross_entropy)
    trainer = _trainer(tmp_path, cb, max_epochs=1)
    trainer.fit(Lit(_net(), schedule=True), _loader(x, y))
    lr = _logged(trainer).xs("probes/lr", level="name")
    expected = [0.1 * 0.5 ** (t // 2) for t in range(STEPS_PER_EPOCH)]
    np.testing.assert_allclose(lr.values, expected, rtol=1e-15)
    _plain_loop(x, y, _net(), _probes(tmp_path / "own"), epochs=1, schedule=True)
    lit, own = _store_frame(tmp_path / "lit"), _store_frame(tmp_path / "own")
    np.testing.assert_allclose(lit.values, own.values, rtol=1e-10, atol=1e-12)


def test_training_is_unchanged_by_the_callback(tmp_path):
    """BatchNorm + dropout, shuffled batches, the training loader as the probes' data: with and
    without the callback, the same weights and BatchNorm statistics at the end; the module ends
    in train mode as it was."""

    def fit(with_cb: bool, name: str):
        x, y = _data()
        L.seed_everything(7, verbose=False)
        module = Lit(_net(dropout=0.3))
        cbs = []
        if with_cb:
            # The training loader as the probes' data: iterating it draws from the global RNG.
            cbs = [SgdscopeCallback(_probes(), loss_fn=F.cross_entropy)]
        trainer = L.Trainer(
            callbacks=cbs,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
            max_epochs=2,
        )
        trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=B, shuffle=True))
        return module

    plain, probed = fit(False, "plain"), fit(True, "probed")
    for (name, a), b in zip(plain.state_dict().items(), probed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert [m.training for m in probed.modules()] == [m.training for m in plain.modules()]


def test_default_data_is_the_training_loader(tmp_path):
    x, y = _data()
    probes = ss.ProbeSet([ss.SharpnessProbe()], eigenbasis=ss.EigenBasis(k=2, every=3))
    cb = SgdscopeCallback(probes, loss_fn=F.cross_entropy)
    trainer = _trainer(tmp_path, cb, max_epochs=1)
    module = Lit(_net(bn=False))  # (BatchNorm's running statistics move during step 0)
    theta0 = copy.deepcopy(module.net)
    trainer.fit(module, _loader(x, y))
    assert cb.probes.data is trainer.train_dataloader
    # λ₁ at step 0 is that of the whole training set's Hessian at θ₀.
    op = ss.HessianOperator(theta0, F.cross_entropy, (x, y))
    lam = float(ss.lanczos(op, k=1).eigenvalues[0])
    got = _logged(trainer)[(0, "curvature/lambda_1")]
    assert got == pytest.approx(lam, rel=1e-6)


class _OwnLoss(Lit):
    def loss(self, batch):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def training_step(self, batch, batch_idx):
        return self.loss(batch)


def test_the_module_s_own_loss_through_a_closure(tmp_path):
    """loss_fn=ss.LossClosure(lambda m, b: m.loss(b)) measures what loss_fn=F.cross_entropy does."""
    x, y = _data()
    stores = {}
    for name, loss_fn in {
        "closure": ss.LossClosure(lambda model, batch: model.loss(batch)),
        "function": F.cross_entropy,
    }.items():
        probes = ss.ProbeSet(
            [ss.SharpnessProbe(), ss.WalkProbe(ss.When(every=4))],
            eigenbasis=ss.EigenBasis(k=2, every=4),
            store=tmp_path / name,
        )
        cb = SgdscopeCallback(probes, data=(x, y), loss_fn=loss_fn)
        _trainer(tmp_path, cb, name=name, max_epochs=1).fit(_OwnLoss(_net()), _loader(x, y))
        stores[name] = _store_frame(tmp_path / name)
    assert stores["closure"].index.equals(stores["function"].index)
    np.testing.assert_allclose(stores["closure"].values, stores["function"].values, rtol=1e-9)


class _Manual(Lit):
    def __init__(self, net):
        super().__init__(net)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        opt.zero_grad()
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.manual_backward(loss)
        opt.step()


def test_refuses_manual_optimization(tmp_path):
    x, y = _data()
    cb = SgdscopeCallback(_probes(), data=(x, y), loss_fn=F.cross_entropy)
    with pytest.raises(InvalidArgumentError, match=r"automatic optimization.*after_step"):
        _trainer(tmp_path, cb).fit(_Manual(_net()), _loader(x, y))


def test_refuses_a_resume_without_its_state(tmp_path):
    x, y = _data()
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = L.Trainer(
        max_epochs=1,
        callbacks=[ckpt],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(Lit(_net()), _loader(x, y))
    cb = SgdscopeCallback(_probes(), data=(x, y), loss_fn=F.cross_entropy)
    again = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    with pytest.raises(InvalidArgumentError, match="holds no sgdscope state"):
        _trainer(tmp_path, cb, max_epochs=2, callbacks=[again]).fit(
            Lit(_net()), _loader(x, y), ckpt_path=ckpt.last_model_path
        )


def test_argument_errors():
    with pytest.raises(InvalidArgumentError, match="expected a sgdscope ProbeSet"):
        SgdscopeCallback([ss.DistanceProbe()], loss_fn=F.cross_entropy)
    with pytest.raises(InvalidArgumentError, match="needs the loss"):
        SgdscopeCallback(ss.ProbeSet([ss.DistanceProbe()]))
