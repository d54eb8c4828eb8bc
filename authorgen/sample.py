"""Generation: a model's scores turned into text, streamed, for one sample or many in one batch.

Each step, the scores of the samples still being written go through the samplers of
`authorgen.samplers` in their stated order (bans, repetition penalty, no-repeat n-grams,
temperature, top-k, top-p) and one token is drawn per sample. With `--known-words` no token
that would spell a word the training text does not have is taken (`words.py`): it is a ban
before the draw under top-k or top-p, else a check of the drawn token that, refusing it, draws
again with the ban (the same distribution). With `--max-copy` a drawn token that would make a
stretch of more than N characters copied from the corpus is banned and the draw repeated (the
same chain, one more ban). A `StopPolicy` decides where each sample ends.

A `Job` is one prompt's samples and what each step's scores make of them; a `Decoding` writes
the samples of many jobs as one batch on the model, which jobs join and leave at token
boundaries (the engine of `authorgen serve`); `Generation` is `generate`'s: one prompt's
samples through a `Decoding`, `BATCH` at a time.

Samples are independent of the batch: sample i draws only from its own `torch.Generator`,
seeded `seed + i`, so it is the same text whether written alone or among others (up to float
rounding in a batched matrix product, which moves a draw only when it falls within about 1e-7 of
a boundary).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from authorgen.clean import normalize
from authorgen.config import KNOWN_WORDS, SampleConfig
from authorgen.errors import DataError
from authorgen.ngrams import NGrams
from authorgen.originality import CopyGuard, Index
from authorgen.samplers import NEG_INF, Sampler, ban
from authorgen.tokenizer.base import Decoder
from authorgen.words import Follower

BATCH = 32  # samples written together at most
CUT_SHORT = ("length", "max_copy", "known_words")  # ends that may fall inside a word
MAX_TRIES = 64  # draws per step under --max-copy before the sample ends there


# --- where a sample ends ---

# A sentence ends with . ! ? or … and its closing quotes and brackets (French » after a space
# too), before a newline or before spaces and something other than », unless the word before a
# single full stop is a title or an initial.
_CLOSERS = "(?:[ \u00a0\u202f]?»|[\"'”’)\\]])*"
SENTENCE_END = re.compile(r"[.!?…]+" + _CLOSERS + r"(?=\n|\s+[^\s»])")
TRAILING_TERMINATOR = re.compile(r"[.!?…]+" + _CLOSERS + r"\s*$")  # may still become an end
_CLOSING = " \u00a0\u202f\"'”’»)]"
PARAGRAPH_END = re.compile(r"\n[ \t]*\n")
TRAILING_NEWLINE = re.compile(r"\n[ \t]*$")
ABBREVIATIONS = frozenset(
    re.findall(
        r"\w+",
        "Mr Mrs Ms Dr St Mt Jr Sr Messrs Rev Col Gen Capt Lt Sgt "
        "Prof Hon Esq vs viz M Mme Mlle MM Mgr Pr cf",
    )
)
LAST_WORD = re.compile(r"(\w+)$")


def _is_sentence_end(text: str, match: re.Match) -> bool:
    if match.group().rstrip(_CLOSING) != ".":
        return True
    word = LAST_WORD.search(text, 0, match.start())
    if word is None:
        return True
    word_text = word.group(1)
    return not (word_text in ABBREVIATIONS or (len(word_text) == 1 and word_text.isupper()))


class StopPolicy:
    """Decides where a sample ends and which of its text is safe to print yet.

    Text comes in pieces; `feed` returns what may be printed now. Text that might still be cut
    (the start of a stop string, a full stop that may end the sentence) is held back until it is
    known. The end is the earliest of: a stop string (not printed), with `until` the first
    sentence or paragraph end at or after `length` characters, and `config.limit` characters.
    """

    def __init__(self, config: SampleConfig):
        self.config = config
        self.text = ""
        self.sent = 0  # characters of text released
        self.end: int | None = None
        self.reason = ""
        self.hold = max((len(s) - 1 for s in config.stop), default=0)

    @property
    def done(self) -> bool:
        return self.end is not None

    def feed(self, piece: str) -> str:
        self.text += piece
        self._find_end()
        return self._release()

    def close(self, reason: str) -> str:
        """End now (the model can give no more): release what is left."""
        if self.end is None:
            self.end, self.reason = min(len(self.text), self.config.limit), reason
        return self._release()

    def _find_end(self) -> None:
        cfg, text = self.config, self.text
        found = []
        for stop in cfg.stop:
            at = text.find(stop, max(0, self.sent - len(stop)))
            if at >= 0:
                found.append((at, "stop"))
        if cfg.until == "sentence" and len(text) > cfg.length:
            for m in SENTENCE_END.finditer(text, max(0, cfg.length - 16)):
                if m.end() >= cfg.length and _is_sentence_end(text, m):
                    found.append((m.end(), "sentence"))
                    break
        elif cfg.until == "paragraph" and len(text) > cfg.length:
            for m in PARAGRAPH_END.finditer(text, max(0, cfg.length - 16)):
                if m.start() >= cfg.length:
                    found.append((m.start(), "paragraph"))
                    break
        if len(text) >= cfg.limit:
            found.append((cfg.limit, "length"))
        if found:
            self.end, self.reason = min(found)

    def _release(self) -> str:
        if self.end is not None:
            safe = self.end
        else:
            safe = min(len(self.text) - self.hold, self.config.limit)
            trailing = {"sentence": TRAILING_TERMINATOR, "paragraph": TRAILING_NEWLINE}.get(
                self.config.until or ""
            )
            m = trailing.search(self.text) if trailing else None
            if m:
                safe = min(safe, m.start())
        if safe <= self.sent:
            return ""
        out, self.sent = self.text[self.sent : safe], safe
        return out


# --- generation ---


@dataclass
class Sample:
    """One finished sample: the text generated (the prompt not included) and how it came."""

    text: str
    seed: int
    tokens: int
    elapsed_s: float
    stopped: str  # length | stop | sentence | paragraph | max_copy | known_words
    originality: dict | None = None
    known_words: bool = False  # written under --known-words
    ngrams: bool = False  # the run's n-gram counts mixed in

    @property
    def chars(self) -> int:
        return len(self.text)

    def to_dict(self, config: SampleConfig, prompt: str, run: str) -> dict:
        """The JSON line `generate --json` prints: the text, how it was sampled and how it came."""
        return {
            "text": self.text,
            "prompt": prompt,
            "seed": self.seed,
            "temperature": config.temperature,
            "top_k": config.top_k,
            "top_p": config.top_p,
            "repetition_penalty": config.repetition_penalty,
            "no_repeat_ngram": config.no_repeat_ngram,
            "max_copy": config.max_copy,
            "known_words": self.known_words,
            "ngrams": self.ngrams,
            "chars": self.chars,
            "tokens": self.tokens,
            "elapsed_s": self.elapsed_s,
            "stopped": self.stopped,
            "originality": self.originality,
            "run": run,
        }


def sample_seeds(config: SampleConfig) -> list[int]:
    """One seed per sample: `config.seed`, +1, +2, ...; from a fresh random seed when unset."""
    import secrets

    first = config.seed if config.seed is not None else secrets.randbelow(2**31)
    return [first + i for i in range(config.n)]


@dataclass
class SampleState:
    """One sample while it is written."""

    seed: int
    generator: torch.Generator
    decoder: Decoder
    history: list[int]  # token ids, the prompt's first
    stop: StopPolicy
    guard: CopyGuard | None = None  # --max-copy
    words: Follower | None = None  # --known-words
    dead_end: bool = False  # --known-words left no token to take
    tokens: int = 0  # generated so far
    sample: Sample | None = None  # once finished


Event = tuple[int, str, Sample | None]  # (sample i, text safe to print, the finished sample)


class Job:
    """The samples of one prompt (one per seed) while they are written: what each step's
    scores make of them. `Decoding` feeds it; it knows nothing of the model.

    `index` adds originality reports (unless `report` is False: the caller makes them) and is
    required for `config.max_copy` and `config.known_words`. `known_words` says whether the
    rule is on: as asked, else `KNOWN_WORDS`, for a char or subword run with an index.
    """

    def __init__(
        self,
        tokenizer,
        prompt: str,
        config: SampleConfig,
        seeds: Sequence[int],
        index: Index | None = None,
        report: bool = True,
        ngrams: NGrams | None = None,
    ):
        if config.max_copy is not None and index is None:
            raise DataError(
                "--max-copy needs the run's originality index, which this run does not have "
                "(trained with --no-index, or before runs kept one); train it again to get one"
            )
        self.prompt = normalize(prompt)  # NFC and LF, as the training text was
        self.ids = tokenizer.encode_prompt(self.prompt) if self.prompt else tokenizer.start_ids()
        if not self.ids:
            raise DataError("the prompt is empty after encoding; give some text")
        self.tokenizer, self.config, self.index = tokenizer, config, index
        asked = config.known_words
        if asked and index is None and tokenizer.kind != "word":
            raise DataError(
                "--known-words needs the run's originality index, which this run does not have "
                "(trained with --no-index, or before runs kept one); train it again to get one, "
                "or add --any-words"
            )
        self.known_words = (
            (KNOWN_WORDS if asked is None else asked)
            and index is not None
            and tokenizer.kind != "word"
        )
        self.rule = index.known_words(tokenizer) if self.known_words else None
        if config.ngrams and ngrams is None:
            raise DataError(
                "--ngrams needs the run's n-gram counts, which this run does not have (trained "
                "with --no-ngrams, on more than 20 million tokens, or before runs kept them); "
                "leave it out"
            )
        self.ngrams = ngrams if config.ngrams is not False else None
        # Without top-k and top-p, a drawn token is checked against the rule and only a refused
        # one makes the draw again from the scores with every token the rule bans at -inf: the
        # same distribution as banning first (the softmax over the allowed tokens is the first
        # draw given that it is allowed), and most steps need no list of banned tokens at all.
        # With top-k or top-p the ban must come first, as it changes which tokens they keep.
        self.words_after_draw = config.top_k is None and config.top_p >= 1.0
        self.report = report and index is not None
        self.special = torch.tensor(tokenizer.special_ids, dtype=torch.long)
        self.sampler = Sampler(config)  # one per job: NoRepeatNgram remembers its samples
        self.max_tokens = 4 * config.limit + 16  # a byte piece is at least a quarter character
        if config.max_tokens is not None:
            self.max_tokens = min(self.max_tokens, config.max_tokens)
        self.states = [self._new_state(seed) for seed in seeds]
        self.start = time.monotonic()

    def _new_state(self, seed: int) -> SampleState:
        cfg = self.config
        words = None
        if self.rule is not None:
            words = self.rule.follow()
            words.read(self.prompt)
        return SampleState(
            seed=seed,
            generator=torch.Generator().manual_seed(seed),
            decoder=self.tokenizer.decoder(self.prompt),
            history=list(self.ids),
            stop=StopPolicy(cfg),
            guard=CopyGuard(self.index, cfg.max_copy) if cfg.max_copy is not None else None,
            words=words,
        )

    @property
    def active(self) -> list[int]:
        """The samples still being written."""
        return [i for i, s in enumerate(self.states) if s.sample is None]

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Steps 1-3 for the active samples, from `logits` (their rows, in order): the scores
        their next tokens are drawn from, a copy in float64."""
        active = self.active
        if self.ngrams is not None:
            logits = self._mixed(logits, active)
        if self.sampler.penalties:  # they remember samples by row: give them every row
            scores = logits.new_zeros(len(self.states), logits.shape[-1], dtype=torch.float64)
            scores[active] = logits.double()  # (n, V)
            return self._penalized(scores, range(len(self.states)))[active]
        return self._penalized(logits.to(torch.float64, copy=True), active)

    def _mixed(self, logits: torch.Tensor, active: list[int]) -> torch.Tensor:
        """The log of the model's probabilities mixed with the n-gram counts' (`ngrams.py`),
        each row given its sample's tokens so far, in float64."""
        model = torch.softmax(logits.double(), dim=-1).cpu().numpy()
        mixed = self.ngrams.mix(model, [self.states[i].history for i in active])
        return torch.from_numpy(mixed).log().to(logits.device)

    def generators(self) -> list[torch.Generator]:
        return [self.states[i].generator for i in self.active]

    def advance(self, drawn: list[int], scores: torch.Tensor) -> list[Event]:
        """Take the tokens `drawn` from `scores` by the active samples: the text each may
        print now, and the samples that ended."""
        events: list[Event] = []
        for row, (i, token) in enumerate(zip(self.active, drawn, strict=True)):
            state = self.states[i]
            token, piece = self._accept(state, token, scores[row : row + 1])
            if token is not None:
                state.tokens += 1
                state.history.append(token)
                if state.words is not None:
                    state.words.accept(token, piece)
                text = state.stop.feed(piece)
                if not state.stop.done and state.tokens >= self.max_tokens:
                    text += state.stop.close("length")
            else:
                reason = "known_words" if state.dead_end else "max_copy"
                text = state.stop.feed(state.decoder.flush()) + state.stop.close(reason)
            if text:
                events.append((i, text, None))
            if state.stop.done:
                state.sample = self._finish(state)
                events.append((i, "", state.sample))
        return events

    def _penalized(self, scores: torch.Tensor, samples: Sequence[int]) -> torch.Tensor:
        """Steps 1-3 on `scores`, a row per sample of `samples` and this step's own copy (the
        bans are written into it in place): the bans, then the samplers that look at what each
        sample wrote. A sample that --known-words leaves no token is marked to end (its row
        keeps one token, so that the draw can go on for the others)."""
        if len(self.special):
            scores.index_fill_(1, self.special.to(scores.device), NEG_INF)
        for row, i in enumerate(samples):
            state = self.states[i]
            if state.sample is not None:
                continue
            banned = state.decoder.banned()
            if banned:
                scores[row, torch.as_tensor(banned, device=scores.device)] = NEG_INF
            if state.words is not None and not self.words_after_draw:
                mask, state.dead_end = state.words.banned(scores.device)
                scores[row].masked_fill_(mask, NEG_INF)
                if state.dead_end:
                    scores[row, 0] = 0.0
        if not self.sampler.penalties:
            return scores
        return self.sampler.penalize(scores, [self.states[i].history for i in samples])

    def _accept(
        self, state: SampleState, token: int, scores: torch.Tensor
    ) -> tuple[int | None, str]:
        """The drawn token and its text; or, when --known-words refuses it, a draw from the
        scores with what the rule bans at -inf; or under --max-copy the first redraw that copies
        no more than allowed (None when none does, or when --known-words leaves none)."""
        words = state.words if self.words_after_draw else None
        if state.dead_end:
            return None, ""
        for _ in range(MAX_TRIES):
            if words is not None and not words.allows(token):
                mask, state.dead_end = words.banned(scores.device)
                if state.dead_end:
                    return None, ""
                scores = scores.masked_fill(mask, NEG_INF)
                words = None  # every later draw is from these scores
                if not torch.isfinite(scores).any():  # with --max-copy's bans (or the n-grams')
                    state.dead_end = state.guard is None
                    break
                token = int(self.sampler.choose(scores, [state.generator])[0])
                continue
            if state.guard is None:
                return token, state.decoder.push(token)
            decoder = state.decoder.clone()
            piece = decoder.push(token)
            suffix = state.guard.check(piece)
            if suffix is not None:
                state.guard.accept(suffix)
                state.decoder = decoder
                return token, piece
            scores = ban(scores, 0, [token])
            if not torch.isfinite(scores).any():
                break
            token = int(self.sampler.choose(scores, [state.generator])[0])
        return None, ""

    def _finish(self, state: SampleState) -> Sample:
        stop = state.stop
        text = stop.text[: stop.end]
        return Sample(
            text=text,
            seed=state.seed,
            tokens=state.tokens,
            elapsed_s=round(time.monotonic() - self.start, 3),
            stopped=stop.reason,
            originality=self.originality(text, stop.reason) if self.report else None,
            known_words=self.known_words,
            ngrams=self.ngrams is not None,
        )

    def originality(self, text: str, stopped: str) -> dict:
        """The index's report on a sample of this job (its words judged after the prompt; one
        that ran into the end of a sample cut short is not judged)."""
        return self.index.report(text, self.prompt, stopped in CUT_SHORT)


