"""Project Gutenberg: where a mirror keeps each book and the catalog, and the catalog's cache.

Book text lives at `{mirror}/cache/epub/{id}/pg{id}.txt` (UTF-8), the catalog at
`{mirror}/cache/epub/feeds/pg_catalog.csv.gz`. Project Gutenberg asks robots
to use a mirror rather than www.gutenberg.org, to identify themselves and to wait about two
seconds between requests; `PoliteSession` does the last two.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from authorgen.errors import SourceError, UsageError
from authorgen.files import atomic_write_bytes, atomic_write_json, cache_dir, utc_now
from authorgen.sources.http import NotFound, PoliteSession

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


CATALOG_PATHS = ("cache/epub/feeds/pg_catalog.csv.gz", "cache/epub/feeds/pg_catalog.csv")
CATALOG_MAX_AGE_S = 7 * 24 * 3600  # the catalog changes daily; a week old is fresh enough
CATALOG_MAX_BYTES = 512 * 2**20


def load_catalog(
    session: PoliteSession,
    mirror: str,
    cache: Path,
    *,
    refresh: bool = False,
    report: Callable[[str], None] = lambda message: None,
) -> bytes:
    """The bytes of the mirror's pg_catalog.csv.gz (or .csv), through a local cache.

    The copy in `cache` is used while under a week old (`refresh` asks anyway); after that
    the mirror is asked with a conditional GET, and a 304 keeps the copy. When the mirror
    cannot be reached, a stale copy is used with a warning.

    Raises:
        SourceError: when there is no copy and the mirror cannot give one.
    """
    data_path, meta_path = cache / "pg_catalog.bin", cache / "pg_catalog.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if data_path.exists() else {}
    except (OSError, ValueError):
        meta = {}
    same_mirror = meta.get("mirror") == mirror
    age = time.time() - meta.get("checked", 0)
    if same_mirror and not refresh and 0 <= age < CATALOG_MAX_AGE_S:
        return data_path.read_bytes()
    validators = {}
    if same_mirror:
        if meta.get("etag"):
            validators["If-None-Match"] = meta["etag"]
        if meta.get("last_modified"):
            validators["If-Modified-Since"] = meta["last_modified"]
    try:
        for i, path in enumerate(CATALOG_PATHS):
            url = f"{mirror}/{path}"
            report(f"checking the catalog {url}" if validators else f"downloading {url}")
            try:
                data, headers = session.get_if_changed(url, validators, CATALOG_MAX_BYTES)
                break
            except NotFound:
                if i + 1 == len(CATALOG_PATHS):
                    raise
    except SourceError as exc:
        if not meta:
            raise SourceError(
                f"cannot get the catalog: {exc}; try another --mirror, or download "
                "https://www.gutenberg.org/cache/epub/feeds/pg_catalog.csv.gz yourself and "
                "pass --catalog FILE"
            ) from None
        report(f"warning: using the catalog from {meta.get('fetched', '?')}: {exc}")
        return data_path.read_bytes()
    if data is None:
        data = data_path.read_bytes()  # 304: our copy is current
    else:
        atomic_write_bytes(data_path, data)
        meta = {"mirror": mirror, "url": url, "fetched": utc_now()}
        meta.update({k.lower().replace("-", "_"): v for k, v in headers.items()})
    meta["checked"] = time.time()
    atomic_write_json(meta_path, meta)
    return data


def download_ebook(
    session: PoliteSession,
    url: str,
    work_id: str,
    *,
    refresh: bool = False,
    max_bytes: int,
    report: Callable[[str], None] = lambda message: None,
) -> Path:
    """The downloaded text of an ebook, in the cache's downloads folder. A download cut off by
    an earlier run resumes; one finished earlier (stored, then not yet added) is reused unless
    `refresh`. The caller deletes the file once the work is stored.

    Raises:
        NotFound: when the mirror has no such file.
        SourceError: when the download fails after retries.
    """
    dest = cache_dir() / "downloads" / f"{work_id}.txt"
    if refresh:
        dest.unlink(missing_ok=True)
    if not dest.exists():  # only a whole, checked download is ever renamed to dest
        report(f"downloading {url}")
        session.download(url, dest, max_bytes=max_bytes)
    return dest
