"""The Project Gutenberg catalog (pg_catalog.csv): read it, find an author, choose their works.

Pure functions, no I/O: `read_catalog(data)` parses the file's bytes, `select_works(books,
query, ...)` turns "Jane Austen" into the list of ebooks to fetch and says why each other one
was left out.

The catalog's header is `Text#,Type,Issued,Title,Language,Authors,Subjects,LoCC,Bookshelves`;
multi-valued cells are joined by "; ", and each person is `Surname, Given names, dates`, with a
role in brackets when they are not the author: `Butler, Samuel, 1835-1902 [Translator]`.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

from authorgen.errors import DataError, UsageError
from authorgen.files import fold_ascii

_ROLE_RE = re.compile(r"\s*\[([^\]]+)\]\s*$")
_DATES_RE = re.compile(r"\d|\b(active|fl\.|cent\.|century|BCE)\b", re.I)
_PARENS_RE = re.compile(r"\s*\([^)]*\)")
# Words of titles that mark a volume holding many works ("The Complete Works of ...").
_OMNIBUS_RE = re.compile(
    r"\b(complete|collected)\b.*\b(works|novels|writings|poems|plays|stories|tales)\b", re.I
)
# The header of pg_catalog.csv, and the columns read from it.
HEADER = "Text#,Type,Issued,Title,Language,Authors,Subjects,LoCC,Bookshelves".split(",")  # noqa: SIM905
_COLUMNS = ("Text#", "Type", "Title", "Language", "Authors")


@dataclass(frozen=True)
class Person:
    """One name in an Authors cell: `Austen, Jane, 1775-1817`, maybe with a `[Role]`."""

    key: str  # the cell entry without its role: "Austen, Jane, 1775-1817"
    display: str  # "Jane Austen"
    role: str | None  # None for an author; "Translator", "Editor", "Illustrator", ...
    tokens: frozenset[str]  # folded words of names and dates, for matching
    surname: frozenset[str]
    name_tokens: frozenset[str]  # the same without the dates


@dataclass(eq=False)
class Book:
    """One catalog row. Its people are parsed when first asked for: a search parses only the
    rows whose Authors cell could match."""

    id: int
    type: str
    title: str
    language_cell: str  # "en", or "en; la"
    authors_cell: str

    @cached_property
    def languages(self) -> list[str]:
        return [x.strip() for x in self.language_cell.split(";") if x.strip()]

    @cached_property
    def people(self) -> list[Person]:
        return [parse_person(a) for a in self.authors_cell.split(";") if a.strip()]

    @property
    def authors(self) -> list[str]:
        """Display names of the people credited without a role."""
        return [p.display for p in self.people if p.role is None]

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "title": self.title,
            "authors": self.authors,
            "language": "; ".join(self.languages),
        }


@dataclass
class Selection:
    """The works chosen for one author, and what was left out and why."""

    author: Person
    language: str
    books: list[Book]
    languages: Counter  # language -> works of the author in it
    left_out: dict[str, list[Book]] = field(default_factory=dict)  # reason -> books
    set_aside: list[Person] = field(default_factory=list)  # other matches, not chosen
    language_was_default: bool = False  # chosen as the author's most common language


def _words(text: str) -> list[str]:
    # "Austen-Leigh" and "O'Brien" are one word each, so "Austen" does not match "Austen-Leigh".
    joined = re.sub(r"(?<=[a-z])[-'’](?=[a-z])", "", fold_ascii(text).lower())
    return re.findall(r"[a-z0-9]+", joined)


def parse_person(entry: str) -> Person:
    """`"Austen, Jane, 1775-1817"` -> Person(display "Jane Austen", role None, ...)."""
    entry = " ".join(entry.split())
    role_match = _ROLE_RE.search(entry)
    role = role_match.group(1).strip() if role_match else None
    key = entry[: role_match.start()] if role_match else entry
    parts = [p.strip() for p in key.split(",") if p.strip()]
    names = [p for p in parts if not _DATES_RE.search(p)] or parts[:1]
    surname = _PARENS_RE.sub("", names[0]).strip() if names else key
    given = _PARENS_RE.sub("", names[1]).strip() if len(names) > 1 else ""
    display = f"{given} {surname}".strip() if given else surname
    if role and role.lower() == "author":
        role = None
    return Person(
        key=key,
        display=display,
        role=role,
        tokens=frozenset(_words(key)),
        surname=frozenset(_words(names[0] if names else key)),
        name_tokens=frozenset(w for p in names for w in _words(p)),
    )


def read_catalog(data: bytes) -> list[Book]:
    """Parse pg_catalog.csv, gzipped or not.

    Raises:
        DataError: when the data is not a catalog in the expected format.
    """
    try:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        text = data.decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"the catalog is damaged ({exc}); fetch it again with --refresh") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, [])
    missing = [c for c in _COLUMNS if c not in header]
    if missing:
        raise DataError(
            f"the catalog lacks the columns {', '.join(missing)}; it is not pg_catalog.csv"
        )
    ebook_i, type_i, title_i, lang_i, authors_i = (header.index(c) for c in _COLUMNS)
    width = max(ebook_i, type_i, title_i, lang_i, authors_i) + 1
    books = []
    for row in reader:
        if len(row) < width or not row[ebook_i].isdigit():
            continue
        title = row[title_i]
        books.append(
            Book(
                id=int(row[ebook_i]),
                type=row[type_i].strip(),
                title=" ".join(title.split()) if "\n" in title or "  " in title else title,
                language_cell=row[lang_i],
                authors_cell=row[authors_i],
            )
        )
    return books


def _might_credit(books: list[Book], words: list[str]) -> list[Book]:
    """The books whose Authors cell contains every one of `words` (see `_words`) once folded,
    lowercased and without hyphens and apostrophes: a superset of the books that credit a
    person matching `words`, found with a few whole-catalog string operations."""
    cells = "\n".join(b.authors_cell.replace("\n", " ") for b in books)
    folded = fold_ascii(cells).lower().replace("-", "").replace("'", "").replace("’", "")
    lines = folded.split("\n")
    return [b for b, line in zip(books, lines, strict=True) if all(w in line for w in words)]


def _credited(book: Book, person: Person, include_roles: bool) -> bool:
    return any(p.key == person.key and (include_roles or p.role is None) for p in book.people)


def _resolve(query: str, books: list[Book], include_roles: bool) -> tuple[Person, list[Person]]:
    """The one catalogued person `query` names, and the other matches set aside.

    A person matches when every word of the query is among the words of their catalog entry
    (accents and case ignored, either name order, dates allowed). When several match, an exact
    name wins, then a lone match on the surname ("Austen" is Jane Austen, not Austen
    Chamberlain); otherwise the query is ambiguous.

    Raises:
        DataError: when nobody matches.
        UsageError: when several people match.
    """
    words = set(_words(query))
    if not words:
        raise UsageError(f"{query!r} is not an author's name")
    head = set(_words(query.split(",")[0])) if "," in query else None
    found: dict[str, Person] = {}
    works: Counter = Counter()
    roles_only: Counter = Counter()
    for book in books:
        if book.type != "Text":
            continue
        for person in book.people:
            if not words <= person.tokens or (head and not head <= person.surname):
                continue
            if person.role is None or include_roles:
                found.setdefault(person.key, person)
                works[person.key] += 1
            else:
                roles_only[person.key] += 1
    if not found:
        if roles_only:
            key, count = roles_only.most_common(1)[0]
            raise DataError(
                f"{key} is credited in {count} catalogued texts only as translator, editor or "
                "the like; add --include-roles to fetch those"
            )
        raise DataError(
            f"no author matching {query!r} in the Project Gutenberg catalog; check the "
            "spelling, or try the surname alone"
        )
    people = list(found.values())
    for narrow in (
        lambda p: p.name_tokens == words,
        lambda p: p.surname <= words,
    ):
        if len(people) > 1:
            chosen = [p for p in people if narrow(p)]
            if len(chosen) == 1:
                return chosen[0], [p for p in people if p is not chosen[0]]
    if len(people) > 1:
        people.sort(key=lambda p: -works[p.key])
        listed = "; ".join(
            f'"{p.key}" ({works[p.key]} work{"s" if works[p.key] > 1 else ""})' for p in people[:8]
        )
        more = f" and {len(people) - 8} more" if len(people) > 8 else ""
        raise UsageError(
            f"{query!r} matches {len(people)} authors in the catalog: {listed}{more}; "
            f'repeat with the one you mean, e.g. authorgen fetch "{people[0].key}"'
        )
    return people[0], []


def title_key(title: str) -> str:
    """What makes two editions the same title: words only, accents, case and "(Illustrated)"-like
    asides ignored."""
    return " ".join(_words(_PARENS_RE.sub("", title)))


def select_works(
    books: list[Book],
    query: str,
    *,
    language: str | None = None,
    include_roles: bool = False,
    limit: int | None = None,
) -> Selection:
    """Choose the works to fetch for the author `query` names.

    Keeps `Type == Text` rows that credit the author (as author, or in any role with
    `include_roles`), in `language` (default: the author's most common one), one edition per
    title (the lowest ebook number, usually the original transcription), without omnibus
    "Complete Works" volumes when single works remain, sorted by ebook number, at most `limit`.

    Raises:
        DataError: when nobody matches, or nothing is left in `language`.
        UsageError: when several authors match, or `limit` is under 1.
    """
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be 1 or more (got {limit})")
    books = _might_credit(books, _words(query))  # a few rows of the whole catalog
    person, set_aside = _resolve(query, books, include_roles)
    mine = [b for b in books if b.type == "Text" and _credited(b, person, include_roles)]
    left_out: dict[str, list[Book]] = {}
    if not include_roles:
        roles = [
            b
            for b in books
            if b.type == "Text" and b not in mine and _credited(b, person, include_roles=True)
        ]
        if roles:
            left_out["credited only as translator, editor, ... (--include-roles adds them)"] = roles
    other_types = [b for b in books if b.type != "Text" and _credited(b, person, include_roles)]
    if other_types:
        left_out["not text (sound, images, ...)"] = other_types
    languages = Counter(lang for b in mine for lang in b.languages)
    language_was_default = language is None
    language = language.strip().lower() if language else None  # the catalog writes "en"
    if language is None:
        # most works first; ties go to the language of the lowest ebook number
        first = {lang: i for i, b in reversed(list(enumerate(mine))) for lang in b.languages}
        language = min(languages, key=lambda lang: (-languages[lang], first[lang]))
    elif language not in languages:
        have = ", ".join(f"{lang} ({n})" for lang, n in languages.most_common())
        raise DataError(f"{person.display} has no works in language {language!r}; there are {have}")
    chosen = sorted((b for b in mine if language in b.languages), key=lambda b: b.id)
    other_lang = [b for b in mine if language not in b.languages]
    if other_lang:
        left_out["in another language (--lang chooses)"] = other_lang
    seen: dict[str, Book] = {}
    duplicates = []
    for book in chosen:
        key = title_key(book.title)
        if key in seen:
            duplicates.append(book)
        else:
            seen[key] = book
    chosen = list(seen.values())
    if duplicates:
        left_out["another edition of a title already chosen"] = duplicates
    omnibus = [b for b in chosen if _OMNIBUS_RE.search(b.title)]
    if omnibus and len(chosen) - len(omnibus) >= 2:
        chosen = [b for b in chosen if b not in omnibus]
        left_out["a collected-works volume of single works already chosen"] = omnibus
    if limit is not None and len(chosen) > limit:
        left_out["over --limit"] = chosen[limit:]
        chosen = chosen[:limit]
    return Selection(person, language, chosen, languages, left_out, set_aside, language_was_default)
