"""`authorgen compare`."""

from __future__ import annotations

from typing import Annotated

import typer

from authorgen.cli._common import (
    EPILOG,
    CheckpointsDir,
    CorporaDir,
    Device,
    JsonOut,
    Quiet,
    Seed,
    Threads,
    _folder,
    _print_json,
    app,
)
from authorgen.config import MODELS, TOKENIZERS, parse_duration
from authorgen.realism import SAMPLES


def _names(text: str, allowed: tuple[str, ...], option: str) -> list[str]:
    from authorgen.errors import UsageError

    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise UsageError(
            f"{option} takes a comma-separated list of {', '.join(allowed)} (got {text!r})"
        )
    return list(dict.fromkeys(names))


@app.command(epilog=EPILOG)
def compare(
    corpus: Annotated[str, typer.Argument(metavar="CORPUS", help="A corpus made by fetch.")],
    models: Annotated[
        str, typer.Option(help="Comma-separated: lstm, gru, rnn, transformer.")
    ] = "lstm,gru,transformer",
    tokenizers: Annotated[
        str, typer.Option(help="Comma-separated: char, word, bpe, unigram.")
    ] = "char",
    time: Annotated[
        str | None,
        typer.Option(
            "--time",
            help="Training budget for each run, such as 2m (default: 2m).",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(help="Train each run this many steps instead of --time.", show_default=False),
    ] = None,
    bases: Annotated[
        list[str] | None,
        typer.Option(
            "--from",
            metavar="BASE",
            help="Also fine-tune this base (a run, or a pretrained model: a Hugging Face folder "
            "or hub id) on the corpus with the same budget, and judge it as it is (train --from "
            "BASE --steps 0); repeat for several.",
            show_default=False,
        ),
    ] = None,
    seed: Seed = None,
    samples: Annotated[
        int,
        typer.Option(help="Samples per run to judge (0: none; realism needs 8 or more)."),
    ] = SAMPLES,
    length: Annotated[int, typer.Option(help="Characters per sample.")] = 1000,
    device: Device = "auto",
    threads: Threads = None,
    force: Annotated[bool, typer.Option(help="Replace the runs of an earlier comparison.")] = False,
    json_out: JsonOut = False,
    corpora_dir: CorporaDir = None,
    checkpoints_dir: CheckpointsDir = None,
    quiet: Quiet = False,
) -> None:
    """Train each model with each tokenizer on one corpus, with the same budget, split and seed,
    then print a leaderboard (best validation bits per character first) and draw a chart.

    Runs are named CORPUS-compare-MODEL-TOKENIZER (and, with --from BASE, CORPUS-compare-BASE-tuned
    and CORPUS-compare-BASE-as-is); the chart is CORPUS-compare.png in the checkpoints folder.
    Sizes are chosen for each model as `authorgen train` chooses them.
    """
    from authorgen.errors import UsageError

    model_list = _names(models, MODELS, "--models")
    tokenizer_list = _names(tokenizers, TOKENIZERS, "--tokenizers")
    if samples < 0:
        raise UsageError(f"--samples must be 0 or more (got {samples})")
    from authorgen.cli.console import TrainProgress, describe_comparison, make_console
    from authorgen.compare import budget, compare_models
    from authorgen.devices import use_threads

    use_threads(threads)

    options = budget(steps, parse_duration(time) if time is not None else None, seed, device)
    console = make_console(quiet)

    def on_start(i: int, total: int, label: str) -> None:
        console.print(f"[{i + 1}/{total}] {label}")

    with TrainProgress(console) as progress:
        rows, chart = compare_models(
            _folder(corpora_dir, "corpora"),
            _folder(checkpoints_dir, "checkpoints"),
            corpus,
            model_list,
            tokenizer_list,
            options,
            bases=tuple(bases or ()),
            samples=samples,
            length=length,
            force=force,
            callback=progress,
            on_start=on_start,
        )
    if json_out:
        _print_json(rows)
    describe_comparison(console, rows, chart)
