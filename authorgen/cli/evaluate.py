"""`authorgen eval` and `authorgen runs`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from authorgen.cli._common import (
    EPILOG,
    CheckpointsDir,
    CorporaDir,
    Device,
    JsonOut,
    KnownWords,
    Ngrams,
    Quiet,
    Threads,
    _folder,
    _print_json,
    app,
    sub_app,
)
from authorgen.config import SampleConfig
from authorgen.realism import SAMPLES


def _temperatures(text: str) -> list[float]:
    from authorgen.errors import UsageError

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise UsageError(f"--sweep-temperature wants numbers such as 0.5,0.7,0.9 (got {text!r})")
    for v in values:
        SampleConfig(temperature=v)  # the same check as --temperature
    return values


@app.command("eval", epilog=EPILOG)
def evaluate(
    run: Annotated[
        str, typer.Argument(metavar="RUN", help="Run name (under checkpoints/) or run folder.")
    ],
    text: Annotated[
        Path | None,
        typer.Option(
            help="Evaluate on this text file instead of the run's held-out text.",
            show_default=False,
        ),
    ] = None,
    corpus: Annotated[
        str | None,
        typer.Option(
            help="Evaluate on this corpus (all of it; its held-out part when it is the run's own).",
            show_default=False,
        ),
    ] = None,
    samples: Annotated[
        int,
        typer.Option(
            help="Samples generated to judge (0: none); realism needs 8 or more, and 64 give it "
            "a standard error of about 0.05."
        ),
    ] = SAMPLES,
    length: Annotated[int, typer.Option(help="Characters per sample.")] = 1000,
    temperature: Annotated[
        float, typer.Option(help="Temperature of the samples (generate's default).")
    ] = SampleConfig.temperature,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the first sample.")] = 0,
    sweep_temperature: Annotated[
        str | None,
        typer.Option(
            help="Judge samples at each of these temperatures, e.g. 0.5,0.7,0.9,1.1.",
            show_default=False,
        ),
    ] = None,
    known_words: KnownWords = None,
    ngrams: Ngrams = None,
    json_out: JsonOut = False,
    device: Device = "auto",
    threads: Threads = None,
    corpora_dir: CorporaDir = None,
    checkpoints_dir: CheckpointsDir = None,
    quiet: Quiet = False,
) -> None:
    """Measure a run: bits per character on held-out text, and the samples it writes with
    generate's settings: realism (can a classifier tell them from the author's held-out pages?
    AUC 0.5: no), beside their longest copy from the corpus, invented words, variety
    (distinct-n) and style.

    The style score is Burrows' Delta of the samples against the run's author (its held-out
    text) and against every other corpus present; lower is closer. On the run's own held-out
    text, the realism found is kept in the run (eval.json) for `runs`, `compare` and the API.
    """
    if text is not None and corpus is not None:
        raise typer.BadParameter("give --text or --corpus, not both", param_hint="--text")
    temperatures = _temperatures(sweep_temperature) if sweep_temperature else [temperature]

    from authorgen.cli.console import describe_eval, make_console
    from authorgen.evaluate import evaluate_run

    console = make_console(quiet)
    from authorgen.devices import use_threads

    use_threads(threads)
    result = evaluate_run(
        _folder(corpora_dir, "corpora"),
        _folder(checkpoints_dir, "checkpoints"),
        run,
        text=text,
        corpus=corpus,
        samples=samples,
        length=length,
        temperatures=temperatures,
        seed=seed,
        device=device,
        known_words=known_words,
        ngrams=ngrams,
    )
    if json_out:
        _print_json(result.to_dict())
    describe_eval(console, result.to_dict(), result.reports if sweep_temperature else [])


runs_app = sub_app("runs", "List runs, or show one run's settings, results and chart.")


@runs_app.callback(invoke_without_command=True)
def runs(
    ctx: typer.Context, json_out: JsonOut = False, checkpoints_dir: CheckpointsDir = None
) -> None:
    """List runs: name, model, tokenizer, parameters, best val bpc, steps, the last eval's
    realism (AUC; 0.5: its samples cannot be told from the author's pages) beside their
    longest copy, corpus (and the run a fine-tune started from)."""
    if ctx.invoked_subcommand is not None:
        return
    from authorgen.checkpoint import list_runs
    from authorgen.cli.console import make_console, print_table

    folder = _folder(checkpoints_dir, "checkpoints")
    found, damaged = list_runs(folder)
    console = make_console()
    for line in damaged:
        console.print(f"warning: {line}")
    if json_out:
        _print_json(found)
        return
    if not found:
        console.print(f"no runs in {folder}; train one with authorgen train CORPUS")
        return
    rows = [
        [
            r["run"], r["model"], r["tokenizer"] or "", f"{r['params'] or 0:,}",
            f"{r['best_val_bpc']:.4f}" if r["best_val_bpc"] is not None else "-",
            f"{r['steps']:,}" if r["steps"] is not None else "-",
            f"{r['realism']:.2f}" if r.get("realism") is not None else "-",
            str(r["longest_copy_chars"]) if r.get("longest_copy_chars") is not None else "-",
            (r["corpus"] or "") + (f" (from {r['base']['name']})" if r.get("base") else ""),
            r["status"] or "",
        ]
        for r in found
    ]  # fmt: skip
    columns = ["run", "model", "tokenizer", "params", "best val bpc", "steps", "realism", "copy"]
    columns += ["corpus", "status"]
    right = ("params", "best val bpc", "steps", "realism", "copy")
    print_table(console, columns, rows, right=right)


@runs_app.command("show")
def runs_show(
    run: Annotated[str, typer.Argument(metavar="RUN", help="Run name or run folder.")],
    json_out: JsonOut = False,
    checkpoints_dir: CheckpointsDir = None,
) -> None:
    """Show a run's config (as JSON with --json) and where its loss chart is."""
    import json

    from authorgen.checkpoint import CHART, read_config, resolve_run
    from authorgen.cli.console import make_console

    run_dir = resolve_run(run, _folder(checkpoints_dir, "checkpoints"))
    config = read_config(run_dir)
    chart = run_dir / CHART
    if json_out:
        _print_json({**config, "chart": str(chart) if chart.exists() else None})
        return
    console = make_console()
    console.print(json.dumps(config, indent=2, ensure_ascii=False))
    console.print(
        f"chart: {chart}" if chart.exists() else "chart: none yet (drawn at the first evaluation)"
    )
