"""The probe interface: a consumer of the eigenbasis measures in the basis's BatchNorm mode or
refuses (at ProbeSet construction and on a direct measure); When; the context's checks."""

from __future__ import annotations

import pytest
import torch

import sgdscope as ss
from sgdscope.errors import BasisMismatchError, ConfigError, InvalidArgumentError
from sgdscope.probes import (
    AlignmentProbe,
    EigendirectionLossProbe,
    Measurement,
    NoiseCurvatureProbe,
    ProbeSet,
    SharpnessProbe,
    StepScaleProbe,
    When,
)

from .cases import mlp_case

CONSUMERS = {
    "alignment": lambda bn: AlignmentProbe(k=2, bn_mode=bn),
    "eigen_loss": lambda bn: EigendirectionLossProbe(directions=2, bn_mode=bn),
    "step_scale": lambda bn: StepScaleProbe(ks=[1, 2], bn_mode=bn),
    "noise_curvature": lambda bn: NoiseCurvatureProbe(k=2, bn_mode=bn, trace_samples=2),
}


@pytest.mark.parametrize("name", sorted(CONSUMERS))
def test_a_consumer_in_another_batchnorm_mode_is_refused(name):
    case = mlp_case(batchnorm=True)  # its basis measures in eval mode
    basis = case.ctx.eigenbasis
    assert basis.bn_mode == "eval"
    probe = CONSUMERS[name]("train")
    with pytest.raises(BasisMismatchError, match=rf"probe '{name}' measures with bn_mode='train'"):
        ProbeSet([probe], eigenbasis=basis)
    with pytest.raises(BasisMismatchError, match="eigenbasis was computed with bn_mode='eval'"):
        probe.measure(case.ctx)
    assert isinstance(BasisMismatchError("x"), ConfigError)  # the CLI prints it as one line
    # restating the basis's mode, or leaving it to the basis, measures
    for bn in ("eval", None):
        ProbeSet([CONSUMERS[name](bn)], eigenbasis=basis)
        assert CONSUMERS[name](bn).measure(case.ctx)
        assert CONSUMERS[name](bn).measure_mode(case.ctx) == "eval"


def test_a_consumer_needs_an_eigenbasis_large_enough():
    case = mlp_case(k=3)
    with pytest.raises(ConfigError, match="give the run an eigenbasis"):
        ProbeSet([AlignmentProbe(k=2)])
    with pytest.raises(ConfigError, match="reads the top 5 eigenvectors but the eigenbasis holds"):
        ProbeSet([StepScaleProbe(ks=[1, 5])], eigenbasis=case.ctx.eigenbasis)
    # probes that do not read it do not need it
    ProbeSet([ss.DistanceProbe(), ss.WalkProbe()])
    assert not ss.WalkProbe.uses_eigenbasis and SharpnessProbe.uses_eigenbasis


def test_when_rules():
    assert all(When()(s, e) for s, e in [(0, 0), (7, 3)]) and When().is_default
    assert [s for s in range(10) if When(every=3)(s, 0)] == [0, 3, 6, 9]
    assert [s for s in range(10) if When(steps=[2, 5])(s, 0)] == [2, 5]
    assert not When(epochs=[1])(0, 0) and When(epochs=[1])(5, 1)
    assert [s for s in range(10) if When(every=4, epochs=[0])(s, s // 5)] == [0, 4]
    log = When(log_spaced=5, max_step=100)
    assert [s for s in range(100) if log(s, 0)] == [0, 1, 3, 10, 32]
    with pytest.raises(InvalidArgumentError, match="every must be >= 1"):
        When(every=0)
    with pytest.raises(InvalidArgumentError, match="log_spaced needs"):
        When(log_spaced=5)


def test_measurement_merge_and_truth():
    m = Measurement({"a": 1.0})
    assert m and not Measurement()
    m.update(Measurement({"b": 2.0}, {"c": torch.zeros(2)})).update(None)
    assert m.scalars == {"a": 1.0, "b": 2.0} and list(m.arrays) == ["c"]
