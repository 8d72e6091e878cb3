"""``python -m tests.reliability._poisoned ARGS``: sgdscope's command line with a NaN in the probe
set, so that every eigenbasis refresh fails (non-finite Hessian products) and the probes reading
it store NaN and a warning row while training goes on. A real process, killed and resumed like
``python -m sgdscope``."""

from __future__ import annotations

import sgdscope.train.build as _build

_real = _build.build_data


def _poisoned(cfg, device):
    bundle = _real(cfg, device)
    bundle.probe.x[0, 0] = float("nan")
    return bundle


_build.build_data = _poisoned

from sgdscope._entry import main  # noqa: E402

main()
