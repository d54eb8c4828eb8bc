"""`authorgen train`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from authorgen.cli._common import (
    EPILOG,
    CheckpointsDir,
    CorporaDir,
    Quiet,
    Threads,
    _folder,
    app,
)
from authorgen.config import (
    DEFAULT_VOCAB,
    TokenizerConfig,
    TrainConfig,
    TrainOptions,
    parse_duration,
)
from authorgen.plan import PRESETS, SIZE_FIELDS


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
    base: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="BASE",
            help="Fine-tune: start from this run's weights and tokenizer (a name or folder), "
            "with its architecture and a short warmup; a char run gains the characters the "
            "corpus adds. Or from a public pretrained model (Llama/SmolLM2, GPT-NeoX/Pythia): "
            "a hub id such as HuggingFaceTB/SmolLM2-135M, or a Hugging Face folder. --steps 0 "
            "makes a run of the base as it is, evaluated on this corpus.",
            show_default=False,
        ),
    ] = None,
    lora: Annotated[
        int | None,
        typer.Option(
            metavar="RANK",
            help="With --from, train low-rank adapters of this rank (8 is usual) beside the "
            "base's frozen weights instead of every weight: a quarter of the memory. Chosen "
            "by itself when training every weight would not fit.",
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
        typer.Option(help=_size_help("Units per recurrent layer"), show_default=False),
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
    mlp_dim: Annotated[
        int | None,
        typer.Option(
            help=_size_help("Transformer MLP width (4 x --embedding-dim when that is given)"),
            show_default=False,
        ),
    ] = None,
    tie_weights: Annotated[
        bool,
        typer.Option(
            help="RNN: the output layer reuses the embedding (the transformer always does)."
        ),
    ] = False,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="char: characters; word: words and punctuation, rare words read as <unk>; "
            f"bpe or unigram: sentencepiece subwords that keep the text exactly. [default: "
            f"{TokenizerConfig.kind}; with --from, the base's]",
            show_default=False,
        ),
    ] = None,
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
        bool | None,
        typer.Option(
            help="word: fold case before counting words; capitals are put back when decoding. "
            "[default: no-lowercase]",
            show_default=False,
        ),
    ] = None,
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
        typer.Option(
            help="auto (CUDA, then an Apple GPU, else the CPU), cpu, cuda or mps.",
            show_default=False,
        ),
    ] = None,
    threads: Threads = None,
    precision: Annotated[
        str,
        typer.Option(
            help="auto (bf16 autocast on a GPU that has it, and on a CPU where the speed probe "
            "measures it faster), fp32 or bf16."
        ),
    ] = TrainConfig.precision,
    compile: Annotated[
        bool, typer.Option(help="torch.compile the model (faster steps on a GPU after a wait).")
    ] = False,
    index: Annotated[
        bool,
        typer.Option(
            help="Keep an index of the corpus in the run, for originality reports and "
            "generate --max-copy (about 5 bytes per character of corpus)."
        ),
    ] = True,
    ngrams: Annotated[
        bool,
        typer.Option(
            help="Keep the training text's n-gram counts in the run and mix them into its "
            "predictions (lower loss; generate --no-ngrams leaves them out)."
        ),
    ] = True,
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
    options = TrainOptions(  # checks each option before torch loads
        model=model,
        layers=layers,
        hidden=hidden,
        embedding_dim=embedding_dim,
        heads=heads,
        mlp_dim=mlp_dim,
        tie_weights=tie_weights or None,
        dropout=dropout,
        context=context,
        batch_size=batch_size,
        batching=batching,
        lr=lr,
        weight_decay=weight_decay,
        steps=steps,
        time_s=parse_duration(time) if time is not None else None,
        eval_every=eval_every,
        patience=patience,
        seed=seed,
        device=device or "auto",
        precision=precision,
        compile=compile,
        index=index,
        ngrams=ngrams,
        pretrained_embeddings=str(pretrained_embeddings) if pretrained_embeddings else None,
        lora=lora,
    )
    if base is not None and (tokenizer, vocab_size, lowercase) != (None, None, None):
        from authorgen.errors import UsageError

        raise UsageError(
            "the tokenizer comes from the base run (--from); leave out --tokenizer, "
            "--vocab-size and --lowercase"
        )
    tokenizer_config = TokenizerConfig(
        kind=tokenizer or TokenizerConfig.kind, vocab_size=vocab_size, lowercase=bool(lowercase)
    )
    from authorgen.cli.console import TrainProgress, make_console
    from authorgen.devices import use_threads
    from authorgen.distributed import launched_rank

    use_threads(threads)

    console = make_console(quiet or launched_rank() != 0)
    checkpoints, corpora = _folder(checkpoints_dir, "checkpoints"), _folder(corpora_dir, "corpora")
    if resume is not None:
        sized = SIZE_FIELDS & options.explicit().keys()
        if corpus is not None or sized or preset or steps or time or name or force or base:
            raise typer.BadParameter(
                "--resume continues a run with its own corpus, sizes and budget; give only the "
                "run (and --device to move it)",
                param_hint="--resume",
            )
        from authorgen.train import resume as resume_run

        with TrainProgress(console) as progress:
            result = resume_run(corpora, checkpoints, resume, device=device, callback=progress)
        _report(console, result, launched_rank() == 0)
        return
    if corpus is None:
        raise typer.BadParameter(
            "give the corpus to train on, or --resume RUN", param_hint="CORPUS"
        )
    from authorgen.train import train_corpus

    with TrainProgress(console) as progress:
        result = train_corpus(
            corpora,
            checkpoints,
            corpus,
            options,
            run_name=name,
            preset=preset,
            force=force,
            holdout=holdout,
            callback=progress,
            tokenizer_config=tokenizer_config,
            base=base,
        )
    _report(console, result, launched_rank() == 0)


def _report(console, result, main: bool) -> None:
    how = "stopped early" if result.status == "stopped early" else f"{result.steps:,} steps"
    console.print(
        f"best val {result.best_val_loss:.4f} nats/char ({result.best_val_bpc:.4f} bpc) at step "
        f"{result.best_step:,}; {how}, {result.tokens_per_s:,.0f} tokens/s; "
        f"saved in {result.run_dir}"
    )
    if result.mixed_val_loss is not None:
        from authorgen.losses import bits

        console.print(
            f"mixed with the training text's n-gram counts: {result.mixed_val_loss:.4f} "
            f"nats/char ({bits(result.mixed_val_loss):.4f} bpc) on the same validation text"
        )
    console.print(f"next: authorgen generate {result.run_dir.name}")
    # the run's name, the command's one line of data, for scripts: run=$(authorgen train ...);
    # the plan may pick another model (and name) on another machine
    if main:  # under torchrun, once
        sys.stdout.write(result.run_dir.name + "\n")
        sys.stdout.flush()
