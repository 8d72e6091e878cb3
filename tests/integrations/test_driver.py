"""What both callbacks share: gradients on and the RNG put back around the probes, scalars
named by the probe that produced them, state with the store position."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import sgdscope as ss
from sgdscope.integrations._driver import ProbeDriver, measuring, namespace_of


def test_measuring_turns_grad_on_and_puts_the_rng_back():
    before = torch.get_rng_state()
    with torch.no_grad():
        with measuring():
            assert torch.is_grad_enabled()
            torch.randn(3)  # what iterating a DataLoader does to the global RNG
        assert not torch.is_grad_enabled()
    assert torch.equal(torch.get_rng_state(), before)


def test_scalars_are_named_by_the_probe_that_made_them():
    probes = ss.ProbeSet(
        [ss.SharpnessProbe(), ss.WalkProbe(), ss.DistanceProbe()],
        eigenbasis=ss.EigenBasis(k=1, every=1),
    )
    spaces = {p.name: namespace_of(p) for p in probes.probes}  # (the set orders them its way)
    assert spaces == {"sharpness": "curvature", "walk": "walk", "distance": "probes"}
    driver = ProbeDriver(probes, data=None, loss_fn=F.cross_entropy)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    driver.data = (x, y)
    driver.start(model, optimizer=opt)
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    named = driver.named(driver.step(model, (x, y), loss, opt, None))
    assert named["curvature/lambda_1"] > 0
    assert {"walk/height", "walk/barrier", "probes/distance", "probes/batch_loss"} <= set(named)
    assert "curvature/eigenbasis_matvecs" in named
    assert all(k.split("/")[0] in ("curvature", "walk", "probes") for k in named)


def test_state_keeps_the_store_position(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    driver = ProbeDriver(ss.ProbeSet([ss.DistanceProbe()], store=tmp_path), loss_fn=F.cross_entropy)
    driver.start(model, (x, y), opt)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        driver.step(model, (x, y), loss, opt, None)

    step()
    state = driver.state_dict()
    step()  # written after the checkpoint: a resume drops it
    again = ProbeDriver(ss.ProbeSet([ss.DistanceProbe()], store=tmp_path), loss_fn=F.cross_entropy)
    again.load_state_dict(state)
    assert again.restored and again.probes.step == 1
    assert ss.load_run(tmp_path).scalars["step"].max() == 0
    driver.close("finished")
    again.close("finished")
