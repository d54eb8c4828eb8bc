"""A corpus on disk: `corpora/<name>/` with raw bytes, cleaned works and a corpus.json manifest.

```
corpora/<name>/
  corpus.json              name, created, version, works[...] (provenance + cleaning audit)
  raw/<id>.txt             bytes exactly as downloaded or read
  works/<id>-<slug>.txt    cleaned UTF-8 text, LF, NFC
```
Each file is written atomically and the manifest last, so an interrupted fetch keeps every work
that was finished and the corpus never lists a file it does not have.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from authorgen import __version__
from authorgen.clean import clean_text
from authorgen.errors import DataError, UsageError
from authorgen.files import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_links_inside,
    check_name,
    slugify,
    utc_now,
)

MANIFEST = "corpus.json"
# what a manifest may list: one file name under works/, an id usable as raw/<id>.txt
_SAFE_ID_RE = re.compile(r"[A-Za-z0-9][\w\-]*\Z")
_SAFE_FILE_RE = re.compile(r"works/\w[\w.\-]*\Z")
VAL_FRACTION = 0.1  # single-work corpora: the last 10% of characters, as nanoGPT splits


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Corpus:
    """One author's (or one user's) collection of cleaned works."""

    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def works(self) -> list[dict]:
        return self.manifest["works"]

    @classmethod
    def open(cls, corpora_dir: Path, name: str) -> Corpus:
        """Open an existing corpus.

        Raises:
            UsageError: when the name could leave the corpora folder (`..`, separators).
            DataError: when there is no such corpus or its manifest is unreadable.
        """
        path = Path(corpora_dir) / check_name(name, "corpus")
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise DataError(
                f"no corpus named {name!r} in {corpora_dir}; create it with "
                f"`authorgen fetch --id N --name {name}` or `authorgen fetch FILE --name {name}`"
            )
        check_links_inside(path, "corpus")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            if not isinstance(manifest.get("works"), list):
                raise ValueError("no works list")
            for work in manifest["works"]:  # paths in the manifest stay inside the corpus
                if not (_SAFE_ID_RE.match(work["id"]) and _SAFE_FILE_RE.match(work["file"])):
                    raise ValueError(f"a work lists the path {work['file']!r}")
        except (ValueError, UnicodeDecodeError, TypeError, KeyError) as exc:
            raise DataError(f"{manifest_path} is damaged ({exc}); fetch the corpus again") from None
        return cls(path, manifest)

    @classmethod
    def open_or_new(cls, corpora_dir: Path, name: str) -> Corpus:
        """Open the corpus, or a new empty one that is written to disk with its first work."""
        if (Path(corpora_dir) / name / MANIFEST).exists():
            return cls.open(corpora_dir, name)
        manifest = {"name": name, "created": utc_now(), "authorgen": __version__, "works": []}
        return cls(Path(corpora_dir) / name, manifest)

    def find(self, work_id: str) -> dict | None:
        return next((w for w in self.works if w["id"] == work_id), None)

    def has_verified(self, work_id: str, unwrap: bool | None = None) -> bool:
        """True when the work is listed and its cleaned file is present and intact (and, when
        `unwrap` is given, was cleaned with that option)."""
        record = self.find(work_id)
        if record is None:
            return False
        if unwrap is not None and record["cleaning"].get("unwrap", False) != unwrap:
            return False
        path = self.path / record["file"]
        return path.is_file() and _sha256(path.read_bytes()) == record["sha256_clean"]

    def stored_raw(self, work_id: str) -> bytes | None:
        """The raw bytes of a listed work when they are stored intact, else None."""
        record = self.find(work_id)
        path = self.path / "raw" / f"{work_id}.txt"
        if record is None or not path.is_file():
            return None
        raw = path.read_bytes()
        return raw if _sha256(raw) == record["sha256_raw"] else None

    def add_work(
        self,
        raw: bytes,
        *,
        source: str,
        work_id: str | None = None,
        url: str | None = None,
        title: str | None = None,
        catalog: dict | None = None,
        unwrap: bool = False,
        force: bool = False,
    ) -> tuple[dict, bool]:
        """Clean `raw`, store it and its raw bytes, and list it in the manifest.

        Args:
            raw: the bytes as downloaded or read.
            source: "gutenberg" or "local".
            work_id: the id to store it under; by default `pg<N>` when the text names its
                Gutenberg ebook number, else `local-<first 12 hex digits of its sha256>`.
            url: where it came from (a URL or a file path).
            title: used when the text has no Gutenberg header.
            catalog: title, authors and language from the Gutenberg catalog; they take the
                place of what the text's header says.
            unwrap: join hard-wrapped paragraphs (see `clean.unwrap_paragraphs`).
            force: replace a work already stored under the same id; without it that work is
                kept as it is.

        Returns:
            The manifest record of the work, and whether it was written (False: kept as it was).
        """
        body, report, meta = clean_text(raw, unwrap=unwrap)
        sha_raw = _sha256(raw)
        if work_id is None:
            work_id = f"pg{meta['ebook']}" if meta["ebook"] else f"local-{sha_raw[:12]}"
        if not force and self.has_verified(work_id, unwrap):
            return self.find(work_id), False
        catalog = catalog or {}
        title = catalog.get("title") or meta["title"] or title or work_id
        clean_bytes = body.encode("utf-8")
        record = {
            "id": work_id,
            "source": source,
            "title": title,
            "authors": catalog.get("authors") or ([meta["author"]] if meta["author"] else []),
            "language": catalog.get("language") or meta["language"],
            "url": url,
            "file": f"works/{work_id}-{slugify(title, 40) or 'text'}.txt",
            "sha256_raw": sha_raw,
            "sha256_clean": _sha256(clean_bytes),
            "chars": len(body),
            "added": utc_now(),
            "cleaning": report.to_dict(),
        }
        if self.stored_raw(work_id) != raw:
            atomic_write_bytes(self.path / "raw" / f"{work_id}.txt", raw)
        atomic_write_text(self.path / record["file"], body)
        old = self.find(work_id)
        if old is not None:
            self.works.remove(old)
            if old["file"] != record["file"]:
                (self.path / old["file"]).unlink(missing_ok=True)
        self.works.append(record)
        self.save()
        return record, True

    def save(self) -> None:
        atomic_write_json(self.path / MANIFEST, self.manifest)

    def read(self, record: dict) -> str:
        """The cleaned text of one work."""
        path = self.path / record["file"]
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read {path} ({exc}); fetch the work again") from None

    def summary(self) -> dict:
        """Name, number of works, characters and languages (most works first)."""
        languages = Counter(w["language"] or "?" for w in self.works)
        return {
            "name": self.name,
            "works": len(self.works),
            "chars": sum(w["chars"] for w in self.works),
            "languages": [lang for lang, _ in languages.most_common()],
            "path": str(self.path),
        }

    def sha256(self) -> str:
        """One hash for the whole corpus: its works' clean hashes, in order."""
        return _sha256("\n".join(w["sha256_clean"] for w in self.works).encode())


