"""Generation: a model's scores turned into text, streamed, for one sample or many in one batch.

Each step, the scores of the samples still being written go through the stages of
`authorgen.samplers` in their stated order (the n-gram mix, bans, penalties, temperature,
top-k, top-p), one token is drawn per sample, and the constraints of `authorgen.constraints`
(known words, max copy) check it, the draw repeated with their bans when one refuses it. A
`StopPolicy` (`stops.py`) decides where each sample ends.

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

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from authorgen.clean import normalize
from authorgen.config import KNOWN_WORDS, REQUEST_FIELDS, SampleConfig
from authorgen.constraints import Constraint, CopyLimit, OnlyKnownWords, take
from authorgen.errors import DataError, Unsupported
from authorgen.errors import field as setting
from authorgen.ngrams import NGrams
from authorgen.originality import CopyGuard, Index
from authorgen.penalties import NgramMix, breakers_of
from authorgen.samplers import Sampler
from authorgen.stages import NEG_INF
from authorgen.stops import StopPolicy
from authorgen.tokenizer.base import Decoder

BATCH = 32  # samples written together at most
CUT_SHORT = ("length", "max_copy", "known_words", "time")  # ends that may fall inside a word


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
        """The JSON line `generate --json` prints: the text, how it was sampled (every setting
        of the draw, with the rules as they applied) and how it came."""
        drawn = {k: v for k, v in config.to_dict().items() if k not in REQUEST_FIELDS}
        return {
            "text": self.text,
            "prompt": prompt,
            "seed": self.seed,
            **drawn,
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


def features(
    tokenizer, config: SampleConfig, index: Index | None, ngrams: NGrams | None
) -> tuple[bool, NGrams | None]:
    """Which of the run's helpers a job uses: whether the known-words rule is on (as asked,
    else `KNOWN_WORDS`, for a char or subword run with an index) and the n-gram counts to mix
    in (as asked, else where the run keeps them).

    Raises:
        Unsupported: for max copy or known words without an index, or n-grams without counts.
    """
    missing = "which this run does not have (trained with --no-index, or before runs kept one)"
    if config.max_copy is not None and index is None:
        raise Unsupported(
            f"{setting('max_copy')} needs the run's originality index, {missing}; train it "
            "again to get one"
        )
    asked, word_model = config.known_words, tokenizer.kind == "word"
    if asked and index is None and not word_model:
        raise Unsupported(
            f"{setting('known_words')} needs the run's originality index, {missing}; train it "
            f"again to get one, or add {setting('known_words=false')}"
        )
    known_words = (KNOWN_WORDS if asked is None else asked) and index is not None
    if config.ngrams and ngrams is None:
        raise Unsupported(
            f"{setting('ngrams')} needs the run's n-gram counts, which this run does not have "
            "(trained with --no-ngrams, on more than 20 million tokens, or before runs kept "
            "them); leave it out"
        )
    return known_words and not word_model, ngrams if config.ngrams is not False else None


@dataclass
class SampleState:
    """One sample while it is written."""

    seed: int
    generator: torch.Generator
    decoder: Decoder
    history: list[int]  # token ids, the prompt's first
    stop: StopPolicy
    constraints: list[Constraint] = field(default_factory=list)
    dead: str = ""  # a constraint that bans before the draw left no token: its reason
    tokens: int = 0  # generated so far
    sample: Sample | None = None  # once finished


Event = tuple[int, str, Sample | None]  # (sample i, text safe to print, the finished sample)


class Job:
    """The samples of one prompt (one per seed) while they are written: what each step's
    scores make of them. `Decoding` feeds it; it knows nothing of the model.

    `index` adds originality reports (unless `report` is False: the caller makes them) and is
    needed for max copy and known words; `ngrams` are the run's counts (see `features`).
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
        deadline: float | None = None,  # time.monotonic() at which its samples end ("time")
    ):
        self.deadline = deadline
        self.known_words, self.ngrams = features(tokenizer, config, index, ngrams)
        self.prompt = normalize(prompt)  # NFC and LF, as the training text was
        self.ids = tokenizer.encode_prompt(self.prompt) if self.prompt else tokenizer.start_ids()
        if not self.ids:
            raise DataError("the prompt is empty after encoding; give some text")
        self.tokenizer, self.config, self.index = tokenizer, config, index
        self.rule = index.known_words(tokenizer) if self.known_words else None
        breakers = breakers_of(tokenizer) if config.dry else frozenset()
        self.sampler = Sampler(config, breakers)  # one per job: penalties remember its samples
        self.mix = NgramMix(self.ngrams, config.ngram_share) if self.ngrams is not None else None
        # Constraints check the token drawn, unless a shaping stage is not pointwise (top-k,
        # top-p): then those that can say what they ban ban it before the draw (stage 2).
        self.ban_first = not self.sampler.pointwise
        self.report = report and index is not None
        self.special = torch.tensor(tokenizer.special_ids, dtype=torch.long)
        self.max_tokens = 4 * config.limit + 16  # a byte piece is at least a quarter character
        if config.max_tokens is not None:
            self.max_tokens = min(self.max_tokens, config.max_tokens)
        self.states = [self._new_state(seed) for seed in seeds]
        self.start = time.monotonic()

    def _new_state(self, seed: int) -> SampleState:
        cfg = self.config
        constraints: list[Constraint] = []
        if self.rule is not None:
            constraints.append(OnlyKnownWords(self.rule.follow(), self.prompt))
        if cfg.max_copy is not None:
            constraints.append(CopyLimit(CopyGuard(self.index, cfg.max_copy)))
        return SampleState(
            seed=seed,
            generator=torch.Generator().manual_seed(seed),
            decoder=self.tokenizer.decoder(self.prompt),
            history=list(self.ids),
            stop=StopPolicy(cfg),
            constraints=constraints,
        )

    @property
    def active(self) -> list[int]:
        """The samples still being written."""
        return [i for i, s in enumerate(self.states) if s.sample is None]

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Stages 1-3 for the active samples, from `logits` (their rows, in order): the scores
        their next tokens are drawn from, a copy in float64 on the host (an Apple GPU has no
        float64; the draw is made on the host in any case)."""
        active = self.active
        history = [self.states[i].history for i in active]
        if self.mix is not None:
            scores = self.mix(logits, history)
        else:
            scores = logits.cpu().to(torch.float64)  # a new tensor: the dtype changes
        self._ban(scores, active)
        return self.sampler.penalize(scores, history)

    def _ban(self, scores: torch.Tensor, active: list[int]) -> None:
        """Stage 2, in place: control tokens, pieces that would break UTF-8, and before the draw
        what the constraints that can say so ban. A sample they leave no token is marked to
        end (its row keeps one token, so that the draw can go on for the others)."""
        if len(self.special):
            scores.index_fill_(1, self.special.to(scores.device), NEG_INF)
        for row, i in enumerate(active):
            state = self.states[i]
            banned = state.decoder.banned()
            if banned:
                scores[row, torch.as_tensor(banned, device=scores.device)] = NEG_INF
            if not self.ban_first:
                continue
            for constraint in state.constraints:
                mask, dead = constraint.banned(scores.device)
                if mask is None:
                    continue
                scores[row].masked_fill_(mask, NEG_INF)
                if dead:
                    state.dead = constraint.reason
                    scores[row, 0] = 0.0

    def generators(self) -> list[torch.Generator]:
        return [self.states[i].generator for i in self.active]

    def advance(self, drawn: list[int], scores: torch.Tensor) -> list[Event]:
        """Take the tokens `drawn` from `scores` by the active samples: the text each may
        print now, and the samples that ended."""
        events: list[Event] = []
        for row, (i, token) in enumerate(zip(self.active, drawn, strict=True)):
            state = self.states[i]
            taken = self._take(state, token, scores[row : row + 1])
            if isinstance(taken, str):  # a constraint left no token: the sample ends here
                text = state.stop.feed(state.decoder.flush()) + state.stop.close(taken)
            else:
                token, piece = taken
                state.tokens += 1
                state.history.append(token)
                text = state.stop.feed(piece)
                if not state.stop.done and state.tokens >= self.max_tokens:
                    text += state.stop.close("length")
                elif not state.stop.done and self.deadline and time.monotonic() >= self.deadline:
                    text += state.stop.close("time")
            if text:
                events.append((i, text, None))
            if state.stop.done:
                state.sample = self._finish(state)
                events.append((i, "", state.sample))
        return events

    def _take(self, state: SampleState, token: int, scores: torch.Tensor) -> tuple[int, str] | str:
        """The token drawn and its text, or the redraw the constraints allow (`take`), or the
        reason the sample ends."""
        if state.dead:
            return state.dead
        if not state.constraints:
            return token, state.decoder.push(token)
        checked = [
            c for c in state.constraints if not (self.ban_first and c.masks)
        ]  # the others banned before the draw
        taken = take(
            state.constraints,
            checked,
            state.decoder,
            token,
            scores,
            lambda row: int(self.sampler.choose(row, [state.generator])[0]),
        )
        if isinstance(taken, str):
            return taken
        token, piece, state.decoder = taken
        return token, piece

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
