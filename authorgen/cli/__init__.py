"""The `authorgen` command: parse, build a config, call one library function, render.

One module per command; `_common` holds the app and the options they share. Keep torch out of
this package's imports: `authorgen --help` must start fast.
"""

from __future__ import annotations

import errno
import gc
import os
import sys
import traceback

# the commands register themselves, in the order --help lists them
from authorgen.cli import fetch  # noqa: F401

# isort: split
from authorgen.cli import train  # noqa: F401

# isort: split
from authorgen.cli import generate  # noqa: F401

# isort: split
from authorgen.cli import evaluate  # noqa: F401

# isort: split
from authorgen.cli import compare  # noqa: F401

# isort: split
from authorgen.cli import serve  # noqa: F401

# isort: split
from authorgen.cli._common import app
from authorgen.errors import AuthorgenError

__all__ = ["app", "main"]


def main() -> None:
    """Entry point: run the app and turn every failure into one line and an exit code.

    typer itself prints usage errors (exit 2), maps Ctrl-C to exit 130 and a closed stdout
    pipe to exit 1; everything the library raises is handled here.
    """
    # Importing torch and a model fills the heap with long-lived objects, and Python's default
    # collector (every 700 allocations) walks them again and again meanwhile: 0.3 s of a
    # command's start. A young-generation collection every 50,000 allocations costs nothing.
    gc.set_threshold(50_000, 10, 10)
    _utf8_streams()
    try:
        _run()
    finally:
        gc.freeze()  # nor is the heap walked once more on the way out (0.5 s after torch)


def _utf8_streams() -> None:
    """Write UTF-8 whatever the console's code page: on Windows, `generate > out.txt` would
    otherwise write through cp1252 and fail on Polish or Czech letters. stderr replaces what
    it cannot show rather than fail."""
    for stream, errors in ((sys.stdout, "strict"), (sys.stderr, "backslashreplace")):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding != "utf8" and hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors=errors)


def _run() -> None:
    try:
        app()
    except AuthorgenError as exc:
        if os.environ.get("AUTHORGEN_DEBUG") == "1":
            traceback.print_exc()
        print(f"authorgen: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if os.environ.get("AUTHORGEN_DEBUG") == "1":
            raise
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            print(
                f"authorgen: error: the disk is full ({exc.filename or exc.strerror}); what was "
                "saved before is intact: free some space and run the command again (a training "
                "run continues with `authorgen train --resume RUN`)",
                file=sys.stderr,
            )
            sys.exit(1)
        print(
            f"authorgen: unexpected error: {type(exc).__name__}: {exc} "
            "(set AUTHORGEN_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        sys.exit(1)
