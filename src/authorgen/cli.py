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
from authorgen.config import (
    DEFAULT_VOCAB,
    SampleConfig,
    TokenizerConfig,
    TrainConfig,
    parse_duration,
)
from authorgen.errors import AuthorgenError
from authorgen.plan import PRESETS

EPILOG = (
    "Exit codes: 0 ok; 1 unexpected failure; 2 usage error (also: a name matching several "
    "authors); 3 network or source failure after retries (run again to resume); 4 bad input "
    "data (empty or undecodable text, no such author, unknown corpus or run, damaged "
    "checkpoint); 130 interrupted (training saves its state first). Set AUTHORGEN_HOME to move "
    "./corpora, ./checkpoints and the cache, AUTHORGEN_DEBUG=1 for tracebacks."
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


def _split_sources(sources: list[str]) -> tuple[list[str], list[Path]]:
    """Author names and local paths: an argument is a path when it exists or looks like one."""
    authors, paths = [], []
    for source in sources:
        path = Path(source).expanduser()
        looks_like_path = os.sep in source or "/" in source or source.lower().endswith(".txt")
        if path.exists() or looks_like_path:
            paths.append(path)
        else:
            authors.append(source)
    return authors, paths


def _print_json(obj: object) -> None:
    import json

    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


@app.command(epilog=EPILOG)
def fetch(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="AUTHOR|PATH",
            help='An author\'s name ("Jane Austen", "Austen", "Austen, Jane"), or local .txt '
            "files or folders of them.",
            show_default=False,
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
        typer.Option(
            help="Corpus name (default: a slug of the author, e.g. jane-austen, or of the file "
            "name).",
            show_default=False,
        ),
    ] = None,
    lang: Annotated[
        str | None,
        typer.Option(
            help="Language code of the works to fetch, as the catalog writes it (en, fr, pl...; "
            "default: the author's most common one).",
            show_default=False,
        ),
    ] = None,
    include_roles: Annotated[
        bool,
        typer.Option(
            "--include-roles",
            help="Also fetch works the author only translated, edited or illustrated.",
        ),
    ] = False,
    limit: Annotated[
        int | None, typer.Option(help="Fetch at most this many works.", show_default=False)
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be fetched and download no book.")
    ] = False,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the works as a JSON list on stdout (with --dry-run: id, title, authors, "
            "language).",
        ),
    ] = False,
    unwrap: Annotated[
        bool,
        typer.Option(
            "--unwrap",
            help="Join hard-wrapped lines inside prose paragraphs (paragraph breaks and verse "
            "are kept).",
        ),
    ] = False,
    catalog: Annotated[
        Path | None,
        typer.Option(
            help="A local copy of pg_catalog.csv(.gz) instead of the mirror's.", show_default=False
        ),
    ] = None,
    mirror: Annotated[
        str | None,
        typer.Option(
            help="Gutenberg mirror URL (default: $AUTHORGEN_MIRROR or "
            "https://gutenberg.pglaf.org).",
            show_default=False,
        ),
    ] = None,
    delay: Annotated[
        float, typer.Option(help="Seconds to wait between requests to one server.")
    ] = 2.0,
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh",
            "--force",
            help="Download again works already in the corpus, and check the catalog for changes.",
        ),
    ] = False,
    corpora_dir: CorporaDir = None,
    quiet: Quiet = False,
) -> None:
    """Add works to a corpus: an author's works from Project Gutenberg, ebooks by number, or
    local text files.

    An author is looked up in the Project Gutenberg catalog (cached for a week): works they
    wrote, of type text, in one language, one edition per title. Text is decoded (UTF-8, BOM,
    CRLF), NFC-normalised, and stripped of the Gutenberg header, licence, credits and
    [Illustration] markers; the raw bytes and an audit of what was cut stay in the corpus.
    Downloads resume where they stopped; a second run skips what is already there.

    Examples:

    \b
        authorgen fetch "Jane Austen" --dry-run
        authorgen fetch "Jane Austen"
        authorgen fetch Mickiewicz --lang pl --unwrap
        authorgen fetch --id 1342 --id 161 --name jane-austen
        authorgen fetch ~/books/dickens/ --name dickens
    """
    from authorgen.console import describe_selection, make_console
    from authorgen.errors import UsageError
    from authorgen.sources import Fetcher, corpus_name_for
    from authorgen.sources.catalog import select_works

    console = make_console(quiet)
    authors, paths = _split_sources(sources or [])
    if not (authors or paths or ids):
        raise UsageError(
            'say what to fetch: an author ("Jane Austen"), --id N (a Gutenberg ebook number) '
            "or a PATH"
        )
    if dry_run and not authors:
        raise UsageError('--dry-run previews an author\'s works: give a name, e.g. "Jane Austen"')
    fetcher = Fetcher(
        _folder(corpora_dir, "corpora"),
        mirror=mirror,
        delay=delay,
        refresh=refresh,
        unwrap=unwrap,
        report=console.print,
    )
    selections = []
    if authors:
        books = fetcher.read_catalog(catalog)
        for query in authors:
            selection = select_works(
                books, query, language=lang, include_roles=include_roles, limit=limit
            )
            describe_selection(console, selection, table=dry_run)
            selections.append(selection)
    if dry_run:
        if json_out:
            _print_json([b.to_dict() for s in selections for b in s.books])
        return
    results = [
        fetcher.fetch(
            ids=[b.id for b in s.books],
            name=name or corpus_name_for(s),
            catalog={b.id: b for b in s.books},
        )
        for s in selections
    ]
    if ids or paths:
        results.append(fetcher.fetch(ids=ids or [], paths=paths, name=name))
    works = []
    for result in results:
        summary = result.corpus.summary()
        console.print(
            f"corpus {summary['name']}: {summary['works']} works, "
            f"{summary['chars']:,} characters in {summary['path']} ({len(result.added)} added, "
            f"{len(result.skipped)} already there"
            + (f", {len(result.missing)} without plain text" if result.missing else "")
            + ")"
        )
        works += [{"status": "added", "corpus": summary["name"], **w} for w in result.added]
        works += [{"status": "skipped", "corpus": summary["name"], **w} for w in result.skipped]
    if json_out:
        _print_json(works)
    console.print(f"next: authorgen train {results[-1].corpus.name}")


