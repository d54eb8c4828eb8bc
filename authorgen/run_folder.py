"""Making a run's folder, and replacing a run (`train --force`) while other programs use it.

A served or generating run memory-maps two folders: its originality index and its n-gram
counts. Windows forbids moving or deleting a file, or a folder holding one, while any program
has it open or mapped; Linux and macOS allow it. So those folders are never moved or replaced:
each training writes its own, named with a tag of its own (`index-3f9a0c12/`,
`ngrams-3f9a0c12/`), and `config.json` points to them (`"maps"`). Replacing a run moves its
other files aside one by one; a mapped folder that is in use stays where it is, unreferenced,
and is deleted by a later replacement once nothing holds it. Runs made before this keep
`index/` and `ngrams/`, which are read as before.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from authorgen.errors import UsageError
from authorgen.files import check_name, existing_dir

MAPPED = ("index", "ngrams")  # the folders a reader memory-maps
_MAPPED_NAME = re.compile(r"(index|ngrams)(-[0-9a-f]+)?(\.old|\.tmp)?")
_GONE = re.compile(r"\.(index|ngrams)\S*\.gone")
CONFIG = "config.json"
WEIGHTS = "model.safetensors"


def new_maps() -> dict[str, str]:
    """The names of a new training's mapped folders: one fresh tag for both."""
    tag = secrets.token_hex(4)
    return {kind: f"{kind}-{tag}" for kind in MAPPED}


def mapped_dir(run_dir: Path, maps: dict | None, kind: str) -> Path:
    """Where the run whose config has `maps` keeps its `kind` ("index" or "ngrams") folder
    (`index/` and `ngrams/` for a run made before runs named them)."""
    return Path(run_dir) / (maps or {}).get(kind, kind)


def existing_mapped_dir(run_dir: Path, maps: dict | None, kind: str) -> Path | None:
    """`mapped_dir`, or what a crash while writing it left (`files.existing_dir`), or None."""
    return existing_dir(mapped_dir(run_dir, maps, kind))


@dataclass(frozen=True)
class Replaced:
    """Where `create_run` moved the run it replaces, and which of its mapped folders stayed
    in the run folder because a program holds them (Windows)."""

    folder: Path
    stayed: frozenset[str]


def create_run(
    checkpoints_dir: Path, name: str, force: bool = False
) -> tuple[Path, Replaced | None]:
    """Make an empty run folder.

    With `force`, an existing run of that name is moved aside, not deleted: call
    `finish_create` once the new run holds weights (or failed) to drop or restore it.

    Returns:
        The new run folder, and how the run it replaces was moved (None if there was none).

    Raises:
        UsageError: when the run exists and `force` is not set, or another program holds a
            file of it that is not a mapped folder (Windows).
    """
    check_name(name, "run")
    run_dir = Path(checkpoints_dir) / name
    replaced = None
    if run_dir.exists():
        if not force and not (run_dir / CONFIG).exists():
            raise UsageError(
                f"{run_dir} holds no run (a command was stopped before training began); add "
                "--force to replace it"
            )
        if not force:
            raise UsageError(
                f"run {name!r} already exists in {checkpoints_dir}; pick another --name "
                "or add --force to replace it"
            )
        replaced = _move_aside(run_dir, run_dir.with_name(f".{name}.replaced"))
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, replaced


def _move_aside(run_dir: Path, aside: Path) -> Replaced:
    """Move what `run_dir` holds into `aside`, entry by entry; a mapped folder that is in use
    stays. Anything else in use puts back what was moved and refuses."""
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir(exist_ok=True)
    moved, stayed = [], set()
    for entry in sorted(run_dir.iterdir()):
        try:
            os.replace(entry, aside / entry.name)
            moved.append(entry.name)
        except PermissionError:  # Windows: open or memory-mapped in some program
            if _MAPPED_NAME.fullmatch(entry.name) and entry.is_dir():
                stayed.add(entry.name)
                continue
            for done in reversed(moved):
                os.replace(aside / done, run_dir / done)
            shutil.rmtree(aside, ignore_errors=True)
            msg = f"is open in another program ({entry.name}): stop it, or pick another --name"
            raise UsageError(f"run {run_dir.name!r} {msg}") from None
    return Replaced(aside, frozenset(stayed))


def finish_create(run_dir: Path, replaced: Replaced | None) -> None:
    """Keep the new run if it has weights, dropping the run it replaced and the mapped folders
    its config does not name (those nothing holds any more); else put the replaced run back."""
    run_dir = Path(run_dir)
    if (run_dir / WEIGHTS).exists():
        if replaced is not None:
            shutil.rmtree(replaced.folder, ignore_errors=True)
        try:
            maps = json.loads((run_dir / CONFIG).read_text(encoding="utf-8"))["maps"]
        except (OSError, ValueError, KeyError, TypeError):
            return  # no names to keep: nothing is swept
        sweep(run_dir, set(maps.values()))
        return
    stayed = replaced.stayed if replaced is not None else frozenset()
    for entry in list(run_dir.iterdir()):
        if entry.name not in stayed:
            _remove(entry)
    if replaced is None:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for entry in sorted(replaced.folder.iterdir()):
        os.replace(entry, run_dir / entry.name)
    replaced.folder.rmdir()


def sweep(run_dir: Path, keep: set[str]) -> None:
    """Delete the mapped folders of `run_dir` that `keep` does not name, except those a program
    still holds (Windows: they are moved to be deleted, and a held one cannot be moved)."""
    for entry in list(Path(run_dir).iterdir()):
        if _GONE.fullmatch(entry.name):  # a sweep that was cut short
            shutil.rmtree(entry, ignore_errors=True)
        if entry.name in keep or not _MAPPED_NAME.fullmatch(entry.name) or not entry.is_dir():
            continue
        gone = entry.with_name(f".{entry.name}.gone")
        try:
            os.replace(entry, gone)
        except PermissionError:
            continue  # in use: the next replacement of the run tries again
        shutil.rmtree(gone, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
