"""Realism: could these pages be the author's? A classifier two-sample test (Lopez-Paz and
Oquab 2017; Ippolito et al. 2020 for text) between a run's samples and excerpts of the author's
held-out text.

Both sides are cut alike, so that layout and ends tell nothing: whitespace collapsed to single
spaces, each text beginning at a word and cut at the last word boundary within the same number
of characters. Words that begin with a capital letter are read as `Xx` (`mask_names`): the
held-out pages have names of their own, which no model of the other pages can know. A
classifier then learns to tell them apart: TF-IDF of character 1-4-grams (spelling,
morphology, punctuation, the rhythm of function words) and word 1-2-grams (vocabulary and local
phrasing), and an L2-regularised logistic regression. Its cross-validated AUC (5 folds, the mean
of 5 ways of cutting them) is the chance that it scores a random sample above a random real
excerpt: 0.5 when the two cannot be told apart and 1.0 when they always can; `told_apart` is
the share of texts it labels right.
The standard error is Hanley and McNeil's (1982): at an AUC near 0.5 it is about 0.05 with 64
texts on each side, which is why `eval` writes 64 samples.

Real excerpts against other real excerpts of the same text (in two halves drawn at random: the
pages near one another share a scene) give the floor, measured beside it: near 0.5. The author's
training pages against the held-out pages give what a perfect imitation of the training text
would score, often above the floor: a book's last tenth has names and events of its own. A copy
of the corpus passes this test, so a realism figure is always shown beside the samples' longest
copy.
"""

from __future__ import annotations

import math
import random
import re

SAMPLES = 64  # texts on each side: a standard error of about 0.05 near an AUC of 0.5
FOLDS = 5
REPEATS = 5  # ways of cutting the folds, averaged
MIN_TEXTS = 8  # fewer on a side and no AUC is reported
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\b[^\W\d_][\w'’]*")


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


def mask_names(text: str) -> str:
    """Every word that begins with a capital letter as `Xx` (`XX` if all in capitals): names
    say which part of a book a page comes from (a model cannot know the held-out part's), not
    whether it reads as the author's."""
    return _WORD.sub(_mask, text)


def _mask(word: re.Match) -> str:
    if not word[0][0].isupper():
        return word[0]
    return "XX" if len(word[0]) > 1 and word[0].isupper() else "Xx"


def _features(texts: list[str]):
    """The TF-IDF features of `texts` (a sparse matrix) and their names. Computed on all the
    texts of a test at once: they use no labels, and fitting them anew per fold (five times
    five) would cost ten times what the classifier does."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_union

    union = make_union(
        TfidfVectorizer(
            analyzer="char", ngram_range=(1, 4), sublinear_tf=True, min_df=2, lowercase=False
        ),
        TfidfVectorizer(
            analyzer="word",
            ngram_range=(1, 2),
            sublinear_tf=True,
            min_df=2,
            lowercase=False,
            token_pattern=r"(?u)\b\w+\b|[^\w\s]",
        ),
    )
    matrix = union.fit_transform([mask_names(text) for text in texts])
    names = [
        f"{kind}:{name}"
        for kind, (_, vectorizer) in zip(("chars", "words"), union.transformer_list, strict=True)
        for name in vectorizer.get_feature_names_out()
    ]
    return matrix, names


def _classifier():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, solver="liblinear")


def two_sample(
    first: list[str],
    second: list[str],
    seed: int = 0,
    folds: int = FOLDS,
    repeats: int = REPEATS,
    table=None,
) -> dict:
    """How well a classifier tells `first` (positives) from `second`, cross-validated (the mean
    over `repeats` ways of cutting the folds: one way alone moves the AUC by about as much as
    its standard error): {auc, se, told_apart, texts: [len(first), len(second)]}; the AUC is
    None with fewer than MIN_TEXTS on a side. Deterministic for a seed. `table`: the
    `_features` of `first + second`, when already computed."""
    import numpy as np

    sizes = [len(first), len(second)]
    if min(sizes) < MIN_TEXTS:
        return {"auc": None, "se": None, "told_apart": None, "texts": sizes}
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    features, _ = table or _features(list(first) + list(second))
    labels = np.array([1] * len(first) + [0] * len(second))
    aucs, right = [], []
    for r in range(repeats):
        splits = StratifiedKFold(n_splits=min(folds, *sizes), shuffle=True, random_state=seed + r)
        scores = cross_val_predict(
            _classifier(), features, labels, cv=splits, method="decision_function"
        )
        aucs.append(float(roc_auc_score(labels, scores)))
        right.append(float(np.mean((scores > 0) == (labels == 1))))
    auc = float(np.mean(aucs))
    return {
        "auc": round(auc, 4),
        "se": round(hanley_mcneil(auc, *sizes), 4),
        "told_apart": round(float(np.mean(right)), 4),
        "texts": sizes,
    }


def giveaways(samples: list[str], real: list[str], top: int = 8, table=None) -> dict:
    """The features that most tell samples from real pages, fitted on all of them: what the
    samples have more of (`samples`) and what the real pages have more of (`real`). `table`:
    the `_features` of `samples + real`, when already computed."""
    import numpy as np

    features, names = table or _features(list(samples) + list(real))
    model = _classifier().fit(features, [1] * len(samples) + [0] * len(real))
    order = np.argsort(model.coef_[0])
    return {
        "samples": [names[i] for i in order[::-1][:top]],
        "real": [names[i] for i in order[:top]],
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
    later pages differ from its earlier ones in events and words). `known` gives either when
    already measured for this text and seed. {auc, se, told_apart, texts, chars, floor: {...},
    training_pages: {...} or None, giveaways}."""
    known = known or {}
    real = excerpts(heldout, 2 * len(samples), length)
    random.Random(seed).shuffle(real)  # neighbouring pages share a scene: never all one side
    n = min(len(samples), len(real))  # the same number on each side
    cut_samples, ours = [cut(s, length) for s in samples[:n]], real[:n]
    # the test and its give-aways read the same features of the same texts: computed once
    table = _features(cut_samples + ours) if n >= MIN_TEXTS else None
    result = two_sample(cut_samples, ours, seed, table=table)
    result["chars"] = length
    half = len(real) // 2
    result["floor"] = known.get("floor") or two_sample(real[:half], real[half:], seed)
    pages = known.get("training_pages")
    if pages is None and training:
        pages = two_sample(excerpts(training, n, length), ours, seed)
    result["training_pages"] = pages
    if result["auc"] is not None:
        result["giveaways"] = giveaways(cut_samples, ours, table=table)
    return result