corpora_app = typer.Typer(
    help="List corpora, or show one corpus's works with where each came from.",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(corpora_app, name="corpora")
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")]


@corpora_app.callback(invoke_without_command=True)
def corpora(ctx: typer.Context, json_out: JsonOut = False, corpora_dir: CorporaDir = None) -> None:
    """List corpora: name, works, characters, languages (a table on stderr, or --json).

    `authorgen corpora show NAME` lists one corpus's works.
    """
    if ctx.invoked_subcommand is not None:
        return
    from authorgen.console import make_console, print_table
    from authorgen.corpus import list_corpora

    folder = _folder(corpora_dir, "corpora")
    found, damaged = list_corpora(folder)
    console = make_console()
    summaries = [c.summary() for c in found]
    for line in damaged:
        console.print(f"warning: {line}")
    if json_out:
        _print_json(summaries)
        return
    if not summaries:
        console.print(f'no corpora in {folder}; make one with authorgen fetch "Jane Austen"')
        return
    rows = [
        [s["name"], f"{s['works']:,}", f"{s['chars']:,}", ", ".join(s["languages"])]
        for s in summaries
    ]
    columns = ["name", "works", "characters", "languages"]
    print_table(console, columns, rows, right=("works", "characters"))


@corpora_app.command("show")
def corpora_show(
    corpus: Annotated[str, typer.Argument(metavar="NAME", help="A corpus name.")],
    json_out: JsonOut = False,
    corpora_dir: CorporaDir = None,
) -> None:
    """List a corpus's works with provenance: where each came from, its hashes, what cleaning
    cut.

    With --json, the corpus manifest (corpus.json) itself goes to stdout.
    """
    from authorgen.console import describe_corpus, make_console
    from authorgen.corpus import Corpus
    from authorgen.files import check_name

    found = Corpus.open(_folder(corpora_dir, "corpora"), check_name(corpus, "corpus"))
    if json_out:
        _print_json(found.manifest)
        return
    describe_corpus(make_console(), found)


def _size_help(text: str) -> str:
    return text + " (default: chosen for the corpus, device and budget; see --preset)"


@app.command(epilog=EPILOG)
def train(
    corpus: Annotated[
        str | None,
        typer.Argument(
            metavar="CORPUS",
            help="Name of a corpus made by `authorgen fetch` (not with --resume).",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            help="Continue this run (name or folder) from its latest state to the end of its "
            "budget, with its own settings.",
            show_default=False,
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="Start from these sizes: " + ", ".join(PRESETS) + " (options given win).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help=_size_help("lstm, gru, rnn (SimpleRNN) or transformer"), show_default=False
        ),
    ] = None,
    layers: Annotated[
        int | None, typer.Option(help=_size_help("Stacked layers"), show_default=False)
    ] = None,
    hidden: Annotated[
        int | None,
        typer.Option(
            help=_size_help("Units per recurrent layer; transformer: MLP width"),
            show_default=False,
        ),
    ] = None,
    embedding_dim: Annotated[
        int | None,
        typer.Option(
            help=_size_help("Size of the token embedding (transformer: its width)")
            + "; fitted to --pretrained-embeddings.",
            show_default=False,
        ),
    ] = None,
    heads: Annotated[
        int | None, typer.Option(help=_size_help("Transformer attention heads"), show_default=False)
    ] = None,
    tie_weights: Annotated[
        bool,
        typer.Option(
            help="RNN: the output layer reuses the embedding (the transformer always does)."
        ),
    ] = False,
    tokenizer: Annotated[
        str,
        typer.Option(
            help="char: characters; word: words and punctuation, rare words read as <unk>; "
            "bpe or unigram: sentencepiece subwords that keep the text exactly."
        ),
    ] = TokenizerConfig.kind,
    vocab_size: Annotated[
        int | None,
        typer.Option(
            help="Vocabulary size for word, bpe and unigram (default "
            + ", ".join(f"{k} {v:,}" for k, v in DEFAULT_VOCAB.items())
            + ").",
            show_default=False,
        ),
    ] = None,
    lowercase: Annotated[
        bool,
        typer.Option(
            help="word: fold case before counting words; capitals are put back when decoding."
        ),
    ] = False,
    pretrained_embeddings: Annotated[
        Path | None,
        typer.Option(
            help="word: start the embedding from these word vectors (GloVe text format).",
            show_default=False,
        ),
    ] = None,
    dropout: Annotated[
        float | None,
        typer.Option(help=_size_help("Dropout, e.g. 0.2 on small corpora"), show_default=False),
    ] = None,
    context: Annotated[
        int | None,
        typer.Option(
            help=_size_help("Tokens per step of each stream or window (BPTT length)"),
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help=_size_help("Streams or windows per step"), show_default=False),
    ] = None,
    batching: Annotated[
        str | None,
        typer.Option(
            help="windows: independent random windows (the default); stream: contiguous "
            "streams, an RNN's state carried between steps (stateful truncated BPTT).",
            show_default=False,
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(help=_size_help("Peak learning rate (AdamW)"), show_default=False),
    ] = None,
    weight_decay: Annotated[
        float | None,
        typer.Option(help=_size_help("AdamW weight decay on weight matrices"), show_default=False),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Stop after this many steps.", show_default=False)
    ] = None,
    time: Annotated[
        str | None,
        typer.Option(
            "--time",
            help="Wall-clock budget such as 90s, 5m or 1h; the learning-rate schedule ends with "
            "it (default: 5m when --steps is not given).",
            show_default=False,
        ),
    ] = None,
    eval_every: Annotated[
        int, typer.Option(help="Validate every this many steps (and every 10 minutes).")
    ] = TrainConfig.eval_every,
    patience: Annotated[
        int | None,
        typer.Option(
            help="Stop when this many evaluations in a row bring no better validation loss.",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(min=0, help="Random seed for weights and batches.")
    ] = TrainConfig.seed,
    device: Annotated[
        str | None,
        typer.Option(help="auto (CUDA when there is one), cpu or cuda.", show_default=False),
    ] = None,
    precision: Annotated[
        str,
        typer.Option(help="auto (bf16 autocast on a GPU that has it, else fp32), fp32 or bf16."),
    ] = TrainConfig.precision,
    compile: Annotated[
        bool, typer.Option(help="torch.compile the model (faster steps on a GPU after a wait).")
    ] = False,
    holdout: Annotated[
        str | None,
        typer.Option(
            help="Work id to validate on (default: the smallest work; the last 10% of the text "
            "when there is one work).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="Run name (default: CORPUS-MODEL, plus -TOKENIZER when not char).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing run of that name.")] = False,
    corpora_dir: CorporaDir = None,
    checkpoints_dir: CheckpointsDir = None,
    quiet: Quiet = False,
) -> None:
    """Train a recurrent network or a transformer on a corpus, on characters, words or subwords.

    With no size options, the model, context, batch and learning rate are chosen for the corpus,
    the device and the budget, and the choice is explained. Validation loss is reported in nats
    and bits per character of the original text, whatever the tokenizer, so runs compare. The
    run folder (checkpoints/NAME) keeps the best weights by validation, the latest state (for
    --resume), the tokenizer, the config and metrics.jsonl; it is all `authorgen generate`
    needs. Under `torchrun --nproc_per_node=N -m authorgen train ...` it trains on N processes.
    """
    import os as _os

    from authorgen.console import TrainProgress, make_console

    sizes = {
        "model": model,
        "layers": layers,
        "hidden": hidden,
        "embedding_dim": embedding_dim,
        "heads": heads,
        "tie_weights": tie_weights or None,
        "dropout": dropout,
        "context": context,
        "batch_size": batch_size,
        "batching": batching,
        "lr": lr,
        "weight_decay": weight_decay,
    }
    sizes = {k: v for k, v in sizes.items() if v is not None}
    rank = int(_os.environ.get("RANK", "0"))
    console = make_console(quiet or rank != 0)
    checkpoints = _folder(checkpoints_dir, "checkpoints")
    corpora = _folder(corpora_dir, "corpora")
    if resume is not None:
        if corpus is not None or sizes or preset or steps or time or name or force:
            raise typer.BadParameter(
                "--resume continues a run with its own corpus, sizes and budget; give only the "
                "run (and --device to move it)",
                param_hint="--resume",
            )
        from authorgen.train import resume as resume_run

        with TrainProgress(console) as progress:
            result = resume_run(corpora, checkpoints, resume, device=device, callback=progress)
        _report(console, result)
        return
    if corpus is None:
        raise typer.BadParameter(
            "give the corpus to train on, or --resume RUN", param_hint="CORPUS"
        )

    tokenizer_config = TokenizerConfig(kind=tokenizer, vocab_size=vocab_size, lowercase=lowercase)
    if pretrained_embeddings is not None and embedding_dim is None:
        from authorgen.vectors import vector_dim

        sizes["embedding_dim"] = vector_dim(pretrained_embeddings)
    given = {
        **sizes,
        "steps": steps,
        "time_s": parse_duration(time) if time is not None else (None if steps else 300.0),
        "eval_every": eval_every,
        "patience": patience,
        "seed": seed,
        "device": device or "auto",
        "precision": precision,
        "compile": compile,
        "pretrained_embeddings": str(pretrained_embeddings) if pretrained_embeddings else None,
    }
    from authorgen.train import train_corpus

    with TrainProgress(console) as progress:
        result = train_corpus(
            corpora,
            checkpoints,
            corpus,
            given,
            run_name=name,
            preset=preset,
            force=force,
            holdout=holdout,
            callback=progress,
            tokenizer_config=tokenizer_config,
        )
    _report(console, result)


def _report(console, result) -> None:
    how = "stopped early" if result.status == "stopped early" else f"{result.steps:,} steps"
    console.print(
        f"best val {result.best_val_loss:.4f} nats/char ({result.best_val_bpc:.4f} bpc) at step "
        f"{result.best_step:,}; {how}, {result.tokens_per_s:,.0f} tokens/s; "
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
