"""Local text: a file, or a folder of .txt files."""

from __future__ import annotations

from collections.abc import Iterator
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


def read_text_files(path: Path, max_bytes: int) -> Iterator[tuple[Path, bytes]]:
    """Each file of `list_text_files(path)` and its bytes, one at a time.

    Raises:
        DataError: for a missing path or unreadable file, or one over `max_bytes` (found
            without reading more than that).
    """
    for file in list_text_files(path):
        try:
            with open(file, "rb") as f:
                raw = f.read(max_bytes + 1)
        except OSError as exc:
            raise DataError(f"cannot read {file}: {exc.strerror}") from None
        if len(raw) > max_bytes:
            raise DataError(
                f"{file} is larger than --max-bytes ({max_bytes:,} bytes); raise "
                "--max-bytes if it really is one text"
            )
        yield file, raw
