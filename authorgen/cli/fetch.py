"""`authorgen fetch` and `authorgen corpora`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from authorgen.clean import UNWRAP
from authorgen.cli._common import (
    EPILOG,
    CorporaDir,
    JsonOut,
    Quiet,
    _folder,
    _print_json,
    app,
    sub_app,
)


def _split_sources(sources: list[str]) -> tuple[list[str], list[Path]]:
    """Author names and local paths: an argument is a path when it exists or looks like one."""
    authors, paths = [], []
    for source in sources:
        path = Path(source).expanduser()
        looks_like_path = os.sep in source or "/" in source or source.lower().endswith(".txt")
        if path.exists() or looks_like_path:
            paths.append(path)
        else:
            authors.append(source)
    return authors, paths


@app.command(epilog=EPILOG)
def fetch(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="AUTHOR|PATH",
            help='An author\'s name ("Jane Austen", "Austen", "Austen, Jane"), or local .txt '
            "files or folders of them.",
            show_default=False,
        ),
    ] = None,
    ids: Annotated[
        list[int] | None,
        typer.Option(
            "--id", help="Project Gutenberg ebook number; repeat for several.", show_default=False
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="Corpus name (default: a slug of the author, e.g. jane-austen, or of the file "
            "name).",
            show_default=False,
        ),
    ] = None,
    lang: Annotated[
        str | None,
        typer.Option(
            help="Language code of the works to fetch, as the catalog writes it (en, fr, pl...; "
            "default: the author's most common one).",
            show_default=False,
        ),
    ] = None,
    include_roles: Annotated[
        bool,
        typer.Option(
            "--include-roles",
            help="Also fetch works the author only translated, edited or illustrated.",
        ),
    ] = False,
    limit: Annotated[
        int | None, typer.Option(help="Fetch at most this many works.", show_default=False)
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be fetched and download no book.")
    ] = False,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the works as a JSON list on stdout (with --dry-run: id, title, authors, "
            "language).",
        ),
    ] = False,
    unwrap: Annotated[
        bool,
        typer.Option(
            "--unwrap/--no-unwrap",
            help="Join hard-wrapped lines inside prose paragraphs (paragraph breaks and verse "
            "are kept), so that samples do not break lines mid-sentence; --no-unwrap keeps "
            "the lines as the files have them.",
        ),
    ] = UNWRAP,
    catalog: Annotated[
        str | None,
        typer.Option(
            envvar="AUTHORGEN_CATALOG",
            help="pg_catalog.csv(.gz) as a file or a URL, instead of the mirror's feed (or "
            "gutenberg.org's when the mirror has none); also $AUTHORGEN_CATALOG.",
            show_default=False,
        ),
    ] = None,
    mirror: Annotated[
        str | None,
        typer.Option(
            help="Gutenberg mirror URL (default: $AUTHORGEN_MIRROR or "
            "https://gutenberg.pglaf.org).",
            show_default=False,
        ),
    ] = None,
    delay: Annotated[
        float, typer.Option(help="Seconds to wait between requests to one server.")
    ] = 2.0,
    max_bytes: Annotated[
        str,
        typer.Option(
            metavar="SIZE",
            help="The largest book to download or file to read (k, M, G: powers of 1024); "
            "anything larger is refused and not kept.",
        ),
    ] = "64M",
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh",
            "--force",
            help="Download again works already in the corpus, and check the catalog for changes.",
        ),
    ] = False,
    corpora_dir: CorporaDir = None,
    quiet: Quiet = False,
) -> None:
    """Add works to a corpus: an author's works from Project Gutenberg, ebooks by number, or
    local text files.

    An author is looked up in the Project Gutenberg catalog (cached for a week): works they
    wrote, of type text, in one language, one edition per title. Text is decoded (UTF-8, BOM,
    CRLF), NFC-normalised, stripped of the Gutenberg header, licence, credits and
    [Illustration] markers, and its hard-wrapped prose lines are joined; the raw bytes and an
    audit of what was cut stay in the corpus.
    Downloads resume where they stopped; a second run skips what is already there.

    Examples:

    \b
        authorgen fetch "Jane Austen" --dry-run
        authorgen fetch "Jane Austen"
        authorgen fetch Mickiewicz --lang pl
        authorgen fetch --id 1342 --id 161 --name jane-austen
        authorgen fetch ~/books/dickens/ --name dickens
    """
    from authorgen.cli.console import describe_selection, make_console
    from authorgen.config import parse_size
    from authorgen.errors import UsageError
    from authorgen.sources import Fetcher

    console = make_console(quiet)
    authors, paths = _split_sources(sources or [])
    if not (authors or paths or ids):
        raise UsageError(
            'say what to fetch: an author ("Jane Austen"), --id N (a Gutenberg ebook number) '
            "or a PATH"
        )
    if dry_run and not authors:
        raise UsageError('--dry-run previews an author\'s works: give a name, e.g. "Jane Austen"')
    fetcher = Fetcher(
        _folder(corpora_dir, "corpora"),
        mirror=mirror,
        delay=delay,
        refresh=refresh,
        unwrap=unwrap,
        report=console.print,
        max_bytes=parse_size(max_bytes),
    )
    selections = fetcher.select_authors(
        authors, catalog, language=lang, include_roles=include_roles, limit=limit
    )
    for selection in selections:
        describe_selection(console, selection, table=dry_run)
    if dry_run:
        if json_out:
            _print_json([b.to_dict() for s in selections for b in s.books])
        return
    results = fetcher.fetch_all(selections, ids=ids or [], paths=paths, name=name)
    for result in results:
        summary = result.corpus.summary()
        console.print(
            f"corpus {summary['name']}: {summary['works']} works, "
            f"{summary['chars']:,} characters in {summary['path']} ({len(result.added)} added, "
            f"{len(result.skipped)} already there"
            + (f", {len(result.missing)} without plain text" if result.missing else "")
            + ")"
        )
    if json_out:
        _print_json([work for result in results for work in result.works()])
    console.print(f"next: authorgen train {results[-1].corpus.name}")


corpora_app = sub_app(
    "corpora", "List corpora, or show one corpus's works with where each came from."
)


@corpora_app.callback(invoke_without_command=True)
def corpora(ctx: typer.Context, json_out: JsonOut = False, corpora_dir: CorporaDir = None) -> None:
    """List corpora: name, works, characters, languages (a table on stderr, or --json).

    `authorgen corpora show NAME` lists one corpus's works.
    """
    if ctx.invoked_subcommand is not None:
        return
    from authorgen.cli.console import make_console, print_table
    from authorgen.corpus import list_corpora

    folder = _folder(corpora_dir, "corpora")
    found, damaged = list_corpora(folder)
    console = make_console()
    summaries = [c.summary() for c in found]
    for line in damaged:
        console.print(f"warning: {line}")
    if json_out:
        _print_json(summaries)
        return
    if not summaries:
        console.print(f'no corpora in {folder}; make one with authorgen fetch "Jane Austen"')
        return
    rows = [
        [s["name"], f"{s['works']:,}", f"{s['chars']:,}", ", ".join(s["languages"])]
        for s in summaries
    ]
    columns = ["name", "works", "characters", "languages"]
    print_table(console, columns, rows, right=("works", "characters"))


@corpora_app.command("show")
def corpora_show(
    corpus: Annotated[str, typer.Argument(metavar="NAME", help="A corpus name.")],
    json_out: JsonOut = False,
    corpora_dir: CorporaDir = None,
) -> None:
    """List a corpus's works with provenance: where each came from, its hashes, what cleaning
    cut.

    With --json, the corpus manifest (corpus.json) itself goes to stdout.
    """
    from authorgen.cli.console import describe_corpus, make_console
    from authorgen.corpus import Corpus
    from authorgen.files import check_name

    found = Corpus.open(_folder(corpora_dir, "corpora"), check_name(corpus, "corpus"))
    if json_out:
        _print_json(found.manifest)
        return
    describe_corpus(make_console(), found)
