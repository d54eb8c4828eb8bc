"""Models from the Hugging Face hub by id (`train CORPUS --from HuggingFaceTB/SmolLM2-135M`).

Only what authorgen reads is downloaded, once, into Hugging Face's own cache (shared with
`transformers` and `huggingface-cli`; `HF_HOME` moves it): `config.json`, `tokenizer.json`, the
safetensors weights (one file, or the shards its index lists) and `README.md` for the licence.
Offline the cached copy is used (a model not in the cache is retried for about 20 s first, as
`huggingface_hub` does; `HF_HUB_OFFLINE=1` makes no request at all). `HF_ENDPOINT` points elsewhere
than huggingface.co (a mirror; the tests' local server).
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

from authorgen.errors import DataError, SourceError

# "EleutherAI/pythia-70m": an owner and a name (a bare name is a run's: a mistyped run is not
# looked for on the hub)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*$")
NEEDED = ("config.json", "tokenizer.json")


def download(repo_id: str, revision: str | None = None) -> Path:
    """The folder of hub model `repo_id` in the cache, downloading what it lacks.

    Raises:
        DataError: when there is no such model, or it has no safetensors weights.
        SourceError: when the hub cannot be reached and the cache does not have it.
    """
    from huggingface_hub import errors
    from huggingface_hub.utils import logging

    logging.set_verbosity_error()  # its retries' warnings: the outcome is said in one line
    # a file the model does not have (older huggingface_hub: EntryNotFoundError)
    missing = getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError)
    try:
        for name in NEEDED:
            folder = _get(repo_id, name, revision).parent
        try:
            index = _optional(repo_id, "model.safetensors.index.json", revision)
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (missing, errors.LocalEntryNotFoundError):
            shards = ["model.safetensors"]
        for name in shards:
            _get(repo_id, name, revision)
        with contextlib.suppress(missing, errors.LocalEntryNotFoundError):
            _optional(repo_id, "README.md", revision)  # without it, the licence is unknown
    except errors.RepositoryNotFoundError:
        raise DataError(
            f"there is no model {repo_id!r} on the hub (or it is private); check the id"
        ) from None
    except errors.RevisionNotFoundError:
        raise DataError(f"model {repo_id!r} has no revision {revision!r}") from None
    except missing as exc:
        raise DataError(
            f"model {repo_id!r} lacks a file authorgen needs ({exc.args[0].splitlines()[0]}); "
            "it needs config.json, tokenizer.json and safetensors weights"
        ) from None
    except errors.LocalEntryNotFoundError:
        raise SourceError(
            f"model {repo_id!r} is not in the cache and the hub cannot be reached; connect "
            "once to download it, or give the path of a model folder"
        ) from None
    except (errors.HfHubHTTPError, OSError) as exc:
        raise SourceError(f"could not download {repo_id!r} ({exc})") from None
    return folder


def _optional(repo_id: str, name: str, revision: str | None) -> Path:
    """A file the model may lack: one the cache knows it lacks is not asked for again (offline,
    `huggingface_hub` would retry it for 20 s)."""
    from huggingface_hub import errors, try_to_load_from_cache

    known = try_to_load_from_cache(repo_id, name, revision=revision)
    if known is not None and not isinstance(known, str):  # its "known not to exist"
        raise errors.LocalEntryNotFoundError(f"{repo_id} has no {name}")
    return _get(repo_id, name, revision)


def _get(repo_id: str, name: str, revision: str | None) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id, name, revision=revision))


def licence(folder: Path) -> str | None:
    """The licence a model card's front matter names (`license: apache-2.0`), or None."""
    try:
        card = (Path(folder) / "README.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    front = re.match(r"---\n(.*?)\n---", card, re.S)
    found = re.search(r"^license:\s*(\S+)", front.group(1), re.M) if front else None
    return found.group(1).strip("'\"") if found else None
