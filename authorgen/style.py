"""Style: does a text sound like an author, or like anyone? Stylometry, no torch.

A text's profile (`profile`):

- relative frequencies of its words (lowercased `\\w+`, inner apostrophes kept). Among a set of
  texts the most frequent words are mostly function words (the, of, and, her, que, de...), which
  writers use unconsciously and distinctively: the basis of Burrows' Delta;
- relative frequencies of its character 3-grams;
- sentence length in words and word length in characters (mean and standard deviation);
- punctuation: uses of each mark per 1,000 characters.

Comparing a text with candidate authors (`compare`), each given by some of their text:

1. The features are the `mfw` most frequent words of all the candidates' text together.
2. Each candidate's text is cut into chunks of about 2,000 words; every feature's mean and
   standard deviation over all chunks standardise the frequencies into z-scores (with chunks,
   the spread is meaningful even for two candidates).
3. Burrows' Delta between two profiles: the mean absolute difference of their z-scores.
   Cosine Delta (Smith and Aldridge 2011, the most reliable variant in Evert et al. 2017):
   1 - cosine of the z-score vectors. Both are symmetric and 0 for identical profiles; lower is
   closer. A text is ranked among the candidates by Delta.
4. Calibration: Delta grows as texts get shorter (their word frequencies are noisier), so the
   author's own text is cut into pieces as long as the text judged, and the median Delta of
   those pieces to the author is `own_delta`: a text as close as that reads like the author's
   own pages of the same length.

The other features are reported beside Delta as plain differences (character 3-gram cosine
distance, sentence and word lengths, punctuation rates), so a person can see where a text
differs: "sentences 31 words against the author's 24".
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass

WORD_RE = re.compile(r"\w+(?:['’]\w+)*")
SENTENCE_RE = re.compile(r"[^.!?…]+[.!?…]+")
PUNCTUATION = ",;:.!?\"'“”‘’()—–-…«»"
MFW = 150  # most frequent words used by Delta (Burrows used 150)
CHUNK_WORDS = 2000


@dataclass
class Profile:
    words: dict[str, float]  # relative frequency of each word
    char3: dict[str, float]  # relative frequency of each character 3-gram
    n_words: int
    sentence_words: tuple[float, float]  # mean, standard deviation
    word_chars: tuple[float, float]
    punctuation: dict[str, float]  # per 1,000 characters


def _relative(counts: Counter) -> dict[str, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def _mean_sd(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    return statistics.fmean(values), statistics.pstdev(values)


def words_of(text: str) -> list[str]:
    return [w.lower() for w in WORD_RE.findall(text)]


def _word_profile(words: list[str]) -> Profile:
    return Profile(_relative(Counter(words)), {}, len(words), (0.0, 0.0), (0.0, 0.0), {})


def profile(text: str) -> Profile:
    words = words_of(text)
    flat = re.sub(r"\s+", " ", text)
    sentences = [len(WORD_RE.findall(s)) for s in SENTENCE_RE.findall(flat)]
    chars = max(len(text), 1)
    marks = Counter(ch for ch in text if ch in PUNCTUATION)
    return Profile(
        words=_relative(Counter(words)),
        char3=_relative(Counter(flat[i : i + 3] for i in range(len(flat) - 2))),
        n_words=len(words),
        sentence_words=_mean_sd([n for n in sentences if n]),
        word_chars=_mean_sd([len(w) for w in words]),
        punctuation={m: 1000 * marks[m] / chars for m in PUNCTUATION},
    )


def chunks(words: list[str], size: int = CHUNK_WORDS) -> list[list[str]]:
    """Runs of about `size` words (at least one run; no short last run)."""
    pieces = [words[i : i + size] for i in range(0, len(words), size)] or [[]]
    if len(pieces) > 1 and len(pieces[-1]) < size // 2:
        last = pieces.pop()
        pieces[-1] = pieces[-1] + last
    return pieces


@dataclass
class Scale:
    """The features (most frequent words) and their mean and standard deviation over chunks."""

    features: list[str]
    mean: list[float]
    sd: list[float]

    def z(self, p: Profile) -> list[float]:
        return [
            (p.words.get(w, 0.0) - m) / s
            for w, m, s in zip(self.features, self.mean, self.sd, strict=True)
        ]


def make_scale(word_lists: list[list[str]], mfw: int = MFW) -> Scale:
    """The `mfw` most frequent words of all the lists together, standardised over their chunks."""
    total: Counter = Counter()
    for words in word_lists:
        total.update(words)
    features = [w for w, _ in total.most_common(mfw)]
    pieces = [_word_profile(c) for words in word_lists for c in chunks(words)]
    mean, sd = [], []
    for w in features:
        values = [p.words.get(w, 0.0) for p in pieces]
        mean.append(statistics.fmean(values))
        sd.append(statistics.pstdev(values) or 1e-9)
    return Scale(features, mean, sd)


def delta(a: Profile, b: Profile, scale: Scale) -> float:
    """Burrows' Delta: the mean absolute difference of the z-scores."""
    za, zb = scale.z(a), scale.z(b)
    return sum(abs(x - y) for x, y in zip(za, zb, strict=True)) / len(za)


