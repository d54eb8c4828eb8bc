"""Project Gutenberg: where a mirror keeps each book and the catalog, and the catalog's cache.

Mirrors lay books out in one or both of two trees (`LAYOUTS`, tried in this order):

    cache     {mirror}/cache/epub/{id}/pg{id}.txt         UTF-8, generated for every ebook
    files-0   {mirror}/1/3/4/1342/1342-0.txt              the classic files tree: UTF-8,
    files-8   {mirror}/1/3/4/1342/1342-8.txt              Latin-1,
    files     {mirror}/1/3/4/1342/1342.txt                ASCII (one-digit ebooks under 0/)

The layout that answered is remembered per mirror (in the cache folder), and tried first
next time, so a command does not probe every layout for every book. The catalog lives at
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


LAYOUTS = ("cache", "files-0", "files-8", "files")
LAYOUTS_FILE = "mirror_layouts.json"  # in the cache folder: {mirror: the layout that answered}


def files_folder(ebook_id: int) -> str:
    """An ebook's folder in the classic files tree: its digits but the last, one folder each,
    then the number (1342 -> 1/3/4/1342; 5 -> 0/5)."""
    digits = str(ebook_id)
    return "/".join([*(digits[:-1] or "0"), digits])


def book_url(mirror: str, ebook_id: int, layout: str = "cache") -> str:
    """The plain-text URL of ebook `ebook_id` on `mirror` in `layout`."""
    if layout == "cache":
        return f"{mirror}/cache/epub/{ebook_id}/pg{ebook_id}.txt"
    suffix = {"files-0": "-0", "files-8": "-8", "files": ""}[layout]
    return f"{mirror}/{files_folder(ebook_id)}/{ebook_id}{suffix}.txt"


class Layouts:
    """The order to try a mirror's layouts in: the one that answered last first (remembered
    across commands in the cache folder), then the others in `LAYOUTS` order."""

    def __init__(self, mirror: str, folder: Path | None = None):
        self.mirror = mirror
        self.path = (folder if folder is not None else cache_dir()) / LAYOUTS_FILE
        try:
            known = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
        self.known = known if isinstance(known, dict) else {}

    def order(self) -> list[str]:
        first = self.known.get(self.mirror)
        return [first] + [x for x in LAYOUTS if x != first] if first in LAYOUTS else list(LAYOUTS)

    def answered(self, layout: str) -> None:
        if self.known.get(self.mirror) != layout:
            self.known[self.mirror] = layout
            atomic_write_json(self.path, self.known)


CATALOG_PATHS = ("cache/epub/feeds/pg_catalog.csv.gz", "cache/epub/feeds/pg_catalog.csv")
# Project Gutenberg's offline catalog feed, its documented interface for programs: used when a
# mirror has no feed of its own.
OFFLINE_CATALOG = "https://www.gutenberg.org/cache/epub/feeds/pg_catalog.csv.gz"


def catalog_urls(mirror: str, url: str | None = None) -> list[str]:
    """Where to get the catalog, in order: `url` alone when given, else the mirror's feed, then
    gutenberg.org's."""
    if url:
        return [url]
    return [f"{mirror}/{path}" for path in CATALOG_PATHS] + [OFFLINE_CATALOG]


def is_url(text: str) -> bool:
    return urlparse(text).scheme in ("http", "https")


CATALOG_MAX_AGE_S = 7 * 24 * 3600  # the catalog changes daily; a week old is fresh enough
CATALOG_MAX_BYTES = 512 * 2**20


def load_catalog(
    session: PoliteSession,
    urls: list[str],
    cache: Path,
    *,
    refresh: bool = False,
    report: Callable[[str], None] = lambda message: None,
) -> bytes:
    """The bytes of pg_catalog.csv.gz (or .csv) from the first of `urls` that has it (a 404
    moves to the next: see `catalog_urls`), through a local cache.

    The copy in `cache` is used while under a week old (`refresh` asks anyway); after that
    its source is asked with a conditional GET, and a 304 keeps the copy. When the source
    cannot be reached, a stale copy is used with a warning.

    Raises:
        SourceError: when there is no copy and no source can give one.
    """
    data_path, meta_path = cache / "pg_catalog.bin", cache / "pg_catalog.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if data_path.exists() else {}
    except (OSError, ValueError):
        meta = {}
    same_mirror = meta.get("sources") == urls
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
        for i, url in enumerate(urls):
            known = validators if url == meta.get("url") else {}
            report(f"checking the catalog {url}" if known else f"downloading {url}")
            try:
                data, headers = session.get_if_changed(url, known, CATALOG_MAX_BYTES)
                break
            except NotFound:
                if i + 1 == len(urls):
                    raise
    except SourceError as exc:
        if not meta:
            raise SourceError(
                f"cannot get the catalog: {exc}; try another --mirror, or download "
                f"{OFFLINE_CATALOG} yourself and pass --catalog FILE"
            ) from None
        report(f"warning: using the catalog from {meta.get('fetched', '?')}: {exc}")
        return data_path.read_bytes()
    if data is None:
        data = data_path.read_bytes()  # 304: our copy is current
    else:
        atomic_write_bytes(data_path, data)
        meta = {"sources": urls, "url": url, "fetched": utc_now()}
        meta.update({k.lower().replace("-", "_"): v for k, v in headers.items()})
    meta["checked"] = time.time()
    atomic_write_json(meta_path, meta)
    return data


def download_ebook(
    session: PoliteSession,
    mirror: str,
    ebook_id: int,
    work_id: str,
    layouts: Layouts,
    *,
    refresh: bool = False,
    max_bytes: int,
    report: Callable[[str], None] = lambda message: None,
) -> tuple[Path, str]:
    """The downloaded text of an ebook, in the cache's downloads folder, and the URL it came
    from: each layout in `layouts.order()` is tried (a 404 moves to the next). A download cut
    off by an earlier run resumes (its part is kept per layout, so bytes of two files never
    mix); one finished earlier (stored, then not yet added) is reused unless `refresh`. The
    caller deletes the file once the work is stored.

    Raises:
        NotFound: when no layout has the ebook; the message names every URL tried.
        SourceError: when a download fails after retries.
    """

    def dest(layout: str) -> Path:
        name = f"{work_id}.txt" if layout == "cache" else f"{work_id}.{layout}.txt"
        return cache_dir() / "downloads" / name

    order = layouts.order()  # a layout with a part of this book left goes first: it resumes
    order.sort(key=lambda layout: not dest(layout).with_name(dest(layout).name + ".part").exists())
    tried = []
    for layout in order:
        url, path = book_url(mirror, ebook_id, layout), dest(layout)
        if refresh:
            path.unlink(missing_ok=True)
        if path.exists():  # only a whole, checked download is ever renamed to dest
            return path, url
        try:  # said once the mirror sends it: a layout without the book says nothing
            session.download(
                url, path, max_bytes=max_bytes, started=lambda url=url: report(f"downloading {url}")
            )
        except NotFound:
            tried.append(url[len(mirror) :])
            continue
        except SourceError:
            layouts.answered(layout)  # it is there, it failed on the way: resume it next time
            raise
        layouts.answered(layout)
        return path, url
    missing = NotFound(
        f"{mirror} has no plain text of ebook {ebook_id}: 404 for {', '.join(tried)}"
    )
    missing.tried = tried
    raise missing
