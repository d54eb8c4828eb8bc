"""Project Gutenberg: where a mirror keeps each book. Knows nothing of HTTP itself.

Book text lives at `{mirror}/cache/epub/{id}/pg{id}.txt` (UTF-8). Project Gutenberg asks robots
to use a mirror rather than www.gutenberg.org, to identify themselves and to wait about two
seconds between requests; `PoliteSession` does the last two.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from authorgen.errors import UsageError

# PGLAF's own mirror of the collection, including the generated cache/epub files.
DEFAULT_MIRROR = "https://gutenberg.pglaf.org"
MIRROR_ENV = "AUTHORGEN_MIRROR"


def resolve_mirror(mirror: str | None = None) -> str:
    """`mirror`, else $AUTHORGEN_MIRROR, else the default; checked and without a trailing slash.

    Raises:
        UsageError: when the mirror is not an http(s) URL.
    """
    url = (mirror or os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR).strip()
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UsageError(f"--mirror must be an http:// or https:// URL (got {url!r})")
    return url.rstrip("/")


def book_url(mirror: str, ebook_id: int) -> str:
    """The plain-text URL of ebook `ebook_id` on `mirror`."""
    return f"{mirror}/cache/epub/{ebook_id}/pg{ebook_id}.txt"
