"""Where text comes from: Project Gutenberg mirrors and local files. `fetch_works` is the entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from authorgen.corpus import Corpus
from authorgen.errors import AuthorgenError, DataError, UsageError
from authorgen.files import check_name, slugify
from authorgen.sources.local import list_text_files


@dataclass
class FetchResult:
    """What `fetch_works` did."""

    corpus: Corpus | None = None
    added: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


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
    """Download Gutenberg ebooks `ids` and read local `paths` into corpus `name`.

    The corpus name defaults to a slug of the first work's author (or of the file or folder
    name). Works already in the corpus and intact are skipped unless `force`.

    Raises:
        UsageError: for a bad name, mirror or delay, or when nothing is asked for.
        SourceError: when a download fails after retries (works finished before stay).
        DataError: for unreadable local files.
    """
    from authorgen.sources.gutenberg import book_url, resolve_mirror

    if not ids and not paths:
        raise UsageError("say what to fetch: --id N (a Gutenberg ebook number) or a PATH")
    if name is not None:
        check_name(name, "corpus")
    if not delay >= 0 or delay == float("inf"):
        raise UsageError(f"--delay must be 0 or more seconds (got {delay!r})")
    for ebook in ids:
        if ebook < 1:
            raise UsageError(f"--id must be a positive ebook number (got {ebook})")
    result = FetchResult()
    if name is not None:
        result.corpus = Corpus.open_or_new(corpora_dir, name)

    def add(raw: bytes, fallback_name: str, **kwargs) -> None:
        if result.corpus is None:
            from authorgen.clean import clean_text

            try:
                author = clean_text(raw)[2]["author"]
            except AuthorgenError:
                author = None
            auto = slugify(author or "") or slugify(fallback_name) or "corpus"
            result.corpus = Corpus.open_or_new(corpora_dir, auto)
        record, written = result.corpus.add_work(raw, force=force, **kwargs)
        if written:
            result.added.append(record)
            report(f"added {record['id']}: {record['title']} ({record['chars']:,} characters)")
        else:
            result.skipped.append(record["id"])
            report(
                f"skipped {record['id']}: already in corpus {result.corpus.name!r} "
                "(--force replaces it)"
            )

    for path in paths:
        for file in list_text_files(path):
            try:
                raw = file.read_bytes()
            except OSError as exc:
                raise DataError(f"cannot read {file}: {exc.strerror}") from None
            try:
                add(raw, Path(path).stem, source="local", url=str(file.resolve()), title=file.stem)
            except DataError as exc:
                raise DataError(f"{file}: {exc}") from None

    if ids:
        from authorgen.sources.http import PoliteSession

        base = resolve_mirror(mirror)
        session = PoliteSession(delay=delay)
        for ebook in ids:
            work_id = f"pg{ebook}"
            if not force and result.corpus is not None and result.corpus.has_verified(work_id):
                result.skipped.append(work_id)
                report(
                    f"skipped {work_id}: already in corpus {result.corpus.name!r} "
                    "(--force downloads it again)"
                )
                continue
            url = book_url(base, ebook)
            report(f"downloading {url}")
            raw = session.get_bytes(url)
            try:
                add(raw, f"pg{ebook}", source="gutenberg", work_id=work_id, url=url)
            except DataError as exc:
                raise DataError(f"{url}: {exc}") from None
    return result
