"""Where text comes from, a module each: `gutenberg` (mirrors, where a book and the catalog
live, downloads), `catalog` (Gutenberg's catalog: authors and their works), `local` (files and
folders), `http` (the polite, resumable client); `fetcher` stores what they give in a corpus.
"""

from authorgen.sources.fetcher import Fetcher, FetchResult, corpus_name_for

__all__ = ["FetchResult", "Fetcher", "corpus_name_for"]
