"""Running the app: a listening socket, uvicorn, and a clean stop on Ctrl-C or SIGTERM."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import signal
import socket
from collections.abc import Callable

from authorgen.errors import UsageError

LOOPBACK = {"localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def claim_port(sock: socket.socket) -> None:
    """Make the port this server's alone. On Windows that is SO_EXCLUSIVEADDRUSE: there
    SO_REUSEADDR would let a second server take a port already in use, and "port in use" never
    come. Elsewhere SO_REUSEADDR only lets a restarted server bind past the last one's closing
    connections."""
    exclusive = getattr(socket, "SO_EXCLUSIVEADDRUSE", None)
    if exclusive is not None:
        sock.setsockopt(socket.SOL_SOCKET, exclusive, 1)
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (port 0: a free one).

    Raises:
        UsageError: the port is taken or the host is not an address of this machine.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(
            f"cannot serve on {host!r} ({exc.strerror}); give an address such as 127.0.0.1"
        ) from None
    family, kind, proto, _, where = infos[0]
    sock = socket.socket(family, kind, proto)
    claim_port(sock)
    try:
        sock.bind(where)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", None)):
            raise UsageError(
                f"port {port} on {host} is in use; choose another with --port"
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise UsageError(
                f"may not listen on port {port}; choose one above 1023 with --port"
            ) from None
        raise UsageError(f"cannot serve on {host}:{port} ({exc.strerror}); check --host") from None
    sock.set_inheritable(True)
    return sock


def loopback_names(sock: socket.socket, given: str) -> frozenset[str] | None:
    """The Host headers a loopback server answers: its address, `localhost` and the name it
    was given, with its port (and without, for port 80); None when it is not bound to a
    loopback address (a token guards it then)."""
    host, port = sock.getsockname()[:2]
    if not is_loopback(host):
        return None
    names = {host, f"[{host}]", "localhost", given.lower(), f"[{given.lower()}]"}
    return frozenset({f"{name}:{port}" for name in names} | (names if port == 80 else set()))


def origins(values: list[str]) -> frozenset[str]:
    """--allow-origin's values, checked: scheme://host[:port], as a browser sends Origin.

    Raises:
        UsageError: a value that is not such an origin.
    """
    from urllib.parse import urlsplit

    out = set()
    for value in values:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise UsageError(
                f"--allow-origin takes an origin such as http://localhost:3000 (got {value!r})"
            )
        out.add(f"{parts.scheme}://{parts.netloc.lower()}")
    return frozenset(out)


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(
    app,
    sock: socket.socket,
    ready: Callable[[], None] = lambda: None,
    stopping: Callable[[], None] = lambda: None,
) -> None:
    """Serve `app` on `sock` until Ctrl-C or SIGTERM, then stop cleanly. `ready` is called once
    it answers requests and the signals stop it; `stopping` in the signal handler, to end the
    requests in flight (uvicorn waits two seconds for them, then cancels them)."""
    import uvicorn

    class Server(uvicorn.Server):
        """Stops on SIGINT or SIGTERM without raising the signal again afterwards (uvicorn
        does, which would end the process by the signal instead of exit 0)."""

        @contextlib.contextmanager
        def capture_signals(self):
            stops = (signal.SIGINT, signal.SIGTERM)
            before = {sig: signal.signal(sig, self.handle_exit) for sig in stops}
            try:
                yield
            finally:
                for sig, handler in before.items():
                    signal.signal(sig, handler)

        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            stopping()

        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:
                ready()

    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=2, lifespan="on"
    )
    Server(config).run(sockets=[sock])
