"""Reports: the papers' figures, the findings judge, and one self-contained HTML page."""

from ._data import RunSelection, sgd_runs
from .figures import (
    RUN_FIGURES,
    RUN_TABLES,
    SWEEP_FIGURES,
    alignment,
    alpha_test,
    alpha_test_table,
    barrier_table,
    eigen_loss,
    eigenvalue_evolution,
    gd_vs_noisy,
    height_table,
    lambda_runs,
    layer_sharpness,
    noise_curvature,
    peak_lambda,
    runs_overview,
    schedule_comparison,
    spectral_density,
    training_curves,
    walk,
    walk_vs_hparams,
)
from .findings import (
    INSUFFICIENT,
    NOT_APPLICABLE,
    NOT_REPRODUCED,
    REPRODUCED,
    RULES,
    VERDICTS,
    Finding,
    Rule,
    findings_text,
    judge,
    judge_per_seed,
)
from .html import write_report
from .style import save_figure, style
from .tables import SWEEP_TABLES, sharpness_table, walk_table

__all__ = [
    # the page
    "write_report",
    # findings
    "INSUFFICIENT",
    "NOT_APPLICABLE",
    "NOT_REPRODUCED",
    "REPRODUCED",
    "RULES",
    "VERDICTS",
    "Finding",
    "Rule",
    "findings_text",
    "judge",
    "judge_per_seed",
    # figures of one run
    "RUN_FIGURES",
    "alignment",
    "alpha_test",
    "eigen_loss",
    "eigenvalue_evolution",
    "layer_sharpness",
    "noise_curvature",
    "spectral_density",
    "training_curves",
    "walk",
    # figures across runs
    "SWEEP_FIGURES",
    "gd_vs_noisy",
    "lambda_runs",
    "peak_lambda",
    "runs_overview",
    "schedule_comparison",
    "walk_vs_hparams",
    # tables
    "RUN_TABLES",
    "SWEEP_TABLES",
    "alpha_test_table",
    "barrier_table",
    "height_table",
    "sharpness_table",
    "walk_table",
    # which runs a comparison uses
    "RunSelection",
    "sgd_runs",
    # style
    "save_figure",
    "style",
]