class Decoding:
    """The samples of many jobs written as one batch on one model, a token per step.

    A job joins between steps (its prompt is read alone, then its state is copied into one row
    per sample) and each sample leaves when it ends, or its job is dropped; the others are not
    disturbed. Every sample draws from its own generator, so its text does not depend on what
    else is in the batch (up to float rounding in a batched matrix product, which moves a draw
    only when it falls within about 1e-7 of a boundary). The model should be in eval mode.
    """

    def __init__(self, model, device: torch.device | str = "cpu"):
        self.model, self.device = model, torch.device(device)
        self.rows: list[tuple[Job, int]] = []  # (job, sample) of each row
        self.state = None  # the model's state of the rows
        self.logits: torch.Tensor | None = None  # (rows, V): the scores of each next token

    def __len__(self) -> int:
        return len(self.rows)

    @torch.no_grad()
    def add(self, job: Job) -> None:
        """Read the job's prompt and give each of its samples a row."""
        if not job.states:
            return
        logits, row = self.model.prefill(torch.tensor([job.ids], device=self.device), self.state)
        self.state = self.model.join(self.state, row, len(job.states))
        first = logits.expand(len(job.states), -1)
        self.logits = first if self.logits is None else torch.cat((self.logits, first))
        self.rows += [(job, i) for i in range(len(job.states))]
        job.start = time.monotonic()

    def drop(self, job: Job) -> None:
        """Take the job's samples out of the batch (its caller went away)."""
        self._keep([k for k, (j, _) in enumerate(self.rows) if j is not job])

    @torch.no_grad()
    def step(self) -> list[tuple[Job, int, str, Sample | None]]:
        """A token for every row: the events of every job, then the next scores.

        Each job penalizes its own rows; the draws of jobs that shape their scores alike
        (temperature, top-k, top-p) are made in one call, each row from its own generator."""
        spans: dict[Job, list[int]] = {}  # a job's rows are together, in sample order
        for k, (job, _) in enumerate(self.rows):
            spans.setdefault(job, [k, k])[1] = k + 1
        scores = {job: job.scores(self.logits[a:b]) for job, (a, b) in spans.items()}
        groups: dict[tuple, list[Job]] = {}
        for job in spans:
            groups.setdefault(job.sampler.key, []).append(job)
        drawn: dict[Job, list[int]] = {}
        for jobs in groups.values():
            rows = torch.cat([scores[job] for job in jobs]) if len(jobs) > 1 else scores[jobs[0]]
            generators = [g for job in jobs for g in job.generators()]
            tokens = jobs[0].sampler.choose(rows, generators).tolist()
            for job in jobs:
                drawn[job], tokens = tokens[: len(job.active)], tokens[len(job.active) :]
        events = [(job, *event) for job in spans for event in job.advance(drawn[job], scores[job])]
        self._keep([k for k, (job, i) in enumerate(self.rows) if job.states[i].sample is None])
        if self.rows:
            last = [[job.states[i].history[-1]] for job, i in self.rows]
            logits, self.state = self.model(torch.tensor(last, device=self.device), self.state)
            self.logits = logits[:, -1]  # (rows, V)
        return events

    def _keep(self, kept: list[int]) -> None:
        if len(kept) == len(self.rows):
            return
        self.rows = [self.rows[k] for k in kept]
        if not kept:
            self.state = self.logits = None
            return
        index = torch.tensor(kept, device=self.logits.device)
        self.state = self.model.keep(self.state, index)
        self.logits = self.logits.index_select(0, index)


