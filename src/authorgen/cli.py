"""The `authorgen` command: parse, build a config, call one library function, render.

Keep torch out of this module's imports: `authorgen --help` must start fast.
"""

from __future__ import annotations

import os
import stat
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from authorgen import __version__
from authorgen.config import ModelConfig, SampleConfig, TrainConfig, parse_duration
from authorgen.errors import AuthorgenError

EPILOG = (
    "Exit codes: 0 ok; 1 unexpected failure; 2 usage error; 3 network or source failure "
    "after retries; 4 bad input data (empty or undecodable text, unknown corpus or run, "
    "damaged checkpoint); 130 interrupted (training saves its state first). "
    "Set AUTHORGEN_HOME to move ./corpora and ./checkpoints, AUTHORGEN_DEBUG=1 for tracebacks."
)

app = typer.Typer(
    help="Write like an author: fetch public-domain works, train a recurrent network on them, "
    "and generate new prose in their voice.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: 0.15 s instead of 0.31 s with rich, and pipes cleanly
    context_settings={"help_option_names": ["-h", "--help"]},
)

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on stderr but errors.")]
CorporaDir = Annotated[
    Path | None,
    typer.Option(help="Folder of corpora (default: ./corpora, or $AUTHORGEN_HOME/corpora)."),
]
CheckpointsDir = Annotated[
    Path | None,
    typer.Option(help="Folder of runs (default: ./checkpoints, or $AUTHORGEN_HOME/checkpoints)."),
]
Seed = Annotated[
    int | None, typer.Option(min=0, help="Random seed; the same seed gives the same result.")
]


def _folder(given: Path | None, kind: str) -> Path:
    from authorgen.files import default_dir

    return given if given is not None else default_dir(kind)


def _version(value: bool) -> None:
    if value:
        print(f"authorgen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Write like an author."""


@app.command(epilog=EPILOG)
def fetch(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="PATH", help="Local .txt files or folders of them to add.", show_default=False
        ),
    ] = None,
    ids: Annotated[
        list[int] | None,
        typer.Option(
            "--id", help="Project Gutenberg ebook number; repeat for several.", show_default=False
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="Corpus name (default: a slug of the author, or of the file name)."),
    ] = None,
    mirror: Annotated[
        str | None,
        typer.Option(
            help="Gutenberg mirror URL (default: $AUTHORGEN_MIRROR or "
            "https://gutenberg.pglaf.org).",
            show_default=False,
        ),
    ] = None,
    delay: Annotated[float, typer.Option(help="Seconds to wait between downloads.")] = 2.0,
    force: Annotated[bool, typer.Option(help="Replace works already in the corpus.")] = False,
    corpora_dir: CorporaDir = None,
    quiet: Quiet = False,
) -> None:
    """Add works to a corpus: Project Gutenberg ebooks by number, or local text files.

    Text is decoded (UTF-8, BOM, CRLF), NFC-normalised, and stripped of the Gutenberg header,
    licence and credits; the raw bytes and an audit of what was cut stay in the corpus.

    Examples:

    \b
        authorgen fetch --id 1342 --id 161 --name jane-austen
        authorgen fetch ~/books/dickens/ --name dickens
    """
    from authorgen.console import make_console
    from authorgen.sources import fetch_works

    console = make_console(quiet)
    result = fetch_works(
        _folder(corpora_dir, "corpora"),
        ids=ids or [],
        paths=paths or [],
        name=name,
        mirror=mirror,
        delay=delay,
        force=force,
        report=console.print,
    )
    corpus = result.corpus
    chars = sum(w["chars"] for w in corpus.works)
    console.print(
        f"corpus [bold]{corpus.name}[/]: {len(corpus.works)} works, {chars:,} characters "
        f"in {corpus.path} ({len(result.added)} added, {len(result.skipped)} skipped)"
    )
    console.print(f"next: authorgen train {corpus.name}")


