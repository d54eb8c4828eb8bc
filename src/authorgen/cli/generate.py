"""`authorgen generate`."""

from __future__ import annotations

import os
import stat
import sys
from typing import Annotated

import typer

from authorgen.cli._common import EPILOG, CheckpointsDir, Quiet, Seed, _folder, app
from authorgen.config import SampleConfig


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
    temperature: Annotated[
        float,
        typer.Option(
            help="Randomness: 0 always picks the likeliest character; 1 samples the model as is; "
            "higher is wilder."
        ),
    ] = SampleConfig.temperature,
    length: Annotated[
        int, typer.Option(help="Characters to generate per sample, the prompt not counted.")
    ] = SampleConfig.length,
    n: Annotated[int, typer.Option("-n", help="Number of samples.")] = SampleConfig.n,
    seed: Seed = None,
    echo: Annotated[bool, typer.Option(help="Print the prompt before the continuation.")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    checkpoints_dir: CheckpointsDir = None,
    quiet: Quiet = False,
) -> None:
    """Generate text from a trained run, streamed to stdout as it is written.

    Only the text goes to stdout; the seed and other notes go to stderr. With -n above 1 the
    samples are separated by a line holding a single '%' (as in fortune files).
    """
    from authorgen.clean import normalize
    from authorgen.console import make_console

    config = SampleConfig(temperature=temperature, length=length, n=n, seed=seed)
    text = normalize(_read_prompt(prompt))  # echoed as the model reads it: NFC, LF
    console = make_console(quiet)

    from authorgen.checkpoint import load_run, resolve_run
    from authorgen.sample import generate as generate_text
    from authorgen.train import resolve_device

    dev = resolve_device(device)
    loaded = load_run(resolve_run(run, _folder(checkpoints_dir, "checkpoints")), dev)
    import secrets

    unknown = loaded.tokenizer.unknown(text) if loaded.tokenizer.kind == "word" else []
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if unknown[10:] else "")
        console.print(f"note: words this model does not know, read as <unk>: {shown}")
    base_seed = config.seed if config.seed is not None else secrets.randbelow(2**31)
    console.print(f"seed {base_seed} (--seed {base_seed} gives this text again)")
    out = sys.stdout
    for i in range(config.n):
        pieces = generate_text(loaded.model, loaded.tokenizer, text, config, base_seed + i, dev)
        if i:
            out.write("%\n")
        last = ""
        if echo and text:
            out.write(text)
            last = text
        for piece in pieces:
            out.write(piece)
            out.flush()
            last = piece
        if not last.endswith("\n"):
            out.write("\n")
        out.flush()
