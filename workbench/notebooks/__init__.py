"""The notebooks that ship with the package (package data, so an installed workbench has them).

``workbench batch collaborative_training`` executes one by name; ``workbench notebooks DIR``
copies them out to open in JupyterLab. They are parameterized for papermill (a cell
tagged ``parameters``) and import the engine and, in JupyterLab only, ``widgets``.
"""
from __future__ import annotations

import difflib
import shutil
from pathlib import Path

from ..errors import WorkbenchError

__all__ = ["NOTEBOOK_DIR", "list_notebooks", "find_notebook", "copy_notebooks"]

NOTEBOOK_DIR = Path(__file__).resolve().parent


def list_notebooks() -> dict[str, Path]:
    """``{name: path}`` of the shipped notebooks (name without ``.ipynb``)."""
    return {p.stem: p for p in sorted(NOTEBOOK_DIR.glob("*.ipynb"))}


def find_notebook(name_or_path: str | Path) -> Path:
    """A notebook file: an existing path as given, else a shipped notebook by name.

    ``collaborative_training`` and ``collaborative_training.ipynb`` both name the shipped
    one; a path that exists always wins, so a user's edited copy runs as given.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    shipped = list_notebooks()
    name = path.stem if path.suffix == ".ipynb" else str(name_or_path)
    if name in shipped and path.parent == Path("."):  # a bare name, not a path that is missing
        return shipped[name]
    close = difflib.get_close_matches(name, list(shipped), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"shipped notebooks: {', '.join(shipped)}"
    raise WorkbenchError(f"notebook not found: {name_or_path} (neither a file nor a shipped notebook); {hint}")


def copy_notebooks(dest: str | Path, overwrite: bool = False) -> list[tuple[Path, bool]]:
    """Copy the shipped notebooks into ``dest``; returns ``(path, copied)`` per notebook.

    An existing file is kept (``copied`` False) unless ``overwrite``: your edits survive.
    """
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise WorkbenchError(f"{dest} is a file; give a folder to copy the notebooks into")
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for name, source in list_notebooks().items():
        target = dest / source.name
        copied = overwrite or not target.exists()
        if copied:
            shutil.copyfile(source, target)
        out.append((target, copied))
    return out
