"""docs/architecture.md names only what exists: every file, folder and name it puts in backticks
is in the source tree, and its table of arrows is the ``ALLOWED`` table of test_architecture."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_architecture import ALLOWED

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "sgdscope"
DOC = ROOT / "docs" / "architecture.md"

#: Backticked text that is not a name of the tree: notation, literals and command lines.
_NOT_NAMES = re.compile(r"[\s=#@:<>(){}\[\]…~'/+,]|^\d|^-|^\.\.\.$")


def _spans() -> list[str]:
    text = DOC.read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # the diagrams are drawings, not names
    return re.findall(r"`([^`\n]+)`", text)


def _diagram_names() -> list[str]:
    """Dotted names in the diagrams (``train.build.build_parts``, ``ProbeSet.after_step``)."""
    blocks = re.findall(r"```.*?```", DOC.read_text(), flags=re.S)
    names = re.findall(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+", "\n".join(blocks))
    return [n for n in names if not re.fullmatch(r"\w+\.(py|yaml|sqlite|html|csv|pt|lock)", n)]


def _source_text() -> str:
    files = [*SRC.rglob("*.py"), *SRC.rglob("*.yaml"), *(ROOT / "tests").rglob("*.py")]
    files.append(ROOT / "pyproject.toml")
    return "\n".join(p.read_text() for p in files)


def _path_exists(span: str) -> bool:
    if span.startswith(("tests/", "docs/", "src/")):
        return (ROOT / span).exists()
    span = span.rstrip("/")
    if (SRC / span).exists():
        return True
    # a bare module name in a row of its package ("idx.py" beside "data/embedded.py")
    return "/" not in span and any(SRC.rglob(span))


def test_every_path_in_the_doc_exists() -> None:
    paths = {
        s
        for s in _spans()
        if re.fullmatch(r"[\w./*-]+(\.py|\.yaml|/)", s) and not s.startswith("*")
    }
    assert paths, "no paths found: the parser is broken"
    missing = sorted(p for p in paths if not _path_exists(p))
    assert not missing, f"docs/architecture.md names files or folders that do not exist: {missing}"


def test_every_name_in_the_doc_exists() -> None:
    source = _source_text()
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", source))
    missing = set()
    for span in [*_spans(), *_diagram_names()]:
        if re.fullmatch(r"[\w./*-]+(\.py|\.yaml|/)", span) or _NOT_NAMES.search(span):
            continue
        for part in re.split(r"[.-]", span.removeprefix("sgdscope.")):
            if part and part not in words and not part.isdigit():
                missing.add(f"{span} ({part})")
    assert not missing, f"docs/architecture.md names what the source never mentions: {missing}"


def test_dotted_modules_in_the_doc_exist() -> None:
    mods = {
        s
        for s in [*_spans(), *_diagram_names()]
        if re.fullmatch(r"(sgdscope\.)?[a-z_]+(\.[A-Za-z_]+)+", s) and not s.endswith(".py")
    }
    bad = []
    for mod in mods:
        parts = mod.removeprefix("sgdscope.").split(".")
        # the longest prefix that is a module or package; the rest must be defined in it
        for i in range(len(parts), 0, -1):
            base = SRC.joinpath(*parts[:i])
            file = base.with_suffix(".py") if not base.is_dir() else base / "__init__.py"
            if file.exists():
                rest = parts[i:]
                if rest and not re.search(rf"\b{re.escape(rest[0])}\b", _module_text(base)):
                    bad.append(mod)
                break
        else:
            if parts[0] not in ALLOWED:  # `Class.method` forms are checked as names
                continue
            bad.append(mod)
    assert not bad, f"docs/architecture.md names modules or members that do not exist: {bad}"


def _module_text(base: Path) -> str:
    if base.is_dir():
        return "\n".join(p.read_text() for p in base.rglob("*.py"))
    return base.with_suffix(".py").read_text()


def test_arrows_table_matches_the_test() -> None:
    text = DOC.read_text()
    section = text.split("## Layers and arrows", 1)[1].split("\n## ", 1)[0]
    documented: dict[str, set[str]] = {}
    for row in re.findall(r"^\| (`.+?`) \| (.+?) \|$", section, flags=re.M):
        packages = re.findall(r"`([^`]+)`", row[0])
        allowed = row[1]
        if allowed.startswith("nothing"):
            targets: set[str] = set()
        elif allowed.startswith("as `"):
            like, _, extra = allowed.partition(", plus ")
            targets = set(documented[re.findall(r"`([^`]+)`", like)[0]])
            targets |= set(re.findall(r"`([^`]+)`", extra))
        else:
            targets = set(re.findall(r"`([^`]+)`", allowed))
        for pkg in packages:
            documented[pkg] = targets
    assert documented == ALLOWED
