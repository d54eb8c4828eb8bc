"""Where text comes from: Project Gutenberg mirrors and local files. `fetch_works` is the entry."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from authorgen.corpus import Corpus
from authorgen.errors import AuthorgenError, DataError, UsageError
from authorgen.files import check_name, slugify
from authorgen.sources.gutenberg import book_url, resolve_mirror
from authorgen.sources.local import list_text_files


@dataclass
class FetchResult:
    """What `fetch_works` did, and where: the corpus it filled."""

    corpora_dir: Path
    force: bool = False
    report: Callable[[str], None] = lambda message: None  # stderr notes; never stdout
    corpus: Corpus | None = None
    added: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def has(self, work_id: str) -> bool:
        """True when the work is already stored intact and `force` is off."""
        return not self.force and self.corpus is not None and self.corpus.has_verified(work_id)

    def skip(self, work_id: str, hint: str) -> None:
        self.skipped.append(work_id)
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
        record, written = self.corpus.add_work(raw, force=self.force, **work)
        if not written:
            self.skip(record["id"], "--force replaces it")
            return
        self.added.append(record)
        self.report(f"added {record['id']}: {record['title']} ({record['chars']:,} characters)")


def fetch_works(
    corpora_dir: Path,
    *,
    ids: list[int] = (),
    paths: list[Path] = (),
    name: str | None = None,
    mirror: str | None = None,
    delay: float = 2.0,
    force: bool = False,
    report: Callable[[str], None] = lambda message: None,
) -> FetchResult:
    """Read local `paths` and download Gutenberg ebooks `ids` into corpus `name`.

    The corpus name defaults to a slug of the first work's author (or of the file or folder
    name). Works already in the corpus and intact are skipped, and not downloaded again,
    unless `force`. Each work is saved as soon as it is read, so a failure keeps the ones before.

    Raises:
        UsageError: for a bad name, mirror, delay or id, or when nothing is asked for.
        SourceError: when a download fails after retries.
        DataError: for missing, empty, binary or undecodable text.
    """
    if not ids and not paths:
        raise UsageError("say what to fetch: --id N (a Gutenberg ebook number) or a PATH")
    if name is not None:
        check_name(name, "corpus")
    if not (delay >= 0 and math.isfinite(delay)):
        raise UsageError(f"--delay must be 0 or more seconds (got {delay!r})")
    if any(ebook < 1 for ebook in ids):
        raise UsageError(f"--id must be a positive ebook number (got {min(ids)})")
    base = resolve_mirror(mirror) if ids else None

    result = FetchResult(Path(corpora_dir), force, report)
    if name is not None:
        result.corpus = Corpus.open_or_new(corpora_dir, name)
    for path in paths:
        for file in list_text_files(path):
            try:
                raw = file.read_bytes()
            except OSError as exc:
                raise DataError(f"cannot read {file}: {exc.strerror}") from None
            try:
                result.add(
                    raw, Path(path).stem, source="local", url=str(file.resolve()), title=file.stem
                )
            except DataError as exc:
                raise DataError(f"{file}: {exc}") from None
    if ids:
        from authorgen.sources.http import PoliteSession

        session = PoliteSession(delay=delay)
        for ebook in ids:
            work_id = f"pg{ebook}"
            if result.has(work_id):
                result.skip(work_id, "--force downloads it again")
                continue
            url = book_url(base, ebook)
            report(f"downloading {url}")
            raw = session.get_bytes(url)
            try:
                result.add(raw, work_id, source="gutenberg", work_id=work_id, url=url)
            except DataError as exc:
                raise DataError(f"{url}: {exc}") from None
    return result
