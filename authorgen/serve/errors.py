"""What the serving engine answers instead of samples; the API gives each its status."""

from __future__ import annotations

from authorgen.errors import AuthorgenError, DataError


class Busy(AuthorgenError):
    """More samples are waiting than the server takes: try again shortly."""

    code = "server_busy"


class ClientBusy(Busy):
    """One client has as many samples in flight as one may: try again shortly."""

    code = "client_busy"


class UnknownRun(DataError):
    """No run of that name is served."""


class Stopping(AuthorgenError):
    """The server is stopping: requests in flight end, new ones are refused."""


class Unavailable(AuthorgenError):
    """A served run could not be loaded (its files are missing or damaged)."""
