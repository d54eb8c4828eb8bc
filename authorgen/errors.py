"""Domain errors. Each carries the exit code the command line returns: 0 ok, 1 unexpected
failure, 2 usage, 3 network or source failure after retries, 4 bad input data, 130 interrupted.

Library code raises these with a message that says what to do; `cli.main` turns them into one
line on stderr, the API into an error object. Nothing else in the package prints an error.

A message names a setting with `field("max_copy")` (or `field("known_words=false")` for a
switch turned off), never as one front end spells it: `str(error)` words it for the command
line (`--max-copy`, `--any-words`), `error.worded(api_name)` for the API (`max_copy`,
`known_words: false`).
"""

import re

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


_FIELD = re.compile("\x00([a-z_]+(?:=[a-z]+)?)\x00")
# switches whose "off" has an option of its own on the command line
_CLI_OFF = {"known_words": "--any-words", "ngrams": "--no-ngrams", "echo": "--no-echo"}


def field(name: str) -> str:
    """A setting named in an error message: "max_copy", or "known_words=false" for a switch
    turned off. Each front end spells it its own way (see `AuthorgenError.worded`)."""
    return f"\x00{name}\x00"


def cli_name(name: str) -> str:
    """How the command line spells a setting: max_copy -> --max-copy."""
    base, _, value = name.partition("=")
    if value == "false" and base in _CLI_OFF:
        return _CLI_OFF[base]
    return "--" + base.replace("_", "-")


def api_name(name: str) -> str:
    """How the API spells a setting: max_copy; known_words=false -> known_words: false."""
    base, _, value = name.partition("=")
    return f"{base}: {value}" if value else base


class AuthorgenError(Exception):
    """An error the user can act on; `exit_code` is what the process returns. Its text names
    settings neutrally (`field`); `str()` words them for the command line."""

    exit_code = EXIT_FAILURE

    def worded(self, name=cli_name) -> str:
        """The message with each setting spelled by `name` (`cli_name` or `api_name`)."""
        text = str(self.args[0]) if self.args else ""
        return _FIELD.sub(lambda m: name(m[1]), text)

    def __str__(self) -> str:
        return self.worded(cli_name)


class UsageError(AuthorgenError):
    """A bad option or name (exit 2, like typer's own usage errors)."""

    exit_code = EXIT_USAGE


class SourceError(AuthorgenError):
    """A download or source that failed after retries (exit 3)."""

    exit_code = EXIT_SOURCE


class DataError(AuthorgenError):
    """Bad input data: empty or undecodable text, unknown corpus or run, corrupt files (exit 4)."""

    exit_code = EXIT_DATA


class Unsupported(DataError):
    """A setting the run cannot honour (--max-copy without an index, say): exit 4, and in the
    API a 400 that names the field."""


class Interrupted(AuthorgenError):
    """Ctrl-C or SIGTERM; whatever could be saved was saved first (exit 130)."""

    exit_code = EXIT_INTERRUPTED
