"""A polite HTTP client: identifying User-Agent, timeouts, retries with backoff, a delay between
requests, and a size cap. Knows nothing of Project Gutenberg.
"""

from __future__ import annotations

import time

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


class PoliteSession:
    """A requests session that waits `delay` seconds between requests and retries failures.

    Retries (urllib3's Retry) cover connection errors and 429/5xx answers, with exponential
    backoff, honouring a server's Retry-After header.
    """

    def __init__(
        self,
        delay: float = 2.0,
        retries: int = 4,
        backoff: float = 1.0,
        timeout: tuple[float, float] = TIMEOUT,
    ):
        self.delay = delay
        self.timeout = timeout
        self._last = 0.0
        retry = Retry(
            total=retries,
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

    def _wait_turn(self) -> None:
        pause = self._last + self.delay - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        self._last = time.monotonic()

    def get_bytes(self, url: str, max_bytes: int = MAX_BYTES) -> bytes:
        """The body of `url`.

        Raises:
            SourceError: on network failure after retries, an error status, an HTML page where
                text was expected, a body over `max_bytes`, or a body shorter than announced.
        """
        self._wait_turn()
        try:
            with self.session.get(url, timeout=self.timeout, stream=True) as resp:
                if resp.status_code == 404:
                    raise SourceError(f"not found (404): {url}; check the ebook number")
                if resp.status_code != 200:
                    raise SourceError(
                        f"{url} answered {resp.status_code} {resp.reason} after retries; "
                        "try again later or use another --mirror"
                    )
                if "text/html" in resp.headers.get("Content-Type", ""):
                    raise SourceError(
                        f"{url} sent an HTML page, not plain text; use another --mirror"
                    )
                data = bytearray()
                for chunk in resp.iter_content(chunk_size=1 << 16):
                    data += chunk
                    if len(data) > max_bytes:
                        raise SourceError(f"{url} is larger than {max_bytes} bytes; refusing it")
                expected = resp.headers.get("Content-Length")
                if (
                    expected
                    and "Content-Encoding" not in resp.headers
                    and int(expected) != len(data)
                ):
                    raise SourceError(
                        f"{url} ended after {len(data)} of {expected} bytes; run the command again"
                    )
                return bytes(data)
        except requests.RequestException as exc:
            reason = type(exc).__name__
            raise SourceError(
                f"could not download {url} ({reason}); check the network or use another --mirror"
            ) from None