def list_corpora(corpora_dir: Path) -> tuple[list[Corpus], list[str]]:
    """Every corpus in `corpora_dir`, by name, and a line for each damaged one."""
    found, damaged = [], []
    folder = Path(corpora_dir)
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.name.startswith(".") or not (path / MANIFEST).is_file():
            continue
        try:
            found.append(Corpus.open(folder, path.name))
        except (DataError, UsageError) as exc:  # damaged, or a folder name no corpus can have
            damaged.append(str(exc))
    return found, damaged


CHUNK_CHARS = 1 << 20  # characters read at a time, so no text is ever held whole in memory
WORK_SEPARATOR = "\n\n"  # between works in a training text


@dataclass(frozen=True)
class TextSlice:
    """Characters [start, stop) of a UTF-8 text file; stop None reads to the end."""

    path: Path
    start: int = 0
    stop: int | None = None


def read_chunks(parts: list[str | TextSlice], chunk_chars: int = CHUNK_CHARS) -> Iterator[str]:
    """The text of `parts` (strings or file slices) in chunks, works separated by a blank line.

    Raises:
        DataError: when a file cannot be read.
    """
    for i, part in enumerate(parts):
        if i:
            yield WORK_SEPARATOR
        if isinstance(part, str):
            for at in range(0, len(part), chunk_chars):
                yield part[at : at + chunk_chars]
            continue
        try:
            with open(part.path, encoding="utf-8", newline="") as f:
                skip = part.start
                while skip > 0:
                    got = len(f.read(min(skip, chunk_chars)))
                    skip = skip - got if got else 0
                left = math.inf if part.stop is None else part.stop - part.start
                while left > 0:
                    chunk = f.read(int(min(left, chunk_chars)))
                    if not chunk:
                        break
                    left -= len(chunk)
                    yield chunk
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read {part.path} ({exc}); fetch the work again") from None


