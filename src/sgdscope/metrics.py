"""The metric schema: every name the Trainer and the built-in probes write to a run's store.

One home for each name: what it means, its units, when it is written and who writes it. Writers
(the Trainer, the probes) and readers (the report, the sweep summary, the CLI) spell names through
this module, never as string literals, so that a name changes in one place. Indexed families
(``lambda_{i}``, ``alpha_test_{subspace}_a{alpha}``, ...) have a key builder and a parser that
round-trip.

Steps are updates: a value stored at step t was measured at θ_t (before the update θ_t → θ_{t+1})
unless its description says otherwise; evaluations after epoch e are stored at the step that ends
it. Losses are in the loss's units (nats for cross-entropy). "param" is one unit of a parameter.

This module is pure Python (no torch, numpy or pandas), so anything may import it.

Example:
    >>> from sgdscope import metrics as M
    >>> M.alpha_test_key(1, 0.5)
    'alpha_test_k1_a0.5'
    >>> M.parse_alpha_test("alpha_test_random_a2")
    ('random', 2.0)
    >>> M.describe("lambda_3").writer
    'sharpness'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from .errors import InvalidArgumentError

# ---- who writes a name (probe names are those of ``sgdscope.probes``' registry)
TRAINER = "trainer"
#: The probe runner (:class:`sgdscope.probes.ProbeSet`), in the Trainer or a user's own loop.
PROBE_SET = "probeset"
#: No built-in writer: the report reads the name when a user's own code (or a future probe) stores
#: it.
USER = "user"

# ---- what is stored
SCALAR = "scalar"
ARRAY = "array"

# ---- when it is stored
EVERY_STEP = "every step"
MEASURED = "at the steps the probe is due"
EPOCH_END = "at the end of each epoch"
EVALUATION = "at step 0 and after each evaluated epoch"

#: Field name → (regular expression of its text, example values for tests and docs).
_FIELDS: dict[str, tuple[str, tuple[object, ...]]] = {
    "i": (r"[1-9][0-9]*", (1, 2, 12)),
    "k": (r"[1-9][0-9]*", (1, 5)),
    "split": (r"train|val|test", ("train", "val", "test")),
    "subspace": (r"k[1-9][0-9]*|e[1-9][0-9]*|random", ("k1", "k5", "e2", "random")),
    "alpha": (r"-?(?:inf|[0-9]+(?:\.[0-9]*)?(?:e[+-]?[0-9]+)?)", (0.5, 1, 2, 0.25, 1e-05, -4)),
    "group": (r"[^/]+(?:/[^/]+)*", ("0", "features.3", "encoder.layer")),
}
_FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Metric:
    """One stored name, or one indexed family of names.

    Attributes:
        pattern: the name (``"train_loss"``) or a template with ``{field}`` placeholders
            (``"lambda_{i}"``); fields are ``i``/``k`` (integers ≥ 1), ``split`` (train, val,
            test), ``subspace`` (``k<k>``, ``e<i>``, ``random``), ``alpha`` (a number, ``%g``)
            and ``group`` (a parameter-group name).
        description: one line: what it is.
        units: its units (``"nats"``, ``"loss / param²"``, ``"1"`` for dimensionless, ...).
        writer: ``"trainer"``, the name of the probe that writes it, or ``"user"``.
        kind: ``"scalar"`` or ``"array"`` (an array's shape is in its description).
        when: when it is written (``EVERY_STEP``, ``MEASURED``, ``EPOCH_END``, ``EVALUATION``).
    """

    pattern: str
    description: str
    units: str
    writer: str
    kind: str = SCALAR
    when: str = MEASURED

    @property
    def fields(self) -> tuple[str, ...]:
        """The template's placeholders, in order (empty for a plain name)."""
        return tuple(_FIELD.findall(self.pattern))

    @property
    def is_family(self) -> bool:
        return bool(self.fields)

    @property
    def name(self) -> str:
        """The stored name of a plain (non-templated) metric."""
        if self.is_family:
            raise InvalidArgumentError(
                f"{self.pattern!r} is a family of names: build one with .key("
                f"{', '.join(f'{f}=...' for f in self.fields)})"
            )
        return self.pattern

    @cached_property
    def regex(self) -> re.Pattern[str]:
        parts = _FIELD.split(self.pattern)
        out = []
        for j, part in enumerate(parts):
            # split() alternates literal text and field names.
            out.append(f"(?P<{part}>{_FIELDS[part][0]})" if j % 2 else re.escape(part))
        return re.compile("".join(out))

    def key(self, **values: object) -> str:
        """The stored name for the given field values (``alpha`` formatted with ``%g``)."""
        if set(values) != set(self.fields):
            raise InvalidArgumentError(
                f"metric {self.pattern!r} takes the fields {list(self.fields)}, got "
                f"{sorted(values)}; pass each field once"
            )
        text = {f: _format(f, v) for f, v in values.items()}
        for f, t in text.items():
            if not re.fullmatch(_FIELDS[f][0], t):
                raise InvalidArgumentError(
                    f"metric {self.pattern!r}: field {f}={values[f]!r} is not of the form "
                    f"{_FIELDS[f][0]!r} (e.g. {_FIELDS[f][1][0]!r})"
                )
        return self.pattern.format(**text)

    def parse(self, name: str) -> dict[str, str] | None:
        """The field texts of ``name`` if it belongs to this metric, else None."""
        m = self.regex.fullmatch(name)
        return None if m is None else m.groupdict()

    def matches(self, name: str) -> bool:
        return self.parse(name) is not None


def _format(field: str, value: object) -> str:
    if field == "alpha" and not isinstance(value, str):
        return f"{float(value):g}"  # type: ignore[arg-type]
    return str(value)


#: Every metric, by pattern, in the order declared below.
SCHEMA: dict[str, Metric] = {}


def _add(
    pattern: str,
    description: str,
    units: str,
    writer: str,
    *,
    kind: str = SCALAR,
    when: str = MEASURED,
) -> Metric:
    if pattern in SCHEMA:
        raise RuntimeError(f"metric {pattern!r} declared twice")
    for f in _FIELD.findall(pattern):
        if f not in _FIELDS:
            raise RuntimeError(f"metric {pattern!r}: unknown field {f!r}")
    m = Metric(pattern, description, units, writer, kind, when)
    SCHEMA[pattern] = m
    return m


# =========================================================================== the Trainer
BATCH_LOSS = _add(
    "batch_loss",
    "loss of the mini-batch B_t at θ_t, the loss of the update itself (GD: the whole train set)",
    "nats",
    TRAINER,
    when=EVERY_STEP,
).name
EVAL_LOSS = _add(
    "{split}_loss",
    "mean loss over the whole split in eval mode (running BatchNorm statistics)",
    "nats",
    TRAINER,
    when=EVALUATION,
)
EVAL_ACC = _add(
    "{split}_acc",
    "accuracy over the whole split in eval mode (NaN for tasks without accuracy)",
    "fraction 0–1",
    TRAINER,
    when=EVALUATION,
)
EPOCHS_DONE = _add(
    "epochs_done", "epochs completed at this evaluation", "epochs", TRAINER, when=EVALUATION
).name


def loss_key(split: str) -> str:
    """``train_loss``, ``val_loss`` or ``test_loss``."""
    return EVAL_LOSS.key(split=split)


def acc_key(split: str) -> str:
    """``train_acc``, ``val_acc`` or ``test_acc``."""
    return EVAL_ACC.key(split=split)


TRAIN_LOSS, VAL_LOSS, TEST_LOSS = (loss_key(s) for s in ("train", "val", "test"))
TRAIN_ACC, VAL_ACC, TEST_ACC = (acc_key(s) for s in ("train", "val", "test"))

EIGENBASIS_MATVECS = _add(
    "eigenbasis_matvecs",
    "Hessian-vector products of the eigenbasis refresh made at step t (at θ_t)",
    "products",
    PROBE_SET,
).name

# =========================================================================== the cheap probes
LR = _add("lr", "learning rate η_t of the update θ_t → θ_{t+1}", "1", "lr").name
GRAD_NORM = _add("grad_norm", "‖g_t‖₂ of the mini-batch gradient", "nats / param", "grad_norm").name
PARAM_NORM = _add("param_norm", "‖θ_t‖₂ over the trainable parameters", "param", "param_norm").name
DISTANCE = _add("distance", "‖θ_t − θ₀‖₂, distance from initialisation", "param", "distance").name
GRAD_COSINE = _add(
    "grad_cosine",
    "cos(g_{t−1}, g_t) of consecutive mini-batch gradients (stored at step t; GD: full ones)",
    "1",
    "grad_cosine",
).name

# =========================================================================== sharpness
LAMBDA = _add(
    "lambda_{i}",
    "i-th largest eigenvalue of the eigenbasis's matrix at θ_t (the probe-set Hessian H unless "
    "eigenbasis.curvature is ggn or fisher; Lanczos), i = 1…k",
    "nats / param²",
    "sharpness",
)
LAMBDA_MIN = _add(
    "lambda_min", "smallest eigenvalue of H(θ_t) (option lambda_min)", "nats / param²", "sharpness"
).name
SPECTRAL_NORM = _add(
    "spectral_norm",
    "‖H(θ_t)‖₂ = max(|λ₁|, |λ_min|) (paper B, Fig. 3)",
    "nats / param²",
    "sharpness",
).name
STABILITY = _add(
    "stability",
    "sharpness / stability_threshold (η_t λ₁ / (2 + 2β) for SGD; Adam: precond_lambda_1 / 38·η⁻¹)"
    ": the edge-of-stability ratio, 1 at the stability limit",
    "1",
    "sharpness",
).name
STABILITY_THRESHOLD = _add(
    "stability_threshold",
    "the optimizer's linear-stability threshold at η_t: 2/η (SGD), (2 + 2β)/η (momentum β), "
    "(2 + 2β₁)/((1 − β₁)η) (Adam, against precond_lambda_1)",
    "nats / param²",
    "sharpness",
).name
GGN_LAMBDA_1 = _add(
    "ggn_lambda_1",
    "λ₁ of the generalised Gauss-Newton matrix G(θ_t) on the eigenbasis's data, against λ₁(H) "
    "(option ggn)",
    "nats / param²",
    "sharpness",
).name
PRECOND_LAMBDA_1 = _add(
    "precond_lambda_1",
    "preconditioned sharpness λ₁(P^-½ H P^-½), P = diag(√v̂ + ε) from Adam's state (Cohen et al. "
    "2022; option preconditioned)",
    "nats / param²",
    "sharpness",
).name
HESSIAN_TRACE = _add(
    "hessian_trace", "tr H(θ_t) by Hutchinson (option trace_samples)", "nats / param²", "sharpness"
).name
HESSIAN_TRACE_SE = _add(
    "hessian_trace_se", "standard error of hessian_trace", "nats / param²", "sharpness"
).name
HESSIAN_FRO = _add(
    "hessian_fro",
    "‖H(θ_t)‖_F = sqrt(tr H²) by Hutchinson (option fro_samples)",
    "nats / param²",
    "sharpness",
).name
HESSIAN_FRO_SE = _add(
    "hessian_fro_se", "standard error of hessian_fro", "nats / param²", "sharpness"
).name
LAYER_LAMBDA = _add(
    "lambda_1/{group}",
    "λ₁ of one parameter group's diagonal block of H(θ_t) (option per_layer)",
    "nats / param²",
    "sharpness",
)
HESSIAN_MATVECS = _add(
    "hessian_matvecs",
    "Hessian-vector products this measurement spent (Lanczos, trace, norms, layers)",
    "products",
    "sharpness",
).name
EIGENVALUES = _add(
    "eigenvalues",
    "the top-k eigenvalues λ₁ ≥ … ≥ λ_k of H(θ_t), shape (k,)",
    "nats / param²",
    "sharpness",
    kind=ARRAY,
).name

# =========================================================================== batch sharpness
BATCH_SHARPNESS = _add(
    "batch_sharpness",
    "E_B[g_Bᵀ H_B g_B / ‖g_B‖²] over mini-batches B of the training size at θ_t (Andreyev & "
    "Beneventano 2024)",
    "nats / param²",
    "batch_sharpness",
).name
BATCH_SHARPNESS_SE = _add(
    "batch_sharpness_se",
    "standard error of batch_sharpness over its batches (0 under GD: exact)",
    "nats / param²",
    "batch_sharpness",
).name
BATCH_SHARPNESS_BATCHES = _add(
    "batch_sharpness_batches",
    "mini-batches averaged into batch_sharpness (those with a non-zero gradient)",
    "batches",
    "batch_sharpness",
).name
BATCH_SHARPNESS_STABILITY = _add(
    "batch_sharpness_stability",
    "batch_sharpness / stability_threshold (η BS / 2 for SGD): 1 at the edge of stochastic "
    "stability",
    "1",
    "batch_sharpness",
).name
BATCH_LOSS_CHANGE_PREDICTED = _add(
    "batch_loss_change_predicted",
    "mean over the batches of −η‖g_B‖² + ½η² g_Bᵀ H_B g_B: the change of L_B a plain step −η g_B "
    "makes, to second order",
    "nats",
    "batch_sharpness",
).name
BATCH_LOSS_CHANGE_ACTUAL = _add(
    "batch_loss_change_actual",
    "mean over the batches of L_B(θ_t − η g_B) − L_B(θ_t), evaluated (option actual)",
    "nats",
    "batch_sharpness",
).name

# =========================================================================== alignment (paper A)
ALIGNMENT = _add(
    "alignment_{i}",
    "|cos(g_t, e_i)|: alignment of the mini-batch gradient with the i-th top eigenvector",
    "1",
    "alignment",
)
ALIGNMENT_MEAN5 = _add(
    "alignment_mean5",
    "mean of |cos(g_t, e_i)| over the top min(5, k) eigenvectors (paper A, Fig. 5)",
    "1",
    "alignment",
).name
ALIGNMENT_RANDOM = _add(
    "alignment_random",
    "|cos(g_t, r)| for a fresh random Gaussian direction r, ≈ sqrt(2 / (π n))",
    "1",
    "alignment",
).name
ALIGNMENT_FULL_BATCH = _add(
    "alignment_full_batch",
    "cos(g_t, ∇L_train(θ_t)), signed (option full_batch)",
    "1",
    "alignment",
).name
EIGEN_AGE = _add(
    "eigen_age",
    "steps since the eigenvectors used at step t were computed",
    "steps",
    "alignment",
).name
ALIGNMENT_ARRAY = _add(
    "alignment",
    "|cos(g_t, e_i)| for i = 1…k, shape (k,)",
    "1",
    "alignment",
    kind=ARRAY,
).name

# =========================================================================== eigen_loss (paper A)
EIGEN_LOSS = _add(
    "eigen_loss_e{i}",
    "probe loss L(θ_t + c·u_i(t)) at each c of eigen_loss_grid, shape (C,)",
    "nats",
    "eigen_loss",
    kind=ARRAY,
)
EIGEN_LOSS_GRID = _add(
    "eigen_loss_grid",
    "the c values (multiples of the SGD step along e_i), shape (C,)",
    "1",
    "eigen_loss",
    kind=ARRAY,
).name
EIGEN_LOSS_CMIN = _add(
    "eigen_loss_cmin_e{i}", "the c of the lowest loss along u_i(t)", "1", "eigen_loss"
)
EIGEN_STEP = _add(
    "eigen_step_e{i}",
    "η_t |⟨g_t, e_i⟩|: the length of SGD's step along e_i",
    "param",
    "eigen_loss",
)

# =========================================================================== α-test (paper A)
ALPHA_TEST = _add(
    "alpha_test_{subspace}_a{alpha}",
    "ΔL(α) = L(θ_t + α·u) − L(θ_t) on the probe set, u the SGD step along the top-k subspace "
    "(k<k>), along e_i alone (e<i>) or a random direction (random)",
    "nats",
    "step_scale",
)
ALPHA_TEST_EPOCH = _add(
    "alpha_test_epoch_{subspace}_a{alpha}",
    "mean of alpha_test_<subspace>_a<alpha> over the epoch's measurements (finite values)",
    "nats",
    "step_scale",
    when=EPOCH_END,
)
ALPHA_TEST_EPOCH_COUNT = _add(
    "alpha_test_epoch_count",
    "measurements averaged into the epoch's alpha_test_epoch_* values",
    "measurements",
    "step_scale",
    when=EPOCH_END,
).name
ALPHA_TEST_ARRAY = _add(
    "alpha_test_k{k}",
    "ΔL(α) along the top-k subspace at each α of alpha_test_alphas, shape (A,)",
    "nats",
    "step_scale",
    kind=ARRAY,
)
ALPHA_TEST_ALPHAS = _add(
    "alpha_test_alphas", "the α values of the α-test, shape (A,)", "1", "step_scale", kind=ARRAY
).name

# =========================================================================== noise_curvature
NOISE_OVERLAP = _add(
    "noise_overlap",
    "(1/k) Σ cos² of the principal angles between the top-k eigenspaces of C and H",
    "1",
    "noise_curvature",
).name
NOISE_TRACE_C = _add(
    "noise_trace_C",
    "tr C(θ_t) of the per-sample gradient covariance",
    "nats² / param²",
    "noise_curvature",
).name
NOISE_TRACE_H = _add(
    "noise_trace_H", "tr H(θ_t) (Hutchinson, Hutch++ or exact)", "nats / param²", "noise_curvature"
).name
NOISE_TRACE_H_STDERR = _add(
    "noise_trace_H_stderr",
    "standard error of noise_trace_H (0 when exact)",
    "nats / param²",
    "noise_curvature",
).name
NOISE_TRACE_RATIO = _add(
    "noise_trace_ratio",
    "tr C / tr H: gradient-noise size relative to curvature (C ≈ H near a minimum, paper B §4)",
    "1",
    "noise_curvature",
).name
NOISE_EIGENVALUES_C = _add(
    "noise_eigenvalues_C",
    "the top-k eigenvalues of C(θ_t), descending, shape (k,)",
    "nats² / param²",
    "noise_curvature",
    kind=ARRAY,
).name
NOISE_PRINCIPAL_COSINES = _add(
    "noise_principal_cosines",
    "cosines of the principal angles between the top-k eigenspaces of C and H, shape (k,)",
    "1",
    "noise_curvature",
    kind=ARRAY,
).name

# =========================================================================== walk (paper B)
INTERP_LOSS = _add(
    "interp_loss",
    "loss at K evenly spaced points of the line θ_t → θ_{t+1} (α = 0…1), shape (K,)",
    "nats",
    "walk",
    kind=ARRAY,
).name
VALLEY_FLOOR = _add("valley_floor", "min over α of the interpolated loss", "nats", "walk").name
ALPHA_STAR = _add("alpha_star", "the α where the valley floor is reached", "1", "walk").name
HEIGHT = _add(
    "height", "L(θ_t) − valley floor: the height above the valley floor", "nats", "walk"
).name
BARRIER = _add(
    "barrier", "1 when a barrier is crossed between θ_t and θ_{t+1}, else 0", "0/1", "walk"
).name
BARRIER_HEIGHT = _add(
    "barrier_height",
    "max(0, max interior loss − max(L(θ_t), L(θ_{t+1})))",
    "nats",
    "walk",
).name
BARRIER_HEIGHT_REL = _add("barrier_height_rel", "barrier_height / |L(θ_t)|", "1", "walk").name
MINIMUM_INSIDE = _add(
    "minimum_inside",
    "1 when the valley floor is strictly inside the segment (0 < α* < 1), else 0",
    "0/1",
    "walk",
).name
WALK_ON_PROBE = _add(
    "walk_on_probe",
    "1 when the walk was measured on the probe set, 0 on all of train",
    "0/1",
    "walk",
).name
EPOCH_HEIGHT_MEAN = _add(
    "epoch_height_mean",
    "mean height over the epoch's walked steps (paper B, Table 2)",
    "nats",
    "walk",
    when=EPOCH_END,
).name
EPOCH_HEIGHT_STD = _add(
    "epoch_height_std",
    "population std (ddof = 0) of the height over the epoch's walked steps",
    "nats",
    "walk",
    when=EPOCH_END,
).name
EPOCH_BARRIERS = _add(
    "epoch_barriers",
    "walked steps of the epoch that crossed a barrier (paper B, Table 1)",
    "steps",
    "walk",
    when=EPOCH_END,
).name
EPOCH_MIN_INSIDE_FRAC = _add(
    "epoch_min_inside_frac",
    "share of the epoch's walked steps with the valley floor inside",
    "fraction 0–1",
    "walk",
    when=EPOCH_END,
).name
EPOCH_WALK_STEPS = _add(
    "epoch_walk_steps",
    "walked steps of the epoch with a finite curve",
    "steps",
    "walk",
    when=EPOCH_END,
).name

# =========================================================================== read when present
DENSITY_GRID = _add(
    "density_grid",
    "eigenvalue grid of a Hessian spectral density (stochastic Lanczos quadrature), shape (G,)",
    "nats / param²",
    USER,
    kind=ARRAY,
).name
DENSITY = _add(
    "density",
    "spectral density φ(λ) at each point of density_grid, shape (G,)",
    "param² / nats",
    USER,
    kind=ARRAY,
).name


# =========================================================================== key builders
def lambda_key(i: int) -> str:
    """``lambda_<i>``: the i-th largest Hessian eigenvalue (i ≥ 1)."""
    return LAMBDA.key(i=i)


def layer_lambda_key(group: str) -> str:
    """``lambda_1/<group>``: λ₁ of one parameter group's block."""
    return LAYER_LAMBDA.key(group=group)


def alignment_key(i: int) -> str:
    """``alignment_<i>``: |cos(g_t, e_i)| (i ≥ 1)."""
    return ALIGNMENT.key(i=i)


def eigen_loss_key(i: int) -> str:
    """``eigen_loss_e<i>``: the array of losses along u_i (i ≥ 1)."""
    return EIGEN_LOSS.key(i=i)


def eigen_loss_cmin_key(i: int) -> str:
    return EIGEN_LOSS_CMIN.key(i=i)


def eigen_step_key(i: int) -> str:
    return EIGEN_STEP.key(i=i)


def _subspace(subspace: str | int) -> str:
    return f"k{subspace}" if isinstance(subspace, int) else subspace


def alpha_test_key(subspace: str | int, alpha: float, *, epoch: bool = False) -> str:
    """The α-test scalar for a subspace and an α.

    Args:
        subspace: an int k (the top-k subspace, ``k<k>``), ``"e<i>"`` (along e_i alone) or
            ``"random"``.
        alpha: the step multiplier α (formatted with ``%g``: 0.5 → ``a0.5``, 1.0 → ``a1``).
        epoch: the epoch mean (``alpha_test_epoch_...``) instead of the per-step value.
    """
    family = ALPHA_TEST_EPOCH if epoch else ALPHA_TEST
    return family.key(subspace=_subspace(subspace), alpha=alpha)


def alpha_test_array_key(k: int) -> str:
    """``alpha_test_k<k>``: the array of ΔL(α) along the top-k subspace."""
    return ALPHA_TEST_ARRAY.key(k=k)


# =========================================================================== parsers
def _int_field(metric: Metric, name: str, field: str) -> int | None:
    parsed = metric.parse(name)
    return None if parsed is None else int(parsed[field])


def parse_lambda(name: str) -> int | None:
    """i of ``lambda_<i>``, else None."""
    return _int_field(LAMBDA, name, "i")


def parse_layer_lambda(name: str) -> str | None:
    """The group of ``lambda_1/<group>``, else None."""
    parsed = LAYER_LAMBDA.parse(name)
    return None if parsed is None else parsed["group"]


def parse_alignment(name: str) -> int | None:
    """i of ``alignment_<i>``, else None."""
    return _int_field(ALIGNMENT, name, "i")


def parse_alpha_test(name: str, *, epoch: bool = False) -> tuple[str, float] | None:
    """``(subspace, α)`` of an α-test scalar (``alpha_test_k1_a0.5`` → ``("k1", 0.5)``)."""
    parsed = (ALPHA_TEST_EPOCH if epoch else ALPHA_TEST).parse(name)
    return None if parsed is None else (parsed["subspace"], float(parsed["alpha"]))


# =========================================================================== lookups
def describe(name: str) -> Metric | None:
    """The schema entry a stored name belongs to (a plain name or a family), else None."""
    m = SCHEMA.get(name)
    if m is not None and not m.is_family:
        return m
    for m in SCHEMA.values():
        if m.is_family and m.matches(name):
            return m
    return None


def written_by(writer: str) -> tuple[Metric, ...]:
    """Every metric a writer (``"trainer"`` or a probe name) stores, in declaration order."""
    return tuple(m for m in SCHEMA.values() if m.writer == writer)


def writers() -> tuple[str, ...]:
    """Every writer named in the schema, in declaration order."""
    return tuple(dict.fromkeys(m.writer for m in SCHEMA.values()))


def reference() -> str:
    """The schema as a Markdown table: name, kind, units, writer, when, meaning."""
    lines = [
        "| name | kind | units | written by | when | meaning |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for m in SCHEMA.values():
        lines.append(
            f"| `{m.pattern}` | {m.kind} | {m.units} | {m.writer} | {m.when} | {m.description} |"
        )
    return "\n".join(lines)


__all__ = [
    "ARRAY",
    "EPOCH_END",
    "EVALUATION",
    "EVERY_STEP",
    "MEASURED",
    "SCALAR",
    "SCHEMA",
    "TRAINER",
    "USER",
    "Metric",
    "acc_key",
    "alignment_key",
    "alpha_test_array_key",
    "alpha_test_key",
    "describe",
    "eigen_loss_cmin_key",
    "eigen_loss_key",
    "eigen_step_key",
    "lambda_key",
    "layer_lambda_key",
    "loss_key",
    "parse_alignment",
    "parse_alpha_test",
    "parse_lambda",
    "parse_layer_lambda",
    "reference",
    "written_by",
    "writers",
]
