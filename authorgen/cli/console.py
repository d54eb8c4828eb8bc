"""Everything the user sees besides data: a rich console on stderr and the training progress.

stdout is for data only (generated text). Colour follows rich's rules (NO_COLOR is honoured);
nothing animates when stderr is not a terminal; --quiet silences it all but errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from authorgen.callbacks import Callback

if TYPE_CHECKING:  # rich.progress takes 0.1 s to import: only training draws a bar
    from rich.progress import Progress


def make_console(quiet: bool = False) -> Console:
    # markup off: titles, names and paths are printed as they are, brackets and all
    console = Console(stderr=True, quiet=quiet, highlight=False, soft_wrap=True, markup=False)
    if not console.is_terminal:
        console.width = 200  # a log or a pipe: tables keep their rows on one line
    return console


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class TrainProgress(Callback):
    """The training loop's callback (see `authorgen.callbacks.Callback`): a bar on a terminal,
    and one line per evaluation everywhere."""

    def __init__(self, console: Console):
        self.console = console
        self.progress: Progress | None = None
        self.task = None
        self.val: float | None = None
        self.smooth: float | None = None  # moving average of the step loss, for display

    def __enter__(self) -> TrainProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def on_message(self, text: str) -> None:
        self.console.print(f"  {text}")

    def on_start(self, info: dict) -> None:
        m, t, d, k = info["model"], info["train"], info["data"], info["tokenizer"]
        budget = " and ".join(
            part
            for part in (
                f"{t['steps']:,} steps" if t["steps"] is not None else "",
                _duration(t["time_s"]) if t["time_s"] else "",
            )
            if part
        )
        if m["model"] == "transformer":
            shape = (
                f"transformer {m['layers']} layers x {m['heads']} heads, {m['embedding_dim']} wide "
                f"(MLP {m['mlp_dim']}, context {m['context']}, dropout {m['dropout']})"
            )
        else:
            tied = ", tied" if m.get("tie_weights") else ""
            shape = (
                f"{m['model']} {m['layers']}x{m['hidden']} (embedding {m['embedding_dim']}"
                f"{tied}, dropout {m['dropout']})"
            )
        processes = f" x {info['processes']} processes" if info.get("processes", 1) > 1 else ""
        self.console.print(
            f"run {info['name']} -> {info['run_dir']}\n"
            f"  model {shape}, {info['params']:,} parameters, device {info['device']}"
            f"{processes} ({info.get('precision', 'fp32')})\n"
            f"  tokens {k['kind']}{' lowercased' if k['lowercase'] else ''}, vocabulary "
            f"{k['vocab_size']:,}, {k['tokens_per_char']:.3f} tokens per character\n"
            f"  data {d['train_chars']:,} training / {d['val_chars']:,} validation characters "
            f"({d['split']})\n"
            f"  budget {budget}; context {t['context']}, batch {t['batch_size']} "
            f"{t['batching']}, lr {t['lr']:g}, seed {info['seed']}"
        )
        for line in d.get("plan") or []:
            self.console.print(f"  chosen: {line}")
        for line in info.get("warnings") or []:
            self.console.print(f"  warning: {line}")
        if self.console.is_terminal and not self.console.quiet:
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.task = self.progress.add_task("starting", total=1.0)
            self.progress.start()

    def on_step(self, step: int, loss: float, progress: float, tokens_per_s: float) -> None:
        if self.progress is None:
            return
        self.smooth = loss if self.smooth is None else 0.98 * self.smooth + 0.02 * loss
        val = f"val {self.val:.3f}" if self.val is not None else "val -"
        self.progress.update(
            self.task,
            completed=min(progress, 1.0),
            description=f"step {step:,}  loss {self.smooth:.3f}  {val}  {tokens_per_s:,.0f} tok/s",
        )

    def on_eval(self, row: dict) -> None:
        self.val = row["val_loss"]
        train = f"{row['train_loss']:.3f}" if row["train_loss"] is not None else "-"
        self.console.print(
            f"step {row['step']:>6,}  train {train}  val {row['val_loss']:.4f} nats/char "
            f"({row['val_bpc']:.4f} bpc)  lr {row['lr']:.2e}  {_duration(row['elapsed_s'])}"
        )


def print_table(
    console: Console, columns: list[str], rows: list[list[str]], right: tuple[str, ...] = ()
) -> None:
    """A plain table on the console (stderr); the columns named in `right` are right-aligned."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for name in columns:
        table.add_column(name, justify="right" if name in right else "left", overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def describe_selection(console: Console, selection, table: bool) -> None:
    """What `fetch AUTHOR` chose (a `sources.catalog.Selection`), and what it left out and why."""
    sel = selection
    others = ", ".join(
        f"{lang} {n}" for lang, n in sel.languages.most_common() if lang != sel.language
    )
    why = "their most common language" if sel.language_was_default else "--lang"
    also = f"; other languages: {others} (--lang chooses)" if others else ""
    console.print(
        f"{sel.author.display} ({sel.author.key}): {len(sel.books)} works in {sel.language} "
        f"({why}{also})"
    )
    for person in sel.set_aside:
        console.print(f"  not {person.key}: write that name to fetch them instead")
    for reason, books in sel.left_out.items():
        console.print(f"  left out {len(books)} {'work' if len(books) == 1 else 'works'}: {reason}")
    if table:
        rows = [
            [str(b.id), b.title, "; ".join(b.languages), "; ".join(b.authors)] for b in sel.books
        ]
        print_table(console, ["id", "title", "language", "authors"], rows, right=("id",))


def describe_corpus(console: Console, corpus) -> None:
    """A corpus's works with their provenance and what cleaning did, one block per work."""
    summary = corpus.summary()
    console.print(
        f"{summary['name']}: {summary['works']} works, {summary['chars']:,} characters, "
        f"in {corpus.path}"
    )
    for w in corpus.works:
        cleaning = w.get("cleaning", {})
        done = (
            []
            if cleaning.get("encoding", "utf-8") == "utf-8"
            else [f"decoded from {cleaning['encoding']}"]
        )
        done += [
            f"cut {cleaning.get('cut_head_lines', 0)} head and "
            f"{cleaning.get('cut_tail_lines', 0)} tail lines"
        ]
        if cleaning.get("credits"):
            done.append("credits")
        if cleaning.get("illustrations"):
            done.append(f"{cleaning['illustrations']} [Illustration] markers")
        if cleaning.get("unwrap"):
            done.append(f"{cleaning.get('unwrapped_paragraphs', 0):,} paragraphs unwrapped")
        authors = ", ".join(w.get("authors") or []) or "unknown author"
        console.print(
            f"{w['id']}  {w['title']} ({authors}; {w.get('language') or '?'}; "
            f"{w['chars']:,} characters)\n"
            f"    from {w['url']} ({w['source']}), added {w.get('added', '?')}\n"
            f"    sha256 raw {w['sha256_raw'][:16]}…, clean {w['sha256_clean'][:16]}…; "
            f"{', '.join(done)}"
        )


ENDINGS = {
    "length": "at --length",
    "stop": "at a --stop string",
    "sentence": "at the end of a sentence",
    "paragraph": "at the end of a paragraph",
    "max_copy": "early: every token would have copied more than --max-copy allows",
    "known_words": "early: no token could go on with a word the training text has "
    "(--any-words lifts the rule)",
}


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def describe_sample(console: Console, i: int, config, sample) -> None:
    """One line per sample: its size and end, and how much of it is copied from the corpus."""
    ended = ENDINGS.get(sample.stopped, sample.stopped)
    if sample.stopped == "length" and config.until:
        ended = f"at the limit, with no {config.until} end found"
    line = (
        f"sample {i + 1}: {sample.chars:,} characters, {sample.tokens:,} tokens in "
        f"{sample.elapsed_s:.1f}s, ended {ended}"
    )
    report = sample.originality
    if report is not None:
        copy = report["copy"]
        if copy:
            shown = copy["text"] if len(copy["text"]) <= 40 else copy["text"][:37] + "..."
            line += (
                f"; longest copy {report['longest_copy_chars']} characters {shown!r} "
                f"from {copy['title'] or copy['work']} ({copy['work']})"
            )
        share = report["novel_8gram_share"]
        if share is not None:
            line += f"; {share:.0%} of {report['ngrams']} word 8-grams are new"
        if report.get("words"):
            shown = ", ".join(report["invented_examples"])
            line += (
                f"; {report['invented']} of {report['words']} words not in the training text"
                + (f" ({shown})" if shown else "")
            )
    console.print(line)


def describe_base_copy(console: Console, lineage: dict, report: dict) -> None:
    """generate --against-base: the longest copy of a sample from the base's corpus."""
    copy = report["copy"]
    shown = ""
    if copy:
        text = copy["text"] if len(copy["text"]) <= 40 else copy["text"][:37] + "..."
        shown = f" {text!r} from {copy['title'] or copy['work']} ({copy['work']})"
    console.print(
        f"  against the base's corpus ({lineage.get('corpus')}): longest copy "
        f"{report['longest_copy_chars']} characters{shown}"
    )


def _auc(judged: dict | None) -> str:
    if not judged or judged.get("auc") is None:
        return "-"
    return f"{judged['auc']:.2f}±{judged['se']:.2f}"


def _originality_text(report: dict | None) -> str:
    if not report:
        return "originality: no index in this run"
    share = report["novel_8gram_share"]
    new = f"; {share:.0%} of word 8-grams new" if share is not None else ""
    return (
        f"originality: longest copy {report['longest_copy_chars']} characters "
        f"(mean {report['mean_longest_copy_chars']}){new}"
    )


def _realism_text(judged: dict | None, report: dict | None) -> str:
    """Realism beside the longest copy, as `eval` and `compare` show it."""
    if not judged or judged.get("auc") is None:
        return "realism: not measured (it needs 8 samples or more, and held-out text)"
    floor, pages = judged["floor"], judged.get("training_pages") or {}
    floor_text = f"{floor['auc']:.2f} ± {floor['se']:.2f}" if floor.get("auc") is not None else "-"
    if pages.get("auc") is not None:
        floor_text += f"; the author's training pages {pages['auc']:.2f} ± {pages['se']:.2f}"
    copy = (report or {}).get("longest_copy_chars")
    return (
        f"realism: a classifier tells the samples from the author's held-out pages with AUC "
        f"{judged['auc']:.2f} ± {judged['se']:.2f} (0.5: it cannot; held-out against held-out "
        f"{floor_text}), {judged['told_apart']:.0%} told apart, "
        f"{judged['texts'][0]} samples of {judged['chars']:,} characters; longest copy "
        f"{copy if copy is not None else '-'} characters"
    )


def describe_eval(console: Console, result: dict, sweep: list[dict]) -> None:
    """The eval report on stderr: held-out loss, then what the samples are like."""
    console.print(
        f"{result['run']} on {result['heldout']}: {result['val_loss']:.4f} nats/char, "
        f"{result['val_bpc']:.4f} bpc, perplexity {result['perplexity']:,.2f} per token "
        f"({result['tokens']:,} tokens, {result['chars']:,} characters)"
    )
    if result.get("mixed_val_loss") is not None:
        console.print(
            f"mixed with the run's n-gram counts: {result['mixed_val_loss']:.4f} nats/char, "
            f"{result['mixed_val_bpc']:.4f} bpc (weights fitted to the run's own held-out text)"
        )
    if not result.get("samples"):
        return
    if sweep:
        rows = []
        for r in sweep:
            style, orig, distinct = r["style"], r["originality"] or {}, r["distinct"]
            author = style["author"] if style else None
            rows.append(
                [
                    f"{r['temperature']:g}",
                    _auc(r.get("realism")),
                    f"{style['delta'][author]:.3f}" if style and author else "-",
                    f"{style['rank']}/{len(style['delta'])}" if style and style["rank"] else "-",
                    str(orig.get("longest_copy_chars", "-")),
                    f"{orig['novel_8gram_share']:.0%}"
                    if orig.get("novel_8gram_share") is not None
                    else "-",
                    _share(r.get("invented_words")),
                    f"{distinct['distinct_2']:.3f}" if distinct["distinct_2"] is not None else "-",
                ]
            )
        columns = [
            "temperature",
            "realism",
            "Delta to author",
            "rank",
            "longest copy",
            "new 8-grams",
            "invented words",
            "distinct-2",
        ]
        print_table(console, columns, rows, right=tuple(columns))
        return
    distinct = result["distinct"]
    console.print(_realism_text(result.get("realism"), result.get("originality")))
    console.print(
        f"{result['samples']} samples at temperature {result['temperature']:g}: "
        f"{_originality_text(result['originality'])}; distinct-1 {distinct['distinct_1']}, "
        f"distinct-2 {distinct['distinct_2']}"
    )
    if result.get("invented_words") is not None:
        rule = " (--known-words)" if result.get("known_words") else ""
        console.print(
            f"invented words: {_share(result['invented_words'])} of the samples' words are not "
            f"in the training text{rule}; {_share(result.get('heldout_invented_words'))} of the "
            "held-out text's"
        )
    style = result["style"]
    console.print(f"style: {style['summary']}" if style else "style: the run's corpus is not here")


def describe_comparison(console: Console, rows: list[dict], chart) -> None:
    """The leaderboard of `authorgen compare`, best validation bpc first."""
    columns = ["#", "model", "tokenizer", "val bpc", "mixed", "params", "tokens/s", "time"]
    columns += ["realism", "copy", "invented", "Delta"]
    table = []
    for i, r in enumerate(rows, 1):
        orig = r.get("originality") or {}
        delta = r.get("style_delta")
        rank = r.get("style_rank")
        table.append(
            [
                str(i), r["model"], r["tokenizer"], f"{r['val_bpc']:.4f}",
                f"{r['mixed_val_bpc']:.4f}" if r.get("mixed_val_bpc") is not None else "-",
                f"{r['params']:,}",
                f"{r['tokens_per_s']:,.0f}", _duration(r["time_s"]), _auc(r.get("realism")),
                str(orig.get("longest_copy_chars", "-")), _share(r.get("invented_words")),
                f"{delta:.2f} (rank {rank})" if delta is not None else "-",
            ]
        )  # fmt: skip
    print_table(
        console,
        columns,
        table,
        right=(
            "#",
            "val bpc",
            "mixed",
            "params",
            "tokens/s",
            "time",
            "realism",
            "copy",
            "invented",
        ),
    )
    console.print(
        "realism: the AUC of a classifier telling the samples from the author's held-out pages "
        "(0.5: it cannot; ranked by val bpc all the same, and a copy passes it, so the longest "
        "copy is beside it); "
        "copy: the longest stretch of the samples found verbatim in the corpus; invented: the "
        "share of their words not in the training text; Delta: Burrows' Delta of the samples' "
        "style to the author (lower is closer; rank among the corpora here)"
    )
    console.print(f"chart: {chart}")
