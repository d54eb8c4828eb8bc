"""A local stand-in for the Hugging Face hub, on 127.0.0.1: what `hf_hub_download` asks of it.

`HEAD` and `GET /{repo_id}/resolve/{revision}/{file}` answer with the file, its ETag and the
repository's commit (`X-Repo-Commit`); an unknown repository or file gets the 404 and the
`X-Error-Code` the hub sends (`RepoNotFound`, `EntryNotFound`, the latter with the commit, so
the cache records the file as missing). Downloads are counted.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_PATH = re.compile(r"^/(?P<repo>[^/]+(?:/[^/]+)?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


class LocalHub:
    """`with LocalHub({repo_id: {file name: bytes}}) as hub:` serves at `hub.url`."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos
        self.commits = {
            repo: hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
            for repo, files in repos.items()
        }
        self.downloads: Counter = Counter()  # (repo, file) -> GETs answered with the file
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

            def _answer(self, body: bool):
                found = _PATH.match(self.path.split("?")[0])
                repo = found and found["repo"]
                if not found or repo not in hub.repos:
                    return self._missing("RepoNotFound")
                if found["rev"] not in ("main", hub.commits[repo]):
                    return self._missing("RevisionNotFound")
                data = hub.repos[repo].get(found["file"])
                if data is None:  # the hub says at which commit the file is missing
                    return self._missing("EntryNotFound", hub.commits[repo])
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", hub.commits[repo])
                self.end_headers()
                if body:
                    hub.downloads[repo, found["file"]] += 1
                    self.wfile.write(data)

            def _missing(self, code: str, commit: str | None = None):
                self.send_response(404)
                self.send_header("X-Error-Code", code)
                if commit:
                    self.send_header("X-Repo-Commit", commit)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> LocalHub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
