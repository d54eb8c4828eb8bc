"""Realism: could these pages be the author's? A classifier two-sample test (Lopez-Paz and
Oquab 2017; Ippolito et al. 2020 for text) between a run's samples and excerpts of the author's
held-out text.

Both sides are cut alike, so that layout and ends tell nothing: whitespace collapsed to single
spaces, each text beginning at a word and cut at the last word boundary within the same number
of characters. A classifier then learns to tell them apart: TF-IDF of character 1-4-grams
(spelling, morphology, punctuation, the rhythm of function words) and word 1-2-grams (vocabulary
and local phrasing), and an L2-regularised logistic regression. Its cross-validated AUC (the
chance that it scores a random sample above a random real excerpt) is 0.5 when the two cannot
be told apart and 1.0 when they always can; `told_apart` is the share of texts it labels right.
The standard error is Hanley and McNeil's (1982): at an AUC near 0.5 it is about 0.05 with 64
texts on each side, which is why `eval` writes 64 samples.

Real excerpts against other real excerpts of the same text give the floor, measured beside it:
near 0.5, unless the held-out text is too short or too uneven to cut alike. The author's
training pages against the held-out pages give what a perfect imitation of the training text
would score, often above the floor: a book's last tenth has names and events of its own. A copy
of the corpus passes this test, so a realism figure is always shown beside the samples' longest
copy.
"""

from __future__ import annotations

import math
import re

SAMPLES = 64  # texts on each side: a standard error of about 0.05 near an AUC of 0.5
FOLDS = 5
MIN_TEXTS = 8  # fewer on a side and no AUC is reported
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Whitespace collapsed to single spaces, none at either end."""
    return _SPACE.sub(" ", text).strip()


def cut(text: str, length: int) -> str:
    """`text` normalised and cut at the last word boundary within `length` characters (whole if
    it is shorter)."""
    text = normalise(text)
    if len(text) <= length:
        return text
    at = text.rfind(" ", 0, length + 1)
    return text[:at] if at > 0 else text[:length]


def excerpts(text: str, count: int, length: int) -> list[str]:
    """Up to `count` excerpts of `text`, each cut as `cut` cuts a sample, beginning at a word,
    spread evenly over it without overlapping."""
    text = normalise(text)
    if not text or count < 1:
        return []
    step = max(len(text) // count, length + 1)
    out = []
    for start in range(0, len(text) - length // 2, step):
        if start:  # begin at a word: after the first space from here
            space = text.find(" ", start)
            if space < 0:
                break
            start = space + 1
        piece = cut(text[start : start + length + 1], length)
        if len(piece) >= length // 2:
            out.append(piece)
        if len(out) == count:
            break
    return out


def hanley_mcneil(auc: float, n_pos: int, n_neg: int) -> float:
    """The standard error of an AUC from `n_pos` and `n_neg` texts (Hanley and McNeil 1982)."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (
        auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)
    ) / (n_pos * n_neg)
    return math.sqrt(max(variance, 0.0))


def _pipeline():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    features = make_union(
        TfidfVectorizer(analyzer="char", ngram_range=(1, 4), sublinear_tf=True, min_df=2),
        TfidfVectorizer(
            analyzer="word",
            ngram_range=(1, 2),
            sublinear_tf=True,
            min_df=2,
            lowercase=False,
            token_pattern=r"(?u)\b\w+\b|[^\w\s]",
        ),
    )
    return make_pipeline(features, LogisticRegression(C=1.0, max_iter=2000))


def two_sample(first: list[str], second: list[str], seed: int = 0, folds: int = FOLDS) -> dict:
    """How well a classifier tells `first` (positives) from `second`, cross-validated:
    {auc, se, told_apart, texts: [len(first), len(second)]}; the AUC is None with fewer than
    MIN_TEXTS on a side. Deterministic for a seed."""
    import numpy as np

    sizes = [len(first), len(second)]
    if min(sizes) < MIN_TEXTS:
        return {"auc": None, "se": None, "told_apart": None, "texts": sizes}
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    texts = list(first) + list(second)
    labels = np.array([1] * len(first) + [0] * len(second))
    splits = StratifiedKFold(n_splits=min(folds, *sizes), shuffle=True, random_state=seed)
    scores = cross_val_predict(_pipeline(), texts, labels, cv=splits, method="decision_function")
    auc = float(roc_auc_score(labels, scores))
    return {
        "auc": round(auc, 4),
        "se": round(hanley_mcneil(auc, *sizes), 4),
        "told_apart": round(float(np.mean((scores > 0) == (labels == 1))), 4),
        "texts": sizes,
    }


def giveaways(samples: list[str], real: list[str], top: int = 8) -> dict:
    """The features that most tell samples from real pages, fitted on all of them: what the
    samples have more of (`samples`) and what the real pages have more of (`real`)."""
    import numpy as np

    pipeline = _pipeline()
    pipeline.fit(list(samples) + list(real), [1] * len(samples) + [0] * len(real))
    union, model = pipeline.steps[0][1], pipeline.steps[1][1]
    names = np.concatenate(
        [
            [f"{kind}:{name}" for name in vectorizer.get_feature_names_out()]
            for kind, (_, vectorizer) in zip(
                ("chars", "words"), union.transformer_list, strict=True
            )
        ]
    )
    order = np.argsort(model.coef_[0])
    return {
        "samples": [str(names[i]) for i in order[::-1][:top]],
        "real": [str(names[i]) for i in order[:top]],
    }


def realism(
    samples: list[str],
    heldout: str,
    length: int,
    seed: int = 0,
    training: str | None = None,
    known: dict | None = None,
) -> dict:
    """The two-sample test of `samples` against excerpts of the `heldout` text, each cut to
    `length` characters at word boundaries, beside two of the author's own: the floor (held-out
    excerpts against other held-out excerpts) and, given the `training` text, its pages against
    the held-out ones (what a perfect imitation of the training text would score: a book's
    later pages differ from its earlier ones in names and events). `known` gives either when
    already measured for this text and seed. {auc, se, told_apart, texts, chars, floor: {...},
    training_pages: {...} or None, giveaways}."""
    known = known or {}
    real = excerpts(heldout, 2 * len(samples), length)
    ours, others = real[0::2], real[1::2]
    n = min(len(samples), len(ours))  # the same number on each side
    cut_samples, ours = [cut(s, length) for s in samples[:n]], ours[:n]
    result = two_sample(cut_samples, ours, seed)
    result["chars"] = length
    result["floor"] = known.get("floor") or two_sample(ours, others, seed)
    pages = known.get("training_pages")
    if pages is None and training:
        pages = two_sample(excerpts(training, n, length), ours, seed)
    result["training_pages"] = pages
    if result["auc"] is not None:
        result["giveaways"] = giveaways(cut_samples, ours)
    return result
