"""The arrows between packages go one way (docs/architecture.md): each package imports only the
layers below it, lower layers never import the package root, and ``import sgdscope`` is light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sgdscope"

#: package (first path component under sgdscope/) -> the sgdscope packages it may import.
#: Modules at the top level (errors, _defaults, _registry, _state, _batching, _version, losses,
#: metrics) are listed like packages.
ALLOWED: dict[str, set[str]] = {
    "_version": set(),
    "_signals": {"errors"},
    "_defaults": set(),
    "errors": set(),
    "metrics": {"errors"},
    "_registry": {"errors"},
    "_state": {"_defaults"},
    "_batching": {"errors"},
    "_distributed": {"errors", "_batching"},
    "losses": {"errors"},
    "config": {"errors", "_registry", "_defaults"},
    "curvature": {"errors", "_batching", "_distributed", "_state", "_defaults"},
    "landscape": {"errors", "_batching", "_distributed", "_state", "_defaults", "losses"},
    "data": {"errors", "_registry", "config"},
    "models": {"errors", "_registry"},
    "eigenbasis": {"errors", "_defaults", "config", "curvature"},
    "optim": {"errors", "_registry", "_batching", "_state", "_defaults", "eigenbasis"},
    "probes": {
        "errors",
        "_registry",
        "_batching",
        "_distributed",
        "_state",
        "_defaults",
        "metrics",
        "curvature",
        "landscape",
        "optim",
        "store",
    },
    "store": {"errors", "_registry", "metrics", "config"},
    "train": {
        "errors",
        "_signals",
        "_distributed",
        "_state",
        "_version",
        "_defaults",
        "metrics",
        "config",
        "data",
        "models",
        "losses",
        "optim",
        "probes",
        "eigenbasis",
        "store",
        "curvature",
        "landscape",
    },
    "sweep": {"errors", "_signals", "_registry", "config", "store", "train", "metrics"},
    "recipes": {"errors", "_registry", "config", "metrics", "store"},
    "report": {"errors", "_version", "metrics", "config", "store", "sweep", "recipes"},
    "api": {"errors", "config", "recipes", "store", "train"},
    "integrations": {"errors", "metrics", "probes", "store", "eigenbasis", "losses"},
    "cli": {
        "errors",
        "_signals",
        "api",
        "config",
        "data",
        "metrics",
        "recipes",
        "report",
        "store",
        "sweep",
        "train",
        "planner",
    },
    # the cost plan: counts a config's work (train, probes) and times it on the run's own code
    "planner": {
        "errors",
        "config",
        "recipes",
        "data",
        "models",
        "losses",
        "optim",
        "probes",
        "eigenbasis",
        "curvature",
        "landscape",
        "store",
        "train",
    },
}


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """sgdscope packages a module imports (relative imports resolved; lazy imports included)."""
    here = list(path.relative_to(SRC).parts[:-1])  # the module's package, under sgdscope/
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            # `from .. import x` at the top: each name is a top-level package or module.
            out |= {a.name for a in node.names} if not target else {target[0]}
        else:
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                parts = name.split(".")
                if parts[0] == "sgdscope":
                    out.add(parts[1] if len(parts) > 1 else "<root>")
    return out


MODULES = sorted(p for p in SRC.rglob("*.py") if _package(p) in ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_arrows(path: Path) -> None:
    pkg = _package(path)
    used = _imports(path) - {pkg, ""}
    assert "<root>" not in used, f"{path.relative_to(SRC)} imports the package root"
    extra = used - ALLOWED[pkg]
    assert not extra, f"{path.relative_to(SRC)} ({pkg}) imports {sorted(extra)} against the arrows"


def test_import_sgdscope_is_light() -> None:
    code = (
        "import sys, sgdscope; "
        "heavy = [m for m in ('torch', 'pandas', 'matplotlib', 'sgdscope.report') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
