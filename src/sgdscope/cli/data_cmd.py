"""``sgdscope data list`` and ``sgdscope data download NAME [--root DIR]``: thin wrappers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="List the datasets and where their files are; download them from the canonical mirrors.",
    no_args_is_help=True,
)

RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root", help="Data folder (default: $SGDSCOPE_DATA, else ~/.cache/sgdscope/data)."
    ),
]


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def dataset_rows(root: Path) -> list[dict[str, str | bool | int]]:
    """One row per registered dataset: name, kind, present, size in bytes, folder looked at."""
    from ..data._files import size_on_disk
    from ..data._registry import DATASETS
    from ..data.download import SOURCES

    rows: list[dict[str, str | bool | int]] = []
    for name in DATASETS.names():
        flags = DATASETS.flags(name)
        if flags.get("embedded"):
            rows.append(
                {
                    "name": name,
                    "kind": "embedded",
                    "present": True,
                    "size": 0,
                    "where": "(built in: no files)",
                }
            )
            continue
        locate = flags.get("locate")
        found = locate(root) if locate is not None else None
        folder = SOURCES[name].folder if name in SOURCES else name
        where = found if found is not None else root / folder
        rows.append(
            {
                "name": name,
                "kind": "download" if name in SOURCES else "files",
                "present": found is not None,
                "size": size_on_disk(found) if found is not None else 0,
                "where": str(where),
            }
        )
    return rows


@app.command("list")
def list_cmd(root: RootOption = None) -> None:
    """Show each dataset: present or not, its size on disk and where it was looked for."""
    from rich.console import Console
    from rich.table import Table

    from ..data._registry import default_root

    base = root.expanduser() if root else default_root()
    table = Table(title=f"datasets under {base}")
    for col in ("dataset", "kind", "present", "size", "where"):
        table.add_column(col, justify="right" if col == "size" else "left")
    for r in dataset_rows(base):
        present = "[green]yes[/green]" if r["present"] else "[red]no[/red]"
        size = _human(int(r["size"])) if r["size"] else "-"
        table.add_row(str(r["name"]), str(r["kind"]), present, size, str(r["where"]))
    Console().print(table)


@app.command("download")
def download_cmd(
    name: Annotated[str, typer.Argument(help="Dataset name (see `sgdscope data list`).")],
    root: RootOption = None,
    force: Annotated[bool, typer.Option("--force", help="Download again if present.")] = False,
    keep_archive: Annotated[
        bool, typer.Option("--keep-archive", help="Keep .tar.gz / .zip after extraction.")
    ] = False,
) -> None:
    """Download NAME from its canonical mirror: resumable, checksum-verified, safely extracted."""
    from ..data._registry import default_root
    from ..data.download import download_dataset

    base = root.expanduser() if root else default_root()
    folder = download_dataset(name, base, force=force, keep_archive=keep_archive)
    typer.echo(f"{name}: ready in {folder}")
