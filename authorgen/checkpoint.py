"""The only module that reads or writes a run's files (`run_folder.py` makes, replaces and
sweeps the folder).

```
checkpoints/<run>/
  config.json        model, tokenizer, train and corpus settings, seed, versions, best result
  model.safetensors  weights only (no pickle), best by validation
  tokenizer.json     (and tokenizer.model for bpe and unigram)
  last/              model.safetensors + state.pt (optimizer, step, RNGs, data cursor,
                     carried state): the latest state, where `train --resume` continues
  metrics.jsonl      one JSON object per evaluation
  index-TAG/         the corpus's originality index, memory-mapped (originality.py)
  ngrams-TAG/        the n-gram counts, memory-mapped (ngrams.py); named per training, so that
                     training again never moves them while a reader maps them (run_folder.py)
```
A run directory is self-contained: copy it anywhere (CPU or GPU) and generate from it.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from authorgen import __version__
from authorgen.config import ModelConfig, TrainConfig
from authorgen.errors import DataError, UsageError, first_line
from authorgen.files import (
    atomic_write,
    atomic_write_json,
    check_links_inside,
    existing_dir,
    staged_dir,
)
from authorgen.lora import merged
from authorgen.models import build_model
from authorgen.run_folder import CONFIG, WEIGHTS, existing_mapped_dir, mapped_dir, new_maps
from authorgen.tokenizer import Tokenizer, load_tokenizer

STATE = "state.pt"
METRICS = "metrics.jsonl"
CHART = "loss.png"  # train and validation loss against tokens seen (see train.LossChart)
INDEX = "index"  # the originality index of the corpus (see originality.py)
JUDGED = "eval.json"  # what the last `authorgen eval` on the run's own held-out text found
FORMAT = 1  # run-directory layout version; bump when old runs can no longer be read


@dataclass
class RunRecord:
    """What a run is and how it went: its config.json.

    Written at the start of training, at each better validation loss and at the end, so the
    folder always says what it holds; `format`, `authorgen` and `torch` are added on writing.
    """

    name: str
    created: str  # UTC, ISO 8601
    model: ModelConfig
    tokenizer: dict  # TokenizerConfig fields, the vocabulary made and tokens per character
    train: TrainConfig
    data: dict  # corpus, its sha256, works, holdout, the plan's reasons, split sizes
    seed: int
    device: str
    precision: str  # bf16 | fp32
    threads: int
    processes: int
    params: int
    status: str = "training"  # training | finished | stopped early | interrupted | diverged
    pretrained_embeddings: dict | None = None
    best: dict | None = None  # {step, val_loss, val_bpc} of the weights in model.safetensors
    warnings: list[str] = field(default_factory=list)
    resumed: list[dict] = field(default_factory=list)  # {at, step} per `train --resume`
    result: dict | None = None  # {steps, tokens, elapsed_s, tokens_per_s} once it ended
    base: dict | None = None  # the run it started from (`base.Base.lineage`), if any
    maps: dict = field(default_factory=new_maps)  # its mapped folders (run_folder.py)

    def to_dict(self) -> dict:
        record = {
            "name": self.name,
            "created": self.created,
            "status": self.status,
            "model": self.model.to_dict(),
            "tokenizer": self.tokenizer,
            "train": self.train.to_dict(),
            "data": self.data,
            "pretrained_embeddings": self.pretrained_embeddings,
            "seed": self.seed,
            "device": self.device,
            "precision": self.precision,
            "threads": self.threads,
            "processes": self.processes,
            "params": self.params,
            "best": self.best,
            "warnings": self.warnings,
            "maps": self.maps,
        }
        if self.base is not None:
            record["base"] = self.base
        if self.resumed:
            record["resumed"] = self.resumed
        if self.result is not None:
            record["result"] = self.result
        return record


def save_config(run_dir: Path, record: RunRecord) -> None:
    """Write the run's config.json."""
    config = {
        "format": FORMAT,
        "authorgen": __version__,
        "torch": torch.__version__,
        **record.to_dict(),
    }
    atomic_write_json(Path(run_dir) / CONFIG, config)


def start_run(run_dir: Path, tokenizer: Tokenizer, record: RunRecord, index_sources=None) -> None:
    """Write what a run needs before its first step: the tokenizer, the record and, given the
    corpus's `(label, text part)` pairs, its originality index (kept when already there, as in
    a resumed run)."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    tokenizer.save(run_dir)
    save_config(run_dir, record)
    if index_sources is not None:
        save_index(run_dir, record.maps, index_sources)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, copied out of its map: no file of a loaded model
    stays mapped (Windows could not replace it; run_folder.py)."""
    return {k: v.clone() for k, v in load_file(str(path)).items()}