@app.command(epilog=EPILOG)
def train(
    corpus: Annotated[
        str, typer.Argument(metavar="CORPUS", help="Name of a corpus made by `authorgen fetch`.")
    ],
    model: Annotated[str, typer.Option(help="lstm, gru or rnn (SimpleRNN).")] = ModelConfig.model,
    layers: Annotated[int, typer.Option(help="Stacked recurrent layers.")] = ModelConfig.layers,
    hidden: Annotated[int, typer.Option(help="Units per recurrent layer.")] = ModelConfig.hidden,
    embedding_dim: Annotated[
        int, typer.Option(help="Size of the character embedding.")
    ] = ModelConfig.embedding_dim,
    dropout: Annotated[
        float,
        typer.Option(
            help="Dropout between layers and before the output; try 0.2 on small corpora."
        ),
    ] = ModelConfig.dropout,
    context: Annotated[
        int, typer.Option(help="Characters per step of each stream or window (BPTT length).")
    ] = TrainConfig.context,
    batch_size: Annotated[
        int, typer.Option(help="Streams or windows per step.")
    ] = TrainConfig.batch_size,
    batching: Annotated[
        str,
        typer.Option(
            help="stream: contiguous streams, the state carried between steps (truncated BPTT); "
            "windows: independent random windows."
        ),
    ] = TrainConfig.batching,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = TrainConfig.lr,
    steps: Annotated[
        int | None, typer.Option(help="Stop after this many steps.", show_default=False)
    ] = None,
    time: Annotated[
        str | None,
        typer.Option(
            "--time",
            help="Wall-clock budget such as 90s, 5m or 1h (default: 5m when --steps is not given).",
            show_default=False,
        ),
    ] = None,
    eval_every: Annotated[
        int, typer.Option(help="Validate every this many steps.")
    ] = TrainConfig.eval_every,
    seed: Annotated[
        int, typer.Option(min=0, help="Random seed for weights and batches.")
    ] = TrainConfig.seed,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    holdout: Annotated[
        str | None,
        typer.Option(
            help="Work id to validate on (default: the smallest work; the last 10% of the text "
            "when there is one work).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Run name (default: CORPUS-MODEL).", show_default=False)
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing run of that name.")] = False,
    corpora_dir: CorporaDir = None,
    checkpoints_dir: CheckpointsDir = None,
    quiet: Quiet = False,
) -> None:
    """Train a character-level recurrent network on a corpus.

    Validation loss is reported in nats per character and bits per character. The run folder
    (checkpoints/NAME) keeps the best weights by validation, the latest state, the tokenizer,
    the config and metrics.jsonl; it is all `authorgen generate` needs.
    """
    from authorgen.console import TrainProgress, make_console

    model_config = ModelConfig(
        model=model, embedding_dim=embedding_dim, hidden=hidden, layers=layers, dropout=dropout
    )
    time_s = parse_duration(time) if time is not None else (None if steps else 300.0)
    train_config = TrainConfig(
        context=context,
        batch_size=batch_size,
        batching=batching,
        lr=lr,
        steps=steps,
        time_s=time_s,
        eval_every=eval_every,
        seed=seed,
        device=device,
    )
    console = make_console(quiet)

    from authorgen.train import train_corpus

    with TrainProgress(console) as progress:
        result = train_corpus(
            _folder(corpora_dir, "corpora"),
            _folder(checkpoints_dir, "checkpoints"),
            corpus,
            name or f"{corpus}-{model}",
            model_config,
            train_config,
            force=force,
            holdout=holdout,
            callback=progress,
        )
    console.print(
        f"best val {result.best_val_loss:.4f} nats/char ({result.best_val_bpc:.4f} bpc) at step "
        f"{result.best_step:,}; {result.steps:,} steps, {result.tokens_per_s:,.0f} tokens/s; "
        f"saved in {result.run_dir}"
    )
    console.print(f"next: authorgen generate {result.run_dir.name}")


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


def main() -> None:
    """Entry point: run the app and turn every failure into one line and an exit code.

    typer itself prints usage errors (exit 2), maps Ctrl-C to exit 130 and a closed stdout
    pipe to exit 1; everything the library raises is handled here.
    """
    try:
        app()
    except AuthorgenError as exc:
        if os.environ.get("AUTHORGEN_DEBUG") == "1":
            traceback.print_exc()
        print(f"authorgen: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if os.environ.get("AUTHORGEN_DEBUG") == "1":
            raise
        print(
            f"authorgen: unexpected error: {type(exc).__name__}: {exc} "
            "(set AUTHORGEN_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        sys.exit(1)
