"""`authorgen generate`."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from typing import Annotated

import typer

from authorgen.cli._common import (
    EPILOG,
    CheckpointsDir,
    Device,
    KnownWords,
    Ngrams,
    Quiet,
    Seed,
    Threads,
    _folder,
    app,
)
from authorgen.config import KNOWN_WORDS, SampleConfig


def _read_prompt(prompt: str | None) -> str:
    """--prompt TEXT, or stdin when --prompt is '-' or stdin is a pipe or a file."""
    if prompt == "-":
        return sys.stdin.read()
    if prompt is not None:
        return prompt
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return ""
    if stat.S_ISFIFO(mode) or stat.S_ISREG(mode):
        return sys.stdin.read()
    return ""


def _unescape(text: str) -> str:
    """\\n, \\t and \\\\ in a --stop string, as a shell user types them."""
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), text)


@app.command(epilog=EPILOG)
def generate(
    run: Annotated[
        str, typer.Argument(metavar="RUN", help="Run name (under checkpoints/) or run folder.")
    ],
    prompt: Annotated[
        str | None,
        typer.Option(
            help="Text to continue; '-' reads stdin (read too when stdin is piped).",
            show_default=False,
        ),
    ] = None,
    length: Annotated[
        int, typer.Option(help="Characters to generate per sample, the prompt not counted.")
    ] = SampleConfig.length,
    n: Annotated[int, typer.Option("-n", help="Number of samples, written as one batch.")] = 1,
    seed: Seed = None,
    temperature: Annotated[
        float,
        typer.Option(
            help="Randomness: 0 always picks the likeliest token; 1 samples the model as is; "
            "higher is wilder.",
            rich_help_panel="Samplers",
        ),
    ] = SampleConfig.temperature,
    top_k: Annotated[
        int | None,
        typer.Option(
            help="Draw only from the K likeliest tokens.",
            show_default=False,
            rich_help_panel="Samplers",
        ),
    ] = None,
    top_p: Annotated[
        float,
        typer.Option(
            help="Draw only from the likeliest tokens that together have probability P "
            "(nucleus sampling; 1 is off).",
            rich_help_panel="Samplers",
        ),
    ] = SampleConfig.top_p,
    min_p: Annotated[
        float,
        typer.Option(
            help="Draw only from tokens at least P times as likely as the likeliest (min-p; 0 "
            "is off).",
            rich_help_panel="Samplers",
        ),
    ] = SampleConfig.min_p,
    typical_p: Annotated[
        float,
        typer.Option(
            help="Draw only from the tokens whose surprise is nearest the average, the fewest "
            "that together have probability P (locally typical sampling; 1 is off).",
            rich_help_panel="Samplers",
        ),
    ] = SampleConfig.typical_p,
    eta: Annotated[
        float,
        typer.Option(
            help="Ban the tokens less likely than min(ETA, sqrt(ETA) exp(-entropy)) (eta "
            "sampling; 0 is off).",
            rich_help_panel="Samplers",
        ),
    ] = SampleConfig.eta,
    repetition_penalty: Annotated[
        float,
        typer.Option(
            help="Make tokens used in the last --repetition-window tokens less likely (1 is "
            "off). With the n-gram mix a recent token's probability p becomes p**P; with "
            "--no-ngrams positive logits are divided by P, negative ones multiplied. For word "
            "and subword models.",
            rich_help_panel="Samplers",
        ),
    ] = SampleConfig.repetition_penalty,
    repetition_window: Annotated[
        int,
        typer.Option(
            help="Tokens the repetition penalty looks back over.", rich_help_panel="Samplers"
        ),
    ] = SampleConfig.repetition_window,
    no_repeat_ngram: Annotated[
        int,
        typer.Option(
            help="Never repeat a run of N tokens (0 is off; characters are tokens in char "
            "models, so use 10 or more there).",
            rich_help_panel="Samplers",
        ),
    ] = SampleConfig.no_repeat_ngram,
    dry: Annotated[
        float,
        typer.Option(
            help="DRY: make a token less likely when it would extend a repeat of the text longer "
            "than --dry-allowed tokens, by M x 1.75^(length - allowed) (0 is off).",
            rich_help_panel="Samplers",
        ),
    ] = SampleConfig.dry,
    dry_allowed: Annotated[
        int,
        typer.Option(
            help="Tokens a repeat may have before DRY penalises it (characters in a char model).",
            rich_help_panel="Samplers",
        ),
    ] = SampleConfig.dry_allowed,
    stop: Annotated[
        list[str] | None,
        typer.Option(
            help="End a sample before this text (not printed); repeatable; \\n is a newline.",
            show_default=False,
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="sentence or paragraph: after --length characters, go on to the end of one "
            "(looking at most 1,000 characters further, or --length if more).",
            show_default=False,
        ),
    ] = None,
    max_copy: Annotated[
        int | None,
        typer.Option(
            help="Resample whatever would copy more than N characters verbatim from the corpus "
            "(30-60 is sensible).",
            show_default=False,
        ),
    ] = None,
    known_words: KnownWords = None,
    ngrams: Ngrams = None,
    ngram_share: Annotated[
        float,
        typer.Option(
            help="The n-gram counts' weight in the mix, as a multiple of the weight fitted at "
            "training (1: as fitted; 2: twice the counts' share, at most all).",
            rich_help_panel="Samplers",
        ),
    ] = SampleConfig.ngram_share,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="One JSON object per sample on stdout (see the README)."),
    ] = False,
    echo: Annotated[bool, typer.Option(help="Print the prompt before the continuation.")] = True,
    against_base: Annotated[
        bool,
        typer.Option(
            help="A run fine-tuned from a base (train --from): also report the longest copy "
            "from the base's corpus."
        ),
    ] = False,
    device: Device = "auto",
    precision: Annotated[
        str,
        typer.Option(
            help="Weights to generate with: auto (int8 for a transformer on a CPU that "
            "measures faster with them, else fp32), fp32 (the same text as ever for a seed) "
            "or int8."
        ),
    ] = "auto",
    threads: Threads = None,
    checkpoints_dir: CheckpointsDir = None,
    quiet: Quiet = False,
) -> None:
    """Generate text from a trained run, streamed to stdout as it is written.

    Only the text goes to stdout; the seed, an originality report per sample and other notes go
    to stderr. With -n above 1 the samples are separated by a line holding a single '%' (as in
    fortune files); the first streams, the others follow in order. --json prints one object per
    line instead: {text, prompt, seed, temperature, top_k, top_p, chars, tokens, elapsed_s,
    stopped, originality, ...}.
    """
    from authorgen.clean import normalize
    from authorgen.cli.console import make_console

    config = SampleConfig(
        temperature=temperature,
        length=length,
        n=n,
        seed=seed,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        typical_p=typical_p,
        eta=eta,
        repetition_penalty=repetition_penalty,
        repetition_window=repetition_window,
        no_repeat_ngram=no_repeat_ngram,
        dry=dry,
        dry_allowed=dry_allowed,
        stop=tuple(_unescape(s) for s in stop or ()),
        until=until,
        max_copy=max_copy,
        known_words=known_words,
        ngrams=ngrams,
        ngram_share=ngram_share,
    )
    text = normalize(_read_prompt(prompt))  # echoed as the model reads it: NFC, LF
    console = make_console(quiet)

    from authorgen.base import base_index
    from authorgen.checkpoint import load_run, read_config, resolve_run
    from authorgen.cli.console import describe_base_copy, describe_sample
    from authorgen.devices import generation_weights, resolve_device, use_threads
    from authorgen.files import cache_dir
    from authorgen.sample import Generation, sample_seeds

    use_threads(threads)
    dev = resolve_device(device)
    path = resolve_run(run, _folder(checkpoints_dir, "checkpoints"))
    kind = read_config(path)["model"].get("model", "lstm")
    weights = generation_weights(precision, kind, dev, cache_dir())
    loaded = load_run(path, dev, weights=weights)
    index = loaded.originality_index()
    against = base_index(loaded.config, path.parent) if against_base else None
    seeds = sample_seeds(config)
    counts = loaded.ngrams(ngrams)
    generation = Generation(loaded.model, loaded.tokenizer, text, config, seeds, dev, index, counts)
    if index is None:
        console.print(
            "note: this run has no originality index (trained with --no-index, or before runs "
            "kept one), so samples get no originality report"
            + (" and --known-words is off" if known_words is None and KNOWN_WORDS else "")
        )
    word_model = loaded.tokenizer.kind == "word"
    if known_words and word_model:
        console.print("note: a word model writes only its own words; --known-words changes nothing")
    unknown = loaded.tokenizer.unknown(text) if word_model else []
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if unknown[10:] else "")
        console.print(f"note: words this model does not know, read as <unk>: {shown}")
    again = f"--seed {seeds[0]}" + (" --precision int8" if weights == "int8" else "")
    console.print(
        f"seed {seeds[0]}" + (", int8 weights" if weights == "int8" else "")
        + f" ({again} gives this text again)"
    )  # fmt: skip
    out = (
        _JsonLines(config, text, loaded.path.name, weights)
        if json_out
        else _Plain(text if echo else "")
    )
    for i, piece, sample in generation:
        if sample is None:
            out.piece(i, piece)
            continue
        copied = against.report(sample.text) if against is not None else None
        out.finished(i, sample, copied)
        describe_sample(console, i, config, sample)
        if copied is not None:
            describe_base_copy(console, loaded.config["base"], copied)


class _Plain:
    """Samples in order, separated by a '%' line: the current one streams, later ones wait."""

    def __init__(self, prompt: str):
        self.prompt, self.current = prompt, 0
        self.waiting: dict[int, list[str]] = {}
        self.done: set[int] = set()
        self.open = False  # the current sample has begun on stdout
        self.last = ""  # the last text of it written

    def _write(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()
        self.last = text or self.last

    def _begin(self) -> None:
        """Start the current sample on stdout, with what it wrote while it waited its turn."""
        if not self.open:
            if self.current:
                self._write("%\n")
            self.open, self.last = True, ""
            self._write(self.prompt)
            for text in self.waiting.pop(self.current, []):
                self._write(text)

    def piece(self, i: int, text: str) -> None:
        if i != self.current:
            self.waiting.setdefault(i, []).append(text)
            return
        self._begin()
        self._write(text)

    def finished(self, i: int, sample, base_report=None) -> None:
        self.done.add(i)
        while self.current in self.done:
            self._begin()
            if not self.last.endswith("\n"):  # the separator goes on a line of its own
                self._write("\n")
            self.current += 1
            self.open = False


class _JsonLines:
    """One JSON object per sample, in sample order."""

    def __init__(self, config: SampleConfig, prompt: str, run: str, weights: str):
        self.config, self.prompt, self.run, self.weights = config, prompt, run, weights
        self.ready: dict[int, object] = {}
        self.current = 0

    def piece(self, i: int, text: str) -> None:
        pass  # the text is in the sample

    def finished(self, i: int, sample, base_report=None) -> None:
        self.ready[i] = (sample, base_report)
        while self.current in self.ready:
            sample, base_report = self.ready.pop(self.current)
            row = sample.to_dict(self.config, self.prompt, self.run)
            row["precision"] = self.weights
            if base_report is not None:  # --against-base
                row["base_originality"] = base_report
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
            sys.stdout.flush()
            self.current += 1
