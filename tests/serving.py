"""`authorgen serve` in a fresh process, for the API and page tests: real runs, a real server on
127.0.0.1 (a free port), stopped with SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from helpers import _command_env, default_sigint


class Server:
    """`authorgen serve ARGS` with AUTHORGEN_HOME=home; `url` once it listens."""

    def __init__(self, home: Path, *args: str, env: dict | None = None):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "authorgen", "serve", "--port", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_command_env(home, env),
            preexec_fn=default_sigint,
        )
        self.lines: list[str] = []
        for line in self.process.stderr:
            self.lines.append(line)
            found = re.search(r"serving at (http://\S+/)", line)
            if found:
                self.url = found.group(1)
                return
        raise AssertionError(f"the server did not start: {''.join(self.lines)}")

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path.lstrip("/"), timeout=60, **kwargs)

    def post(self, path: str, body=None, **kwargs) -> requests.Response:
        if body is not None and not isinstance(body, (bytes, str)):
            kwargs["json"] = body
        elif body is not None:  # sent as JSON, as clients send it, whatever it holds
            kwargs["data"] = body
            kwargs["headers"] = {"Content-Type": "application/json", **kwargs.get("headers", {})}
        return requests.post(self.url + path.lstrip("/"), timeout=60, **kwargs)

    def wait_idle(self, seconds: float = 60, headers: dict | None = None) -> dict:
        """/health once nothing decodes or waits (or after `seconds`, whatever it says)."""
        deadline = time.monotonic() + seconds
        while True:
            health = self.get("/health", headers=headers).json()
            if (health["decoding"], health["waiting"]) == (0, 0) or time.monotonic() > deadline:
                return health
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Stop it with `sig`; the exit code and what it printed on stderr."""
        self.process.send_signal(sig)
        _, err = self.process.communicate(timeout=30)
        return self.process.returncode, "".join(self.lines) + err

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def events(response: requests.Response) -> list:
    """The server-sent events of a streamed response: parsed JSON objects, and "[DONE]"."""
    out = []
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def open_stream(server: Server, body: dict) -> tuple[requests.Response, Iterator[str]]:
    """A streamed completion whose first event has arrived; keep the lines while it should stay
    open (dropping them closes the connection)."""
    response = server.post("/v1/completions", {**body, "stream": True}, stream=True)
    assert response.status_code == 200, response.text
    lines = response.iter_lines(decode_unicode=True)
    for line in lines:
        if line.startswith("data: "):
            return response, lines
    raise AssertionError("the stream ended before its first event")