def save_weights(run_dir: Path, model) -> None:
    """The best-so-far weights, as safetensors (adapters merged in: lora.py)."""
    weights = merged(_weights(model))
    atomic_write(Path(run_dir) / WEIGHTS, lambda tmp: save_file(weights, str(tmp)))


def save_last(run_dir: Path, model, state: dict) -> None:
    """The latest weights and training state (optimizer, step, RNG), swapped in as one folder."""
    # a full disk or Ctrl-C while writing: the previous last/ stays, nothing half-made
    with staged_dir(Path(run_dir) / "last") as staged:
        atomic_write(staged / WEIGHTS, lambda tmp: save_file(_weights(model), str(tmp)))
        atomic_write(staged / STATE, lambda tmp: torch.save(state, tmp))


def remove_leftovers(run_dir: Path) -> None:
    """Delete what a killed process left half-made: `*.tmp` files and staged `*.tmp` folders.
    They are never read (only whole files are renamed into place), only in the way."""
    run_dir = Path(run_dir)
    for folder in (run_dir, run_dir / "last", run_dir / "last.old"):
        for path in folder.glob("*.tmp") if folder.is_dir() else ():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def load_last(run_dir: Path, model, device: torch.device) -> dict | None:
    """Load the latest weights into `model` and return the training state saved with them;
    None when the run has no latest state yet.

    Raises:
        DataError: when the state is damaged.
    """
    folder = existing_dir(Path(run_dir) / "last")
    if folder is None:
        return None
    try:
        model.load_state_dict(load_file(str(folder / WEIGHTS)))
        # weights_only: tensors, numbers and containers; a pickled object is refused, not run
        state = torch.load(folder / STATE, map_location="cpu", weights_only=True)
    except (OSError, SafetensorError, RuntimeError, pickle.UnpicklingError, EOFError) as exc:
        raise DataError(
            f"cannot read the latest state in {folder} ({first_line(exc)}); train the run again"
        ) from None
    model.to(device)
    return state


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop the metrics rows after `step` (a resumed run logs those steps again)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    if len(kept) != len(lines):
        atomic_write(path, lambda tmp: Path(tmp).write_text("".join(f"{k}\n" for k in kept)))


def read_metrics(run_dir: Path) -> list[dict]:
    """The metrics rows of a run (none when it has not evaluated yet); a damaged line is skipped."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return [r for r in rows if isinstance(r, dict) and "tokens" in r and "val_loss" in r]


def save_chart(run_dir: Path) -> Path:
    """Redraw the run's loss.png from its metrics; returns its path."""
    from authorgen.charts import loss_chart

    path = Path(run_dir) / CHART
    rows = read_metrics(run_dir)
    if rows:
        loss_chart(rows, path, Path(run_dir).name)
    return path


