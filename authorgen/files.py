"""Small file-system helpers shared by the corpus and checkpoint modules.

Every write goes through `atomic_write`: the data lands in `name.XXXX.tmp` in the same folder
(a name of its own, so two threads or processes writing `name` at once never share one), is
flushed and fsynced, and only then replaces `name` with `os.replace`, so a crash leaves either
the old file or the new one, never half of either.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from authorgen.errors import DataError, UsageError

HOME_ENV = "AUTHORGEN_HOME"
CACHE_ENV = "AUTHORGEN_CACHE"
_UMASK = os.umask(0)
os.umask(_UMASK)


def utc_now() -> str:
    """The time now, UTC, to the second, in ISO 8601: "2026-11-26T21:31:06+00:00"."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_dir(kind: str) -> Path:
    """`./corpora` or `./checkpoints`, or the same folder under $AUTHORGEN_HOME when it is set."""
    home = os.environ.get(HOME_ENV)
    return (Path(home) if home else Path.cwd()) / kind


def cache_dir() -> Path:
    """Where downloads in progress and the Gutenberg catalog are kept: $AUTHORGEN_CACHE, else
    $AUTHORGEN_HOME/cache, else $XDG_CACHE_HOME/authorgen (~/.cache/authorgen)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]) / "cache"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "authorgen"


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)`, fsync the result and move it onto `path` in one step.

    `write` may be any function that writes a file by path (safetensors, torch.save, ...).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        # Some writers (safetensors) create files readable by their owner only; give every file
        # the permissions the user's umask asks for, like any other file they make.
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 `text` (LF line endings, as given) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: object) -> None:
    """Write `obj` as indented UTF-8 JSON to `path` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def replace_dir(staged: Path, dest: Path) -> None:
    """Put the fully written folder `staged` in place of `dest`.

    Folders cannot be swapped in one system call, so `dest` is first renamed to `dest.old`;
    a reader that finds no `dest` but a `dest.old` uses that (see `existing_dir`).
    """
    old = dest.with_name(dest.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if dest.exists():
        os.replace(dest, old)
    os.replace(staged, dest)
    _fsync_dir(dest.parent)
    if old.exists():
        shutil.rmtree(old)


@contextmanager
def staged_dir(dest: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """An empty folder beside `dest` (`dest` + `suffix`) to write a whole folder into: when the
    block ends it takes the place of `dest` (`replace_dir`); when the block fails (a full disk,
    Ctrl-C) it is removed and `dest` stays as it was.

    A per-process `suffix` keeps processes that build the same folder apart.
    """
    dest = Path(dest)
    staged = dest.with_name(dest.name + suffix)
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    try:
        yield staged
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    replace_dir(staged, dest)


def existing_dir(dest: Path) -> Path | None:
    """`dest`, or the `dest.old` a crash in `replace_dir` left behind, or None."""
    if dest.is_dir():
        return dest
    old = dest.with_name(dest.name + ".old")
    return old if old.is_dir() else None


# Letters NFKD does not take apart (Polish ł, Danish ø, ...), so slugs of names stay readable.
_FOLD = {
    "ł": "l",
    "Ł": "L",
    "ø": "o",
    "Ø": "O",
    "đ": "d",
    "Đ": "D",
    "ß": "ss",
    "æ": "ae",
    "Æ": "AE",
    "œ": "oe",
    "Œ": "OE",
    "þ": "th",
    "ı": "i",
}
_FOLD_RE = re.compile("[" + "".join(_FOLD) + "]")
# The combining-mark blocks of Unicode: what NFKD splits accents off into.
_COMBINING_RE = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def fold_ascii(text: str) -> str:
    """Letters without their accents: "Żeromski" -> "Zeromski", "Łódź" -> "Lodz"."""
    if text.isascii():
        return text
    # regular expressions, not str.translate: this runs on the whole catalog at once
    text = _FOLD_RE.sub(lambda m: _FOLD[m.group()], text)
    return _COMBINING_RE.sub("", unicodedata.normalize("NFKD", text))


def slugify(text: str, max_len: int = 60) -> str:
    """A lowercase ASCII slug: "Żeromski, Stefan" -> "zeromski-stefan"; "" when nothing is left."""
    slug = re.sub(r"[^a-z0-9]+", "-", fold_ascii(text).lower()).strip("-")
    return slug[:max_len].rstrip("-")


_NAME_RE = re.compile(r"^[\w][\w.\-]*$")


def check_name(name: str, what: str) -> str:
    """Return `name` if it is safe as one folder name under corpora/ or checkpoints/.

    Raises:
        UsageError: for empty names, path separators, `..` or leading dots.
    """
    if not name or not _NAME_RE.match(name) or ".." in name or len(name) > 100:
        raise UsageError(
            f"invalid {what} name {name!r}: use letters, digits, '-', '_' or '.' "
            "(no path separators, no '..', not starting with '.')"
        )
    return name


def check_links_inside(folder: Path, what: str) -> None:
    """Refuse a corpus or run folder holding a symbolic link that leads outside it, so that no
    command reads or writes anything beyond the folder through it (a shared folder may hold
    such links). The folder itself may be a link, as may corpora/ and checkpoints/.

    Raises:
        DataError: naming the first such link.
    """
    root = Path(folder).resolve()
    for parent, dirs, files in os.walk(root):  # os.walk does not follow links
        for name in dirs + files:
            path = Path(parent) / name
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise DataError(
                    f"{what} {folder} holds a link that leads outside it "
                    f"({path.relative_to(root)} -> {os.readlink(path)}); replace the link with "
                    "a copy of the file"
                )
