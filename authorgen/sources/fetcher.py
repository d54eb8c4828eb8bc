"""Fetching into a corpus: `Fetcher.read_catalog` gives the Gutenberg catalog, in which
`catalog.select_works` finds an author's ebooks; `Fetcher.fetch` reads local files (`local`) and
downloads ebooks (`gutenberg`) and stores each as a work of a corpus as soon as it is read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from authorgen.clean import UNWRAP
from authorgen.corpus import Corpus, list_corpora
from authorgen.errors import AuthorgenError, DataError, SourceError, UsageError
from authorgen.files import cache_dir, check_name, slugify
from authorgen.sources.catalog import Book, Selection, read_catalog, select_works
from authorgen.sources.gutenberg import (
    Layouts,
    book_url,
    catalog_urls,
    download_ebook,
    is_url,
    load_catalog,
    resolve_mirror,
)
from authorgen.sources.http import MAX_BYTES, NotFound
from authorgen.sources.local import read_text_files


@dataclass
class FetchResult:
    """What a fetch did, and where: the corpus it filled."""

    corpora_dir: Path
    refresh: bool = False
    unwrap: bool = UNWRAP
    report: Callable[[str], None] = lambda message: None  # stderr notes; never stdout
    corpus: Corpus | None = None
    added: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # catalogued works the mirror lacks

    def has(self, work_id: str) -> bool:
        """True when the work is already stored intact, cleaned the same way, and no refresh."""
        return (
            not self.refresh
            and self.corpus is not None
            and self.corpus.has_verified(work_id, self.unwrap)
        )

    def works(self) -> list[dict]:
        """Each work added or skipped, with its status and corpus: what `fetch --json` prints."""
        name = self.corpus.name if self.corpus is not None else None
        return [
            *({"status": "added", "corpus": name, **w} for w in self.added),
            *({"status": "skipped", "corpus": name, **w} for w in self.skipped),
        ]

    def skip(self, work_id: str, hint: str) -> None:
        self.skipped.append(self.corpus.find(work_id))
        self.report(f"skipped {work_id}: already in corpus {self.corpus.name!r} ({hint})")

    def add(self, raw: bytes, fallback_name: str, **work) -> None:
        """Store one work; the first one names the corpus when no name was given."""
        if self.corpus is None:  # the header's Author line is enough; add_work does the cleaning
            from authorgen.clean import decode, normalize, read_header

            try:
                author = read_header(normalize(decode(raw)[0][:20000]))["author"]
            except AuthorgenError:
                author = None
            name = slugify(author or "") or slugify(fallback_name) or "corpus"
            self.corpus = Corpus.open_or_new(self.corpora_dir, name)
        record, written = self.corpus.add_work(raw, force=self.refresh, unwrap=self.unwrap, **work)
        if not written:
            self.skip(record["id"], "--refresh replaces it")
            return
        self.added.append(record)
        encoding = record["cleaning"]["encoding"]
        note = "" if encoding == "utf-8" else f", decoded from {encoding}"
        self.report(
            f"added {record['id']}: {record['title']} ({record['chars']:,} characters{note})"
        )


class Fetcher:
    """Fetches into `corpora_dir`, politely: one HTTP session, so `delay` holds between all
    requests to a host, the catalog's included.

    Args:
        corpora_dir: the folder of corpora.
        mirror: Gutenberg mirror URL (default: $AUTHORGEN_MIRROR, else the default mirror).
        delay: seconds between requests to one host.
        refresh: download again works (and the catalog) already present.
        unwrap: join hard-wrapped paragraphs when cleaning (`clean.UNWRAP`: yes).
        report: where notes go (stderr); never stdout.
        session: a `PoliteSession` to use (default: one with `delay`).
        max_bytes: the largest book to download or file to read, in bytes.

    Raises:
        UsageError: for a bad mirror URL or delay.
    """

    def __init__(
        self,
        corpora_dir: Path,
        *,
        mirror: str | None = None,
        delay: float = 2.0,
        refresh: bool = False,
        unwrap: bool = UNWRAP,
        report: Callable[[str], None] = lambda message: None,
        session=None,
        max_bytes: int = MAX_BYTES,
    ):
        if not (delay >= 0 and math.isfinite(delay)):
            raise UsageError(f"--delay must be 0 or more seconds (got {delay!r})")
        self.corpora_dir = Path(corpora_dir)
        self.mirror_arg = mirror
        self.delay = delay
        self.refresh = refresh
        self.unwrap = unwrap
        self.report = report
        self._session = session
        self.max_bytes = max_bytes
        self.layouts: Layouts | None = None  # where the mirror keeps books, once one answered

    @property
    def mirror(self) -> str:
        return resolve_mirror(self.mirror_arg)

    @property
    def session(self):
        if self._session is None:
            from authorgen.sources.http import PoliteSession

            self._session = PoliteSession(delay=self.delay)
        return self._session

    def read_catalog(self, catalog: str | Path | None = None) -> list[Book]:
        """The Gutenberg catalog: `catalog` (a file, or a URL: cached), else the mirror's feed,
        else gutenberg.org's (cached).

        Raises:
            DataError: when the file is missing or not a catalog.
            SourceError: when no source can give it and there is no cached copy.
        """
        if catalog is not None and not is_url(str(catalog)):
            try:
                data = Path(catalog).read_bytes()
            except OSError as exc:
                raise DataError(f"cannot read the catalog {catalog}: {exc.strerror}") from None
        else:
            urls = catalog_urls(self.mirror, str(catalog) if catalog is not None else None)
            data = load_catalog(
                self.session, urls, cache_dir(), refresh=self.refresh, report=self.report
            )
        return read_catalog(data)

    def select_authors(
        self,
        queries: list[str],
        catalog: Path | None = None,
        *,
        language: str | None = None,
        include_roles: bool = False,
        limit: int | None = None,
    ) -> list[Selection]:
        """Each author's works to fetch, found in the catalog (`read_catalog`) by
        `catalog.select_works`; nothing is read when there are no queries.

        Raises:
            UsageError: for a name matching several people, or a bad language or limit.
            DataError: for a name matching no one.
            SourceError: when the catalog cannot be had.
        """
        if not queries:
            return []
        books = self.read_catalog(catalog)
        return [
            select_works(books, q, language=language, include_roles=include_roles, limit=limit)
            for q in queries
        ]

    def fetch_all(
        self,
        selections: list[Selection],
        *,
        ids: list[int] = (),
        paths: list[Path] = (),
        name: str | None = None,
    ) -> list[FetchResult]:
        """Fetch each author's selection into its corpus (`name`, else one named after the
        author), then `ids` and `paths` into corpus `name` (see `fetch`)."""
        results = [
            self.fetch(
                ids=[b.id for b in s.books],
                name=name or corpus_name_for(s),
                catalog={b.id: b for b in s.books},
            )
            for s in selections
        ]
        if ids or paths:
            results.append(self.fetch(ids=list(ids), paths=list(paths), name=name))
        return results

    def fetch(
        self,
        *,
        ids: list[int] = (),
        paths: list[Path] = (),
        name: str | None = None,
        catalog: dict[int, Book] | None = None,
    ) -> FetchResult:
        """Read local `paths` and download Gutenberg ebooks `ids` into corpus `name`.

        The corpus name defaults to a slug of the first work's author (or of the file or folder
        name). Works already in the corpus and intact are skipped, and not downloaded again,
        unless `refresh`; a work cleaned with other options is cleaned again from its stored
        raw bytes. Each work is saved as soon as it is read, so a failure keeps the ones before,
        and a download cut off midway resumes on the next run.

        Args:
            catalog: catalog rows of the ids, whose title, authors and language are recorded.
                A catalogued work whose text the mirror lacks (404) is reported and skipped;
                without a catalog row, a 404 is an error.

        Raises:
            UsageError: for a bad name, mirror or id, or when nothing is asked for.
            SourceError: when a download fails after retries.
            DataError: for missing, empty, binary or undecodable text.
        """
        if not ids and not paths:
            raise UsageError(
                'say what to fetch: an author ("Jane Austen"), --id N (a Gutenberg ebook '
                "number) or a PATH"
            )
        if name is not None:
            check_name(name, "corpus")
        if any(ebook < 1 for ebook in ids):
            raise UsageError(f"--id must be a positive ebook number (got {min(ids)})")
        base = self.mirror if ids else None

        result = FetchResult(self.corpora_dir, self.refresh, self.unwrap, self.report)
        if name is not None:
            result.corpus = Corpus.open_or_new(self.corpora_dir, name)
        for path in paths:
            for file, raw in read_text_files(path, self.max_bytes):
                try:
                    result.add(
                        raw,
                        Path(path).stem,
                        source="local",
                        url=str(file.resolve()),
                        title=file.stem,
                    )
                except DataError as exc:
                    raise DataError(f"{file}: {exc}") from None
        for ebook in ids:
            self._fetch_ebook(result, ebook, base, (catalog or {}).get(ebook))
        if ids and (result.corpus is None or not result.corpus.works):
            raise SourceError(
                f"the mirror {base} has none of these works as plain text; try another --mirror"
            )
        return result

    def _fetch_ebook(self, result: FetchResult, ebook: int, base: str, book: Book | None) -> None:
        work_id = f"pg{ebook}"
        if result.corpus is None:  # no --name: the corpus that already holds it, if one does
            holders = [c for c in list_corpora(self.corpora_dir)[0] if c.find(work_id)]
            if len(holders) == 1:
                result.corpus = holders[0]
        if result.has(work_id):
            result.skip(work_id, "--refresh downloads it again")
            return
        work = {"source": "gutenberg", "work_id": work_id, "url": book_url(base, ebook)}
        if book is not None:
            work["catalog"] = {
                "title": book.title,
                "authors": book.authors,
                "language": book.languages[0] if book.languages else None,
            }
        stored = (
            None if self.refresh or result.corpus is None else result.corpus.stored_raw(work_id)
        )
        if stored is not None:  # cleaned with other options: clean again, no download
            work["url"] = result.corpus.find(work_id)["url"]
            result.add(stored, work_id, **work)
            return
        if self.layouts is None or self.layouts.mirror != base:
            self.layouts = Layouts(base)
        try:
            dest, work["url"] = download_ebook(
                self.session, base, ebook, work_id, self.layouts, refresh=self.refresh,
                max_bytes=self.max_bytes, report=self.report,
            )  # fmt: skip
        except NotFound as exc:
            if book is None:
                raise type(exc)(f"{exc}; check the ebook number, or try another --mirror") from None
            result.missing.append(work_id)
            tried = ", ".join(getattr(exc, "tried", []))
            self.report(f"skipped {work_id}: the mirror has no plain text of it (404 for {tried})")
            return
        url = work["url"]
        try:
            result.add(dest.read_bytes(), work_id, **work)
        except DataError as exc:
            dest.unlink(missing_ok=True)
            raise DataError(f"{url}: {exc}") from None
        dest.unlink(missing_ok=True)


def corpus_name_for(selection: Selection) -> str:
    """The default corpus name of an author: "Austen, Jane, 1775-1817" -> "jane-austen"."""
    return slugify(selection.author.display) or "corpus"