def cosine_delta(a: Profile, b: Profile, scale: Scale) -> float:
    """1 - cosine similarity of the z-score vectors (0 for identical profiles)."""
    za, zb = scale.z(a), scale.z(b)
    dot = sum(x * y for x, y in zip(za, zb, strict=True))
    norm = math.sqrt(sum(x * x for x in za)) * math.sqrt(sum(y * y for y in zb))
    return 1.0 - dot / norm if norm else 0.0


def _cosine_distance(a: dict[str, float], b: dict[str, float]) -> float:
    dot = sum(v * b.get(k, 0.0) for k, v in a.items())
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return 1.0 - dot / norm if norm else 1.0


def compare(
    text: str, candidates: dict[str, str], author: str | None = None, mfw: int = MFW
) -> dict:
    """How close `text` is to each candidate (name -> some of their text), `author` first.

    Returns {delta: {name: Burrows' Delta}, cosine_delta, closest, author, rank (1 = closest),
    own_delta (the author's own chunks against the author), features, summary}.
    """
    word_lists = {name: words_of(t) for name, t in candidates.items()}
    scale = make_scale(list(word_lists.values()), mfw)
    target = profile(text)
    profiles = {
        name: profile(t) if name == author else _word_profile(word_lists[name])
        for name, t in candidates.items()
    }
    deltas = {name: round(delta(target, p, scale), 4) for name, p in profiles.items()}
    cosines = {name: round(cosine_delta(target, p, scale), 4) for name, p in profiles.items()}
    ranking = sorted(deltas, key=deltas.__getitem__)
    result = {
        "delta": deltas,
        "cosine_delta": cosines,
        "closest": ranking[0],
        "author": author,
        "rank": ranking.index(author) + 1 if author in deltas else None,
        "mfw": len(scale.features),
        "own_delta": None,
        "features": None,
    }
    if author in profiles:
        own = profiles[author]
        pieces = chunks(word_lists[author], max(50, target.n_words))
        if len(pieces) > 1:
            result["own_delta"] = round(
                statistics.median(delta(_word_profile(c), own, scale) for c in pieces), 4
            )
        result["features"] = {
            "char3_cosine_distance": round(_cosine_distance(target.char3, own.char3), 4),
            "sentence_words": [round(target.sentence_words[0], 1), round(own.sentence_words[0], 1)],
            "word_chars": [round(target.word_chars[0], 2), round(own.word_chars[0], 2)],
            "punctuation_per_1000": {
                m: [round(target.punctuation[m], 1), round(own.punctuation[m], 1)]
                for m in PUNCTUATION
                if target.punctuation[m] or own.punctuation[m]
            },
        }
    result["summary"] = summary(result)
    return result


def summary(result: dict) -> str:
    """One sentence a person can read: which author the text is closest to, by how much."""
    deltas, author = result["delta"], result["author"]
    others = [v for k, v in deltas.items() if k != author]
    if author is None or author not in deltas:
        return f"closest to {result['closest']} (Delta {deltas[result['closest']]:.2f})"
    mine = deltas[author]
    own = f"; the author's own pages: {result['own_delta']:.2f}" if result["own_delta"] else ""
    if not others:
        return f"Delta {mine:.2f} to {author}{own}"
    median = statistics.median(others)
    n = len(others)
    if result["rank"] == 1:
        head = f"closer to {author} than to the other {n} author{'s' * (n != 1)}"
    else:
        head = f"closer to {result['closest']} than to {author} (rank {result['rank']} of {n + 1})"
    return f"{head}; Delta {mine:.2f} vs {median:.2f} (median of the others){own}"
