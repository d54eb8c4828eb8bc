"""Pictures of runs, drawn with matplotlib's object API (no pyplot, no display, Agg):

- `loss_chart`: a run's train and validation loss against tokens seen (loss.png in the run);
- `compare_chart`: several runs' validation bits per character against characters seen, and their
  best values side by side (the chart of `authorgen compare`).
"""

from __future__ import annotations

import os
from pathlib import Path

from authorgen.files import atomic_write, cache_dir


def _figure(width: float = 8.0, height: float = 4.5):
    # matplotlib keeps a font cache; in authorgen's cache, not ~/.cache, unless the user says
    os.environ.setdefault("MPLCONFIGDIR", str(cache_dir() / "matplotlib"))
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: Path) -> None:
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png"))


def loss_chart(rows: list[dict], path: Path, title: str) -> None:
    """Train and validation loss (nats per character) of metrics rows against tokens seen."""
    fig = _figure()
    ax = fig.subplots()
    trained = [(r["tokens"], r["train_loss"]) for r in rows if r.get("train_loss") is not None]
    if trained:
        ax.plot(*zip(*trained, strict=True), marker=".", label="train (mean since last eval)")
    ax.plot([r["tokens"] for r in rows], [r["val_loss"] for r in rows], marker="o", label="val")
    best = min(rows, key=lambda r: r["val_loss"])
    ax.annotate(
        f"best {best['val_loss']:.4f} ({best['val_bpc']:.3f} bpc)",
        (best["tokens"], best["val_loss"]),
        textcoords="offset points",
        xytext=(0, 10),
        ha="center",
    )
    ax.set(xlabel="tokens seen", ylabel="loss, nats per character", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def compare_chart(
    runs: list[tuple[str, list[tuple[float, float]]]], path: Path, title: str
) -> None:
    """Draw `compare_figure` into `path`."""
    _save(compare_figure(runs, title), path)


def compare_figure(runs: list[tuple[str, list[tuple[float, float]]]], title: str):
    """Validation bpc against characters seen for each (label, [(chars, bpc), ...]), and the
    best of each side by side."""
    fig = _figure(11.0, 4.5)
    curves, bars = fig.subplots(1, 2, width_ratios=[3, 2])
    labels, best = [], []
    for label, points in runs:
        if not points:
            continue
        curves.plot(*zip(*points, strict=True), marker=".", label=label)
        labels.append(label)
        best.append(min(bpc for _, bpc in points))
    curves.set(xlabel="characters seen", ylabel="validation bits per character", title=title)
    curves.grid(alpha=0.3)
    curves.legend(fontsize="small")
    order = sorted(range(len(best)), key=best.__getitem__)
    bars.barh([labels[i] for i in order][::-1], [best[i] for i in order][::-1])
    for y, i in enumerate(order[::-1]):
        bars.annotate(
            f"{best[i]:.3f}", (best[i], y), xytext=(3, 0), textcoords="offset points", va="center"
        )
    bars.set(xlabel="best validation bpc (lower is better)")
    if best:
        bars.set_xlim(0, max(best) * 1.18)
    return fig