@dataclass
class Split:
    """Training and validation text, as parts read in chunks (never whole), and how they were
    chosen. `fingerprint` identifies the text, so derived data (token ids) can be cached."""

    train: list[str | TextSlice]
    val: list[str | TextSlice]
    description: str
    fingerprint: str
    train_chars: int = 0  # the size of the training text, for sizing a model before reading it
    # what each part of train + val is: {id, title[, offset: where it begins in its work]}
    labels: list[dict] = field(default_factory=list)

    @classmethod
    def from_texts(cls, train: str, val: str, description: str) -> Split:
        """A split of two texts in memory, fingerprinted by their content."""
        digest = _sha256(f"{len(train)} {len(val)}\n{train}{val}".encode())
        return cls([train], [val], description, digest, len(train), [TRAIN_LABEL, VAL_LABEL])

    def sources(self) -> list[tuple[dict, str | TextSlice]]:
        """Every part of the text with its label, training parts first; held-out parts' labels
        have `heldout: true`."""
        parts = self.train + self.val
        labels = self.labels or [TRAIN_LABEL] * len(self.train) + [VAL_LABEL] * len(self.val)
        labels = [
            {**label, "heldout": True} if i >= len(self.train) else label
            for i, label in enumerate(labels)
        ]
        return list(zip(labels, parts, strict=True))


TRAIN_LABEL = {"id": "train", "title": "training text"}
VAL_LABEL = {"id": "val", "title": "validation text"}


def _label(work: dict, offset: int = 0) -> dict:
    return {"id": work["id"], "title": work.get("title", ""), "offset": offset}


def split_text(text: str, val_fraction: float = VAL_FRACTION) -> Split:
    """First (1 - val_fraction) of the characters for training, the rest for validation."""
    cut = int(len(text) * (1 - val_fraction))
    description = f"last {val_fraction:.0%} of the characters held out"
    return Split.from_texts(text[:cut], text[cut:], description)


def split_corpus(corpus: Corpus, holdout: str | None = None) -> Split:
    """Hold out a whole work when there are several (the smallest, or `holdout`), else the last 10%.

    Raises:
        DataError: when the corpus has no works or `holdout` names none of them.
    """
    if not corpus.works:
        raise DataError(f"corpus {corpus.name!r} has no works; add some with `authorgen fetch`")
    if holdout is not None and corpus.find(holdout) is None:
        ids = ", ".join(w["id"] for w in corpus.works)
        raise DataError(f"--holdout {holdout!r} is not a work of {corpus.name!r} (works: {ids})")
    if len(corpus.works) == 1:
        work = corpus.works[0]
        path = corpus.path / work["file"]
        cut = int(work["chars"] * (1 - VAL_FRACTION))
        return Split(
            [TextSlice(path, 0, cut)],
            [TextSlice(path, cut)],
            f"last {VAL_FRACTION:.0%} of the characters held out",
            _sha256(f"{corpus.sha256()} last {VAL_FRACTION}".encode()),
            cut,
            [_label(work), _label(work, cut)],
        )
    held = corpus.find(holdout) if holdout else min(corpus.works, key=lambda w: w["chars"])
    trained = [w for w in corpus.works if w is not held]
    return Split(
        [TextSlice(corpus.path / w["file"]) for w in trained],
        [TextSlice(corpus.path / held["file"])],
        f"work {held['id']} ({held['title']}) held out",
        _sha256(f"{corpus.sha256()} holdout {held['id']}".encode()),
        sum(w["chars"] for w in trained),
        [_label(w) for w in [*trained, held]],
    )
