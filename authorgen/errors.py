"""Domain errors. Each carries the exit code the command line returns: 0 ok, 1 unexpected
failure, 2 usage, 3 network or source failure after retries, 4 bad input data, 130 interrupted.

Library code raises these with a message that says what to do; `cli.main` turns them into one
line on stderr. Nothing else in the package prints an error.
"""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_SOURCE = 3
EXIT_DATA = 4
EXIT_INTERRUPTED = 130


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), for
    quoting a library's error inside one of ours."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class AuthorgenError(Exception):
    """An error the user can act on; `exit_code` is what the process returns."""

    exit_code = EXIT_FAILURE


class UsageError(AuthorgenError):
    """A bad option or name (exit 2, like typer's own usage errors)."""

    exit_code = EXIT_USAGE


class SourceError(AuthorgenError):
    """A download or source that failed after retries (exit 3)."""

    exit_code = EXIT_SOURCE


class DataError(AuthorgenError):
    """Bad input data: empty or undecodable text, unknown corpus or run, corrupt files (exit 4)."""

    exit_code = EXIT_DATA


class Interrupted(AuthorgenError):
    """Ctrl-C or SIGTERM; whatever could be saved was saved first (exit 130)."""

    exit_code = EXIT_INTERRUPTED
