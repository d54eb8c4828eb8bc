"""A polite HTTP client: identifying User-Agent, timeouts, retries with backoff, a delay between
requests to one host, a size cap, and resumable downloads. Knows nothing of Project Gutenberg.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from authorgen import __version__
from authorgen.errors import SourceError

USER_AGENT = (
    f"authorgen/{__version__} (command-line text generator; fetches public-domain books "
    f"politely; python-requests/{requests.__version__})"
)
TIMEOUT = (10.0, 60.0)  # seconds: connect, and between bytes of the response
MAX_BYTES = 64 * 2**20  # the longest Gutenberg texts are under 20 MB
RETRY_STATUSES = (429, 500, 502, 503, 504)
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+)")


class NotFound(SourceError):
    """The server answered 404."""


class _Cut(Exception):
    """The body stopped before its end (connection reset, or shorter than announced)."""


class PoliteSession:
    """A requests session that waits `delay` seconds from the end of one request to a host to the
    start of the next, and retries.

    Retries (urllib3's Retry) cover connection errors and 429/5xx answers, with exponential
    backoff, honouring a server's Retry-After header. A body cut off midway is resumed by
    `download` with a Range request.
    """

    def __init__(
        self,
        delay: float = 2.0,
        retries: int = 4,
        backoff: float = 1.0,
        timeout: tuple[float, float] = TIMEOUT,
    ):
        self.delay = delay
        self.backoff = backoff
        self.retries = retries
        self.timeout = timeout
        self._last: dict[str, float] = {}  # host -> when our last request to it ended
        retry = Retry(
            total=retries,
            connect=min(retries, 2),  # a refused connection is more often a wrong URL than busy
            backoff_factor=backoff,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "HEAD"}),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def _wait_turn(self, url: str) -> None:
        pause = self._last.get(urlparse(url).netloc, 0.0) + self.delay - time.monotonic()
        if pause > 0:
            time.sleep(pause)

    @contextmanager
    def _get(self, url: str, headers: dict[str, str], ok: tuple[int, ...]) -> Iterator:
        """A streamed GET of `url`, its status checked against `ok`.

        Raises:
            NotFound: on 404.
            SourceError: on another status outside `ok`, an HTML page, or a network failure.
        """
        self._wait_turn(url)
        try:
            with self.session.get(url, headers=headers, timeout=self.timeout, stream=True) as resp:
                if resp.status_code == 404:
                    raise NotFound(f"not found (404): {url}")
                if resp.status_code not in ok:
                    raise SourceError(
                        f"{url} answered {resp.status_code} {resp.reason} after retries; "
                        "try again later or use another --mirror"
                    )
                if resp.status_code in (200, 206) and "text/html" in resp.headers.get(
                    "Content-Type", ""
                ):
                    raise SourceError(
                        f"{url} sent an HTML page, not the file; use another --mirror"
                    )
                yield resp
        except requests.RequestException as exc:
            why = "connection refused" if "refused" in str(exc).lower() else type(exc).__name__
            raise SourceError(
                f"could not download {url} ({why}); check the network or use another --mirror"
            ) from None
        finally:  # the delay counts from the end of this request and its retries
            self._last[urlparse(url).netloc] = time.monotonic()

    @staticmethod
    def _copy_body(resp, sink: BinaryIO, start: int, max_bytes: int, url: str) -> int:
        """Write the body to `sink`; return the bytes the sink holds (`start` + body).

        Raises:
            _Cut: when the connection broke or the body was shorter than announced.
            SourceError: when the total would pass `max_bytes`.
        """
        size = start
        try:
            for chunk in resp.iter_content(chunk_size=1 << 16):
                sink.write(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise SourceError(
                        f"{url} is larger than {max_bytes:,} bytes; refusing it (raise "
                        "--max-bytes if you trust the server)"
                    )
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Cut(type(exc).__name__) from None
        except requests.Timeout:
            raise _Cut("read timeout") from None
        expected = resp.headers.get("Content-Length")
        if expected and "Content-Encoding" not in resp.headers and size - start < int(expected):
            raise _Cut(f"{size - start} of {expected} bytes")
        return size

    def get_if_changed(
        self, url: str, validators: dict[str, str], max_bytes: int = MAX_BYTES
    ) -> tuple[bytes | None, dict[str, str]]:
        """A conditional GET: None when the server says our copy is current (304).

        Args:
            validators: request headers such as If-None-Match and If-Modified-Since.

        Returns:
            The body (or None on 304), and the response's ETag and Last-Modified headers.
        """
        with self._get(url, validators, ok=(200, 304)) as resp:
            kept = {k: resp.headers[k] for k in ("ETag", "Last-Modified") if k in resp.headers}
            if resp.status_code == 304:
                return None, kept
            sink = io.BytesIO()
            try:
                self._copy_body(resp, sink, 0, max_bytes, url)
            except _Cut as cut:
                raise SourceError(f"{url} was cut off ({cut}); run the command again") from None
            return sink.getvalue(), kept

    def download(
        self,
        url: str,
        dest: Path,
        max_bytes: int = MAX_BYTES,
        attempts: int = 4,
        started: Callable[[], None] | None = None,
    ) -> int:
        """Download `url` to `dest` through `dest.part`, resuming where an earlier try stopped.
        `started` is called once, when the server first sends the file (not for a 404).

        The bytes go to `dest.part`; a part left by a cut connection, an earlier run or Ctrl-C
        is continued with a Range request. `If-Range` carries the validator (ETag or
        Last-Modified) of the first response, so a file that changed on the server in between is
        sent whole and the download starts over, as it does when a server ignores Range. Only a
        body of the announced length is renamed to `dest`, so a `.part` is never a finished file.

        Returns:
            The size of `dest` in bytes.

        Raises:
            NotFound: on 404.
            SourceError: on failure after `attempts` tries; the part stays for the next run.
        """
        dest = Path(dest)
        part = dest.with_name(dest.name + ".part")
        tag_file = dest.with_name(dest.name + ".part.validator")
        dest.parent.mkdir(parents=True, exist_ok=True)
        why = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            have = part.stat().st_size if part.exists() else 0
            headers = {"Accept-Encoding": "identity"}  # byte ranges of the file itself
            validator = tag_file.read_text().strip() if tag_file.exists() and have else ""
            if have:
                headers["Range"] = f"bytes={have}-"
                if validator:
                    headers["If-Range"] = validator
            with self._get(url, headers, ok=(200, 206, 416)) as resp:
                total, start = self._range_of(resp, have)
                if resp.status_code == 416 and total == have:
                    break  # the part was already whole
                if resp.status_code == 416 or (resp.status_code == 206 and start != have):
                    part.unlink(missing_ok=True)  # the part does not fit the file: start over
                    why = f"the server refused the range {headers['Range']}"
                    continue
                if resp.status_code == 200:
                    tag = resp.headers.get("ETag", "")
                    tag = tag if tag and not tag.startswith("W/") else ""
                    tag_file.write_text(tag or resp.headers.get("Last-Modified", ""))
                if started is not None:
                    started()
                    started = None
                with open(part, "ab" if start else "wb") as sink:
                    try:
                        size = self._copy_body(resp, sink, start, max_bytes, url)
                    except _Cut as cut:
                        why = str(cut)
                        continue
                    except SourceError:  # too large: nothing worth resuming
                        part.unlink(missing_ok=True)
                        tag_file.unlink(missing_ok=True)
                        raise
                    if total is not None and size != total:
                        why = f"{size} of {total} bytes"
                        continue
                    sink.flush()
                    os.fsync(sink.fileno())
                break
        else:
            kept = part.stat().st_size if part.exists() else 0
            raise SourceError(
                f"{url} was cut off {attempts} times ({why}); {kept:,} bytes are kept in {part}: "
                "run the command again to resume"
            )
        size = part.stat().st_size
        os.replace(part, dest)
        tag_file.unlink(missing_ok=True)
        return size

    @staticmethod
    def _range_of(resp, have: int) -> tuple[int | None, int]:
        """(total size if known, offset the body starts at) of a 200, 206 or 416 answer."""
        if resp.status_code == 200:
            length = resp.headers.get("Content-Length")
            plain = "Content-Encoding" not in resp.headers
            return (int(length) if length and plain else None), 0
        match = _CONTENT_RANGE_RE.search(resp.headers.get("Content-Range", ""))
        if not match:
            return None, -1  # a range answer without a usable Content-Range: start over
        start = int(match.group(1)) if match.group(1) is not None else have
        return int(match.group(2)), start