def append_metrics(run_dir: Path, row: dict) -> None:
    with open(Path(run_dir) / METRICS, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def save_judgement(run_dir: Path, judgement: dict) -> None:
    """Keep what the last `authorgen eval` of the run on its own held-out text found about its
    samples (realism beside the longest copy), for `runs`, `compare` and the API."""
    atomic_write_json(Path(run_dir) / JUDGED, judgement)


def read_judgement(run_dir: Path) -> dict | None:
    """The judgement `save_judgement` kept, or None (never evaluated, or unreadable)."""
    try:
        judgement = json.loads((Path(run_dir) / JUDGED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return judgement if isinstance(judgement, dict) else None


def run_summary(run_dir: Path) -> dict:
    """What `authorgen runs` lists about a run, from its config.json (and the last eval's
    judgement of its samples: `realism` beside their `longest_copy_chars`), with its `base`."""
    config = read_config(run_dir)
    judged = read_judgement(run_dir) or {}
    model, data = config.get("model", {}), config.get("data", {})
    width = (
        model.get("embedding_dim") if model.get("model") == "transformer" else model.get("hidden")
    )
    shape = f"{model.get('model')} {model.get('layers')}x{width}"
    return {
        "run": Path(run_dir).name,
        "model": shape,
        "tokenizer": config.get("tokenizer", {}).get("kind"),
        "params": config.get("params"),
        "best_val_bpc": (config.get("best") or {}).get("val_bpc"),
        "steps": (config.get("result") or {}).get("steps"),
        "corpus": data.get("corpus"),
        "status": config.get("status"),
        "created": config.get("created"),
        "realism": (judged.get("realism") or {}).get("auc"),
        "longest_copy_chars": judged.get("longest_copy_chars"),
        "base": config.get("base"),  # the run it was fine-tuned from (`base.Base.lineage`)
    }


def list_runs(checkpoints_dir: Path) -> tuple[list[dict], list[str]]:
    """Summaries of every run in `checkpoints_dir`, and a line for each damaged one."""
    found, damaged = [], []
    folder = Path(checkpoints_dir)
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.name.startswith(".") or not (path / CONFIG).is_file():
            continue
        try:
            found.append(run_summary(path))
        except DataError as exc:
            damaged.append(str(exc))
    return found, damaged


def resolve_run(ref: str, checkpoints_dir: Path) -> Path:
    """A run given by name (under `checkpoints_dir`) or by the path of its folder.

    Raises:
        DataError: when there is no such run.
    """
    by_name = Path(checkpoints_dir) / ref
    if "/" not in ref and os.sep not in ref and (by_name / CONFIG).is_file():
        return by_name
    if (Path(ref) / CONFIG).is_file():
        return Path(ref)
    if "/" not in ref and by_name.is_dir() and not (by_name / CONFIG).exists():
        raise DataError(
            f"{by_name} holds no run: a command was stopped before training began; start "
            f"it again with `authorgen train CORPUS --name {ref} --force`"
        )
    raise DataError(
        f"no run named {ref!r} in {checkpoints_dir}; train one with `authorgen train CORPUS` "
        "or give the path of a run folder"
    )


@dataclass
class Run:
    """A trained run, loaded for generation."""

    path: Path
    config: dict
    model: torch.nn.Module
    tokenizer: Tokenizer
    weights: str = "fp32"  # or int8 (generation on a CPU)

    def originality_index(self):
        """The originality index of the corpus (`originality.Index`), or None for a run made
        before runs kept one; opened once per loaded run, so that what it learns (the words,
        the known-words rule's states) serves every generation of the run."""
        from authorgen.originality import Index

        if "_index" not in self.__dict__:
            folder = existing_mapped_dir(self.path, self.config.get("maps"), INDEX)
            self.__dict__["_index"] = Index(folder) if folder else None
        return self.__dict__["_index"]

    def ngrams(self, wanted: bool | None = None):
        """The run's n-gram counts (`ngrams.NGrams`, memory-mapped), or None for a run that
        keeps none, or when `wanted` is False (`--no-ngrams`: not even read); read once per
        loaded run.

        Raises:
            DataError: when they are damaged.
        """
        from authorgen.ngrams import NGrams

        if wanted is False:
            return None
        if "_ngrams" not in self.__dict__:
            folder = existing_mapped_dir(self.path, self.config.get("maps"), "ngrams")
            self.__dict__["_ngrams"] = NGrams.load(folder) if folder else None
        return self.__dict__["_ngrams"]


def save_index(run_dir: Path, maps: dict, sources) -> None:
    """Build the run's originality index of `sources` ((label, text part) pairs) in the folder
    its `maps` name, unless it is there already (a resumed run)."""
    from authorgen.originality import build_index

    if existing_mapped_dir(run_dir, maps, INDEX) is None:
        build_index(mapped_dir(run_dir, maps, INDEX), sources)


def read_config(run_dir: Path) -> dict:
    """A run's config.json, once the run folder is known to hold no link leading out of it.

    Raises:
        DataError: when it is missing, damaged, from a newer authorgen, or the folder has such
            a link.
    """
    check_links_inside(run_dir, "run folder")
    path = Path(run_dir) / CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(config, dict) or "model" not in config:
            raise ValueError("no model section")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is missing or damaged ({exc}); train the run again") from None
    if config.get("format", 0) > FORMAT:
        raise DataError(
            f"{run_dir} was written by a newer authorgen "
            f"({config.get('authorgen')}); upgrade authorgen to read it"
        )
    return config


def load_run(
    run_dir: Path,
    device: torch.device | str = "cpu",
    *,
    last: bool = False,
    weights: str = "fp32",
) -> Run:
    """Read the config, tokenizer and weights of a run (the best weights, or the latest);
    `weights` "int8" turns a transformer's into int8 ones for generation (`devices`).

    Raises:
        DataError: when a file is missing, damaged or does not fit the config.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    try:
        model_config = ModelConfig.from_dict(config["model"])
    except (TypeError, UsageError) as exc:
        raise DataError(f"{run_dir / CONFIG} has a bad model section ({exc})") from None
    tokenizer = load_tokenizer(run_dir)
    if tokenizer.vocab_size != model_config.vocab_size:
        raise DataError(f"{run_dir}: tokenizer and model disagree on the vocabulary size")
    folder = existing_dir(run_dir / "last") if last else run_dir
    stored = (folder or run_dir / "last") / WEIGHTS
    try:
        weights = merged(read_weights(stored))
        model = build_model(model_config, weights)
    except (OSError, SafetensorError, RuntimeError) as exc:
        raise DataError(f"cannot load {stored} ({first_line(exc)}); train the run again") from None
    model.to(device).eval()
    if weights == "int8":
        model.int8_weights()
    return Run(run_dir, config, model, tokenizer, weights)
