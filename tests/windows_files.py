"""Windows' rule for files in use, played on Linux.

On Windows a file that some program has open (Python opens files without sharing deletion) or
memory-mapped cannot be renamed, replaced or deleted, and neither can a folder that holds one;
the call fails with PermissionError. Linux allows all of it. `windows_rules()` makes this
process's `os.replace`, `os.rename`, `os.unlink`, `os.remove` and `os.rmdir` (which
`pathlib` and `shutil.rmtree` use) refuse as Windows would, looking at what every process of
this user has open or mapped (`/proc/PID/fd` and `/proc/PID/maps`), this one included.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

_WHY = "The process cannot access the file because it is being used by another process"


def held() -> set[str]:
    """The files that the processes this user can see have open or memory-mapped."""
    paths = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
                for line in f:
                    fields = line.rstrip("\n").split(None, 5)
                    if len(fields) == 6 and fields[5].startswith("/"):
                        paths.add(fields[5])
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with_target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if with_target.startswith("/"):
                    paths.add(with_target)
        except OSError:  # the process ended, or is not ours
            continue
    return {p for p in paths if not p.endswith(" (deleted)")}


def in_use(path, dir_fd: int | None = None) -> str | None:
    """A held file at `path` or under it, or None."""
    path = os.fsdecode(os.fspath(path))
    if dir_fd is not None:
        path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
    full = os.path.join(
        os.path.realpath(os.path.dirname(os.path.abspath(path))), os.path.basename(path)
    )
    return next((p for p in sorted(held()) if p == full or p.startswith(full + "/")), None)


@contextmanager
def windows_rules():
    """While inside, renaming or deleting what a process holds fails as on Windows."""
    saved = {name: getattr(os, name) for name in ("replace", "rename", "unlink", "remove", "rmdir")}

    def moving(name):
        def guarded(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
            for path, fd in ((src, src_dir_fd), (dst, dst_dir_fd)):
                if in_use(path, fd):
                    raise PermissionError(13, _WHY, os.fspath(path))
            return saved[name](src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

        return guarded

    def deleting(name):
        def guarded(path, *, dir_fd=None):
            if in_use(path, dir_fd):
                raise PermissionError(13, _WHY, os.fspath(path))
            return saved[name](path, dir_fd=dir_fd)

        return guarded

    for name in ("replace", "rename"):
        setattr(os, name, moving(name))
    for name in ("unlink", "remove", "rmdir"):
        setattr(os, name, deleting(name))
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(os, name, function)