class Generation:
    """Samples of one prompt, written `BATCH` at a time as one batch on the model.

    Iterating yields (i, text, sample) events in the order they happen: `text` is the next piece
    of sample i that is safe to print, and `sample` is the finished `Sample` (with empty text
    in that event). `index` adds originality reports and is required for `config.max_copy`.
    The model is in eval mode while it writes, and in the mode it was given in afterwards.
    """

    def __init__(
        self,
        model,
        tokenizer,
        prompt: str,
        config: SampleConfig,
        seeds: Sequence[int],
        device: torch.device | str = "cpu",
        index: Index | None = None,
        ngrams: NGrams | None = None,
    ):
        seeds = list(seeds)
        self.jobs = [
            Job(tokenizer, prompt, config, seeds[first : first + BATCH], index, ngrams=ngrams)
            for first in range(0, max(len(seeds), 1), BATCH)
        ]
        self.prompt = self.jobs[0].prompt
        self.model, self.device = model, torch.device(device)

    def __iter__(self) -> Iterator[Event]:
        first = 0
        for job in self.jobs:
            yield from self._batch(first, job)
            first += len(job.states)

    def _batch(self, first: int, job: Job) -> Iterator[Event]:
        was_training = self.model.training
        self.model.eval()
        try:
            decoding = Decoding(self.model, self.device)
            decoding.add(job)
            while decoding:
                for _, i, text, sample in decoding.step():
                    yield first + i, text, sample
        finally:
            self.model.train(was_training)  # the caller's model is left as it was given


def generate(
    model,
    tokenizer,
    prompt: str,
    config: SampleConfig,
    seed: int,
    device: torch.device | str = "cpu",
    index=None,
    ngrams=None,
) -> Iterator[str]:
    """The continuation of `prompt` (one sample), piece by piece as it may be printed.

    Without a prompt the model starts as at the beginning of a paragraph (after a newline).
    Pieces are whole characters: subword bytes are held back until they complete one.

    Raises:
        DataError: when the prompt has characters a char model never saw.
    """
    generation = Generation(model, tokenizer, prompt, config, [seed], device, index, ngrams)
    return (text for _, text, _ in generation if text)
