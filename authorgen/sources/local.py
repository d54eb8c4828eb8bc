"""Local text: a file, or a folder of .txt files."""

from __future__ import annotations

from pathlib import Path

from authorgen.errors import DataError


def list_text_files(path: Path) -> list[Path]:
    """`path` itself, or the .txt files in folder `path` (not recursive), sorted by name.

    Raises:
        DataError: when the path does not exist or the folder has no .txt file.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".txt" and p.is_file())
        if not files:
            raise DataError(f"no .txt files in folder {path}")
        return files
    raise DataError(f"no such file or folder: {path}")
