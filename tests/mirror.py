"""A Project Gutenberg mirror on 127.0.0.1 for the tests: real HTTP (the standard library's
server), the real layout, byte ranges, ETags and conditional GETs, and faults on demand.

Faults are queued per path and each is used by one request:
- "503": 503 Service Unavailable with Retry-After: 0;
- "429": 429 Too Many Requests with Retry-After: 1 (a client must wait that second);
- "html": a 200 HTML error page in place of the file;
- "reset": the headers and half the body, then a TCP reset;
- "short": the headers (with the full Content-Length) and half the body, then a clean close;
- "ignore-range": the whole file with 200, whatever Range asked;
- "slow": the body in small pieces, slowly (to interrupt the client midway);
- "stall": the headers and half the body, then silence for `Mirror.stall_s` (past the client's
  read timeout) before closing;
- "stall-headers": silence for `Mirror.stall_s` before answering at all.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from authorgen.sources.catalog import HEADER
from authorgen.sources.gutenberg import files_folder

CATALOG_PATH = "/cache/epub/feeds/pg_catalog.csv.gz"

# (id, type, title, language, authors): the rows the tests reason about. Tricky on purpose.
TRICKY_ROWS = [
    (1342, "Text", "Pride and Prejudice", "en", "Austen, Jane, 1775-1817"),
    (161, "Text", "Sense and Sensibility", "en", "Austen, Jane, 1775-1817"),
    (158, "Text", "Emma", "en", "Austen, Jane, 1775-1817"),
    (105, "Text", "Persuasion", "en", "Austen, Jane, 1775-1817"),
    (
        42671,
        "Text",
        "Pride and Prejudice",
        "en",
        "Austen, Jane, 1775-1817; Brock, C. E. (Charles Edmund), 1870-1938 [Illustrator]",
    ),
    (
        31100,
        "Text",
        "The Complete Project Gutenberg Works of Jane Austen",
        "en",
        "Austen, Jane, 1775-1817",
    ),
    (20686, "Sound", "Pride and Prejudice", "en", "Austen, Jane, 1775-1817"),
    (
        44000,
        "Text",
        "Orgueil et préjugés",
        "fr",
        "Austen, Jane, 1775-1817; Fourcade, Eloïse [Translator]",
    ),
    (17797, "Text", "Memoir of Jane Austen", "en", "Austen-Leigh, James Edward, 1798-1874"),
    (45000, "Text", "Politics in Peace and War", "en", "Chamberlain, Austen, Sir, 1863-1937"),
    (
        98,
        "Text",
        "A Tale of Two Cities\nA Story of the French Revolution",
        "en",
        "Dickens, Charles, 1812-1870",
    ),
    (1400, "Text", "Great Expectations", "en", "Dickens, Charles, 1812-1870"),
    (
        46,
        "Text",
        "A Christmas Carol in Prose; Being a Ghost Story of Christmas",
        "en",
        "Dickens, Charles, 1812-1870",
    ),
    (
        19337,
        "Text",
        "A Christmas Carol in Prose; Being a Ghost Story of Christmas (Illustrated)",
        "en",
        "Dickens, Charles, 1812-1870; Leech, John, 1817-1864 [Illustrator]",
    ),
    (730, "Text", "Oliver Twist", "en", "Dickens, Charles, 1812-1870"),
    (9999901, "Sound", "A Christmas Carol (audio)", "en", "Dickens, Charles, 1812-1870"),
    (
        50000,
        "Text",
        "Household Words, Volume 1",
        "en",
        "Various; Dickens, Charles, 1812-1870 [Editor]",
    ),
    (
        51000,
        "Text",
        "Charles Dickens: A Critical Study",
        "en",
        "Chesterton, G. K. (Gilbert Keith), 1874-1936",
    ),
    (31155, "Text", "Pan Tadeusz", "pl", "Mickiewicz, Adam, 1798-1855"),
    (27081, "Text", "Dziady", "pl", "Mickiewicz, Adam, 1798-1855"),
    (
        28240,
        "Text",
        "Pan Tadeusz; or, The Last Foray in Lithuania",
        "en",
        "Mickiewicz, Adam, 1798-1855; Biggs, Maude Ashurst [Translator]",
    ),
    (6000, "Text", "Przedwiośnie", "pl", "Żeromski, Stefan, 1864-1925"),
    (14155, "Text", "Madame Bovary", "fr", "Flaubert, Gustave, 1821-1880"),
    (
        2413,
        "Text",
        "Madame Bovary",
        "en",
        "Flaubert, Gustave, 1821-1880; Marx-Aveling, Eleanor, 1855-1898 [Translator]",
    ),
    (1184, "Text", "The Count of Monte Cristo", "en", "Dumas, Alexandre, 1802-1870"),
    (
        1257,
        "Text",
        "The Three Musketeers",
        "en",
        "Dumas, Alexandre, 1802-1870; Maquet, Auguste, 1813-1888",
    ),
    (3000, "Text", "La dame aux camélias", "fr", "Dumas, Alexandre, 1824-1895"),
    (
        2554,
        "Text",
        "Crime and Punishment",
        "en",
        "Dostoyevsky, Fyodor, 1821-1881; Garnett, Constance, 1861-1946 [Translator]",
    ),
    (
        28054,
        "Text",
        "The Brothers Karamazov",
        "en",
        "Dostoyevsky, Fyodor, 1821-1881; Garnett, Constance, 1861-1946 [Translator]",
    ),
    (11, "Text", "Alice's Adventures in Wonderland", "en", "Carroll, Lewis, 1832-1898"),
    (76, "Text", "Adventures of Huckleberry Finn", "en", "Twain, Mark, 1835-1910"),
]
_LANGS = ["en", "en", "en", "fr", "de", "pl", "es"]


def catalog_rows(filler: int = 300) -> list[dict]:
    """The test catalog: the tricky rows, then `filler` plain rows by made-up authors."""
    rows = []
    for ebook, kind, title, language, authors in TRICKY_ROWS:
        rows.append(
            {"Text#": ebook, "Type": kind, "Title": title, "Language": language, "Authors": authors}
        )
    for i in range(filler):
        rows.append(
            {
                "Text#": 60000 + i,
                "Type": "Text" if i % 9 else "Image",
                "Title": f"Filler Volume {i}",
                "Language": _LANGS[i % len(_LANGS)],
                "Authors": f"Writer{i // 3}, Pat, {1800 + i % 90}-{1860 + i % 90}",
            }
        )
    for row in rows:
        row.update(Issued="2001-01-01", Subjects="Fiction", LoCC="PR", Bookshelves="")
    return rows


def catalog_csv(rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HEADER, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def synthetic_book(ebook: int, title: str, author: str, language: str) -> bytes:
    """A small Gutenberg-style ebook (2020s header) with a wrapped body and an illustration."""
    name = {"en": "English", "fr": "French", "pl": "Polish"}.get(language, language)
    words = [f"word{(ebook * 7 + i * 13) % 97}" for i in range(600)]
    lines, line = [], ""
    for word in words:
        if len(line) + 1 + len(word) > 70:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    body = "\n".join(lines[:10]) + "\n\n[Illustration: a picture]\n\n" + "\n".join(lines[10:])
    return (
        f"The Project Gutenberg eBook of {title}\n\nTitle: {title}\n\nAuthor: {author}\n\n"
        f"Release date: January 1, 2001 [eBook #{ebook}]\n\nLanguage: {name}\n\n"
        f"*** START OF THE PROJECT GUTENBERG EBOOK {title.upper()} ***\n\n{title}\n\n{body}\n\n"
        f"*** END OF THE PROJECT GUTENBERG EBOOK {title.upper()} ***\n\nThe license.\n"
    ).encode()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that went away mid-answer (a timeout, a reset) is part of the tests."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Mirror:
    """The server: `files` maps paths to bodies, `faults` queues faults per path, and `log`
    holds (path, request headers) of every request."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}
        self.log: list[tuple[str, dict]] = []
        self.times: list[float] = []  # time.monotonic() of each request in `log`
        self.stall_s = 2.0
        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Mirror:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_fault(self, path: str, *faults: str) -> None:
        self.faults.setdefault(path, []).extend(faults)

    def requests_to(self, path: str) -> list[dict]:
        return [headers for p, headers in self.log if p == path]

    @staticmethod
    def etag(body: bytes) -> str:
        return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


