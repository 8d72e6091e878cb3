"""~110 malformed configs and command lines: exit 2, one line on stderr, nothing left behind.

In-process (the CLI's ``main``), so the table runs in seconds; ``benchmarks/reliability.py``
runs the same table through real subprocesses for RELIABILITY.md.
"""

from __future__ import annotations

import pytest
import torch

from ._helpers import cli
from .bad_inputs import CASES


def _tree(root):
    return {p.relative_to(root) for p in root.rglob("*")}


def test_the_table_is_large_and_ids_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 100


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_one_line_exit_2_nothing_left(case, tmp_path, capsys):
    if case.needs_no_cuda and torch.cuda.is_available():
        pytest.skip("CUDA is available here: the device is valid")
    args = case.build(tmp_path)
    before = _tree(tmp_path)
    capsys.readouterr()
    code = cli(args)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, (code, captured.err, captured.out)
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert "internal error" not in lines[0]
    assert case.expect in lines[0], (case.expect, lines[0])
    assert _tree(tmp_path) == before, sorted(map(str, _tree(tmp_path) - before))