def _handler(mirror: Mirror):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep the test output clean
            pass

        def _start(self, status: int, headers: dict, length: int) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(length))
            self.end_headers()

        def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
            self._start(status, headers or {}, len(body))
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            with mirror.lock:
                mirror.log.append((path, dict(self.headers)))
                mirror.times.append(time.monotonic())
                queue = mirror.faults.get(path) or []
                fault = queue.pop(0) if queue else None
            if fault == "503":
                return self._send(503, b"busy", {"Retry-After": "0"})
            if fault == "429":
                return self._send(429, b"slow down", {"Retry-After": "1"})
            if fault == "stall-headers":
                time.sleep(mirror.stall_s)
                self.close_connection = True
                return None
            if fault == "html":
                return self._send(200, b"<html>Error</html>", {"Content-Type": "text/html"})
            body = mirror.files.get(path)
            if body is None:
                return self._send(404, b"not found", {"Content-Type": "text/plain"})
            tag = mirror.etag(body)
            headers = {
                "Content-Type": "text/plain; charset=utf-8",
                "ETag": tag,
                "Last-Modified": "Mon, 02 Jan 2006 15:04:05 GMT",
                "Accept-Ranges": "bytes",
            }
            if self.headers.get("If-None-Match") == tag:
                return self._send(304, b"", {"ETag": tag})
            status, start = 200, 0
            wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if_range = self.headers.get("If-Range")
            if wanted and fault != "ignore-range" and (if_range is None or if_range == tag):
                start = int(wanted.group(1))
                if start >= len(body):
                    return self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            payload = body[start:]
            if fault in ("slow", "reset", "short", "stall"):
                self._start(status, headers, len(payload))
                try:
                    if fault == "slow":  # 4 KiB every 20 ms: time to interrupt the client
                        for i in range(0, len(payload), 4096):
                            self.wfile.write(payload[i : i + 4096])
                            self.wfile.flush()
                            time.sleep(0.02)
                        return None
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    if fault == "stall":
                        time.sleep(mirror.stall_s)
                except OSError:  # the client went away
                    pass
                self.close_connection = True
                if fault == "reset":  # SO_LINGER 0: close() sends RST, not FIN
                    time.sleep(0.3)  # let the client read what came, as over a real network
                    linger = struct.pack("ii", 1, 0)
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                return None
            return self._send(status, payload, headers)

    return Handler


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


BOOK_PATH = re.compile(r"^/cache/epub/(\d+)/pg\1\.txt$")


def relayout(mirror: Mirror, layout: str, suffix: str = "-0") -> None:
    """Lay the mirror's books out as `layout`: "cache" (cache/epub/ID/pgID.txt, as built),
    "files" (the classic tree: 1/3/4/1342/1342{suffix}.txt) or "both"."""
    for path in [p for p in mirror.files if BOOK_PATH.match(p)]:
        ebook = int(BOOK_PATH.match(path).group(1))
        body = mirror.files[path] if layout != "files" else mirror.files.pop(path)
        if layout in ("files", "both"):
            mirror.files[f"/{files_folder(ebook)}/{ebook}{suffix}.txt"] = body
