"""The engine behind `authorgen serve`: models loaded once, many callers decoded together.

One worker thread owns the models. Each loaded run has a `sample.Decoding`: a request becomes a
`sample.Job` that joins its run's batch at the next token boundary and leaves it when its samples
end or its caller goes away, so requests that arrive together are computed as one batch while
each sample draws only from its own generator (the same seed gives the same text however many
others are asking). The event loop only hands requests over and passes text on, so the page and
`/v1/models` stay responsive while models work.

    caller (event loop)           worker thread
    submit() -> Ticket  ------>   pending -> load run (LRU) -> Job -> Decoding.add
    await ticket.queue  <-----   Decoding.step() events, handed over every 20 ms at most
    ticket.cancel()     ------>   Decoding.drop(job) before the next step
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from authorgen.config import SampleConfig
from authorgen.errors import AuthorgenError
from authorgen.serve.errors import Busy, ClientBusy, Stopping, Unavailable, UnknownRun

# Text is handed to the event loop at most this often per request (the first piece at once):
# a hand-over per token costs the loop a wake-up, a JSON event and the GIL back and forth, which
# with a fast model took longer than the token itself. 20 ms is not seen on the page.
HAND_S = 0.02
REPORT_LANES = 4  # threads making originality reports


@dataclass
class Ticket:
    """A request in the engine: its samples' events arrive on `queue` as lists of
    ("text", i, text) / ("sample", i, Sample) / ("error", exc) / ("started", job) / ("end",)."""

    run: str
    prompt: str
    config: SampleConfig
    seeds: list[int]
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    job: object = None  # the first sample.Job started for it
    started: int = 0  # its seeds handed to jobs so far (a fair share at a time: `_admit`)
    decoding: int = 0  # its samples in the batch now
    deadline: float | None = None  # time.monotonic() at which its samples end ("time")
    lane: int = 0  # the reporter thread its originality reports are made on
    held: list = field(default_factory=list)  # items not handed over yet
    handed: float = 0.0  # when items were last handed over (time.monotonic())

    @property
    def rows(self) -> int:
        """The samples it has still to start."""
        return len(self.seeds) - self.started

    @property
    def done(self) -> bool:
        return self.started == len(self.seeds) and not self.decoding

    def send(self, items: list) -> None:
        """From the worker: hand `items` (and any held) to the caller on its event loop."""
        items, self.held, self.handed = self.held + items, [], time.monotonic()
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, items)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled = True

    def hold(self, items: list) -> None:
        """From the worker: hand `items` over with the next ones, unless HAND_S has passed."""
        if time.monotonic() - self.handed >= HAND_S:
            self.send(items)
        else:
            self.held += items


class Engine:
    """Serves the runs named in `runs` (or every run in `checkpoints_dir`).

    At most `max_loaded` runs stay in memory (least recently used out, once idle); at most
    `max_batch` samples of one run are decoded together, and at most `max_waiting` more wait
    for a place before `submit` answers Busy; a request's samples end after `max_seconds`
    (None: no limit), waiting included.
    """

    def __init__(
        self,
        checkpoints_dir: Path,
        runs: list[Path] | None = None,
        device: str = "auto",
        max_loaded: int = 2,
        max_batch: int = 32,
        max_waiting: int = 64,
        precision: str = "auto",
        max_seconds: float | None = None,
    ):
        self.max_seconds = max_seconds
        # one client (address) may have half of what the engine holds in flight, or a batch
        self.max_client = max(max_batch, (max_batch + max_waiting) // 2)
        self.clients: dict[str, weakref.WeakValueDictionary] = {}  # its tickets, while alive
        self.checkpoints_dir = Path(checkpoints_dir)
        self.precision = precision  # of a transformer's weights on the CPU: auto, fp32, int8
        self.named = {path.name: path for path in runs} if runs else None
        self.device_name = device
        self.max_loaded, self.max_batch, self.max_waiting = max_loaded, max_batch, max_waiting
        self.pending: list[Ticket] = []
        self.loaded: OrderedDict[str, tuple] = OrderedDict()  # run -> (Run, index, Decoding)
        self.stamps: dict[str, tuple] = {}  # run -> its files' identity when it was loaded
        self.tickets: dict[int, Ticket] = {}  # id(job) -> its ticket, while decoding
        self.wake = threading.Condition()
        # Originality reports (Python, about 30 ms per 1,000 characters) off the worker: the
        # batch goes on with its next token meanwhile. REPORT_LANES threads, a request's
        # reports all in one of them (in order: its samples before its end), the requests
        # dealt out in turn, so that one request's long reports hold up few others.
        self.reporters = [
            ThreadPoolExecutor(1, thread_name_prefix=f"authorgen-report-{i}")
            for i in range(REPORT_LANES)
        ]
        self.dealt = 0  # requests dealt to the lanes so far
        self.stopping = False  # the worker ends
        self.closing = False  # the server is stopping: requests end at the next token
        self.thread: threading.Thread | None = None

    # --- the caller's side (event loop) ---

    def runs(self) -> dict[str, Path]:
        """The runs served now, by name: a run trained while serving appears without a restart."""
        if self.named is not None:
            return dict(self.named)
        from authorgen.checkpoint import list_runs

        found, _ = list_runs(self.checkpoints_dir)
        return {row["run"]: self.checkpoints_dir / row["run"] for row in found}

    def path(self, name: str) -> Path:
        """The folder of the run served as `name` (never a path outside the served runs);
        cheap enough for every request: one name checked, one file looked for."""
        from authorgen.checkpoint import CONFIG
        from authorgen.errors import UsageError
        from authorgen.files import check_name

        if self.named is not None:
            path = self.named.get(name) if isinstance(name, str) else None
        else:
            try:
                path = self.checkpoints_dir / check_name(name, "run")
            except (UsageError, TypeError):
                path = None
            if path is not None and not (path / CONFIG).is_file():
                path = None
        if path is None:
            raise UnknownRun(f"no run named {name!r} is served here; GET /v1/models lists them")
        return path

    def submit(
        self, name: str, prompt: str, config: SampleConfig, seeds: list[int], client: str = ""
    ) -> Ticket:
        """Queue a request of `client` (its address); its events then arrive on the ticket's
        queue.

        Raises:
            UnknownRun: no such run is served.
            Busy: the waiting line is full, or the client has `max_client` samples in flight
                (counted from its live tickets: one its caller has dropped counts no more).
        """
        if self.closing:
            raise Stopping("the server is stopping")
        self.path(name)
        ticket = Ticket(name, prompt, config, list(seeds), asyncio.get_running_loop())
        if self.max_seconds:
            ticket.deadline = time.monotonic() + self.max_seconds
        with self.wake:
            live = self.clients.setdefault(client, weakref.WeakValueDictionary())
            flight = sum(t.rows + t.decoding for t in list(live.values()) if not t.cancelled)
            if flight + ticket.rows > self.max_client:
                raise ClientBusy(
                    f"this client has {flight} samples in flight, and one may have at most "
                    f"{self.max_client} (max_client_samples); try again in a moment"
                )
            live[id(ticket)] = ticket
            if not self._fits(ticket):
                waiting = sum(t.rows for t in self.pending if not t.cancelled)
                if waiting + ticket.rows > self.max_waiting:
                    raise Busy("the server is busy; try again in a moment")
            self.pending.append(ticket)
            self.wake.notify()
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """The caller went away: stop computing its samples at the next token."""
        with self.wake:
            ticket.cancelled = True
            self.wake.notify()

    def status(self) -> dict:
        """What the engine is doing (samples decoding and waiting, runs in memory) and its
        limits."""
        with self.wake:
            return {
                "decoding": sum(len(d) for _, _, d in self.loaded.values()),
                "waiting": sum(t.rows for t in self.pending if not t.cancelled),
                "loaded": list(self.loaded),
                "limits": {
                    "max_batch": self.max_batch,
                    "max_waiting": self.max_waiting,
                    "max_loaded": self.max_loaded,
                    "max_seconds": self.max_seconds,
                    "max_client_samples": self.max_client,
                },
            }

    def _fits(self, ticket: Ticket) -> bool:
        """Whether the ticket can join its run's batch at once (nobody waits before it)."""
        if any(t.run == ticket.run and not t.cancelled for t in self.pending):
            return False
        entry = self.loaded.get(ticket.run)
        used = len(entry[2]) if entry else 0
        return not used or used + ticket.rows <= self.max_batch

    # --- the worker ---

    def start(self) -> None:
        self.thread = threading.Thread(target=self._work, name="authorgen-engine", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """The server begins to stop: end every request at the next token, refuse new ones.
        Safe in a signal handler (it only sets a flag)."""
        self.closing = True

    def stop(self) -> None:
        with self.wake:
            self.stopping = True
            self.wake.notify()
        if self.thread is not None:
            self.thread.join(timeout=10)
        for reporter in self.reporters:
            reporter.shutdown(wait=False, cancel_futures=True)

    def _work(self) -> None:
        import torch

        torch.set_grad_enabled(False)
        while True:
            with self.wake:
                while not self.stopping and not self.pending and not self._decoding():
                    self.wake.wait()
                if self.stopping:
                    return
                if self.closing:
                    self._end_all()
                    continue
                starting = self._admit()
            for ticket, first, end in starting:
                self._start(ticket, first, end)
            for name in list(self.loaded):
                self._step(name)

    def _end_all(self) -> None:
        """Tell every request in flight that the server stops, and forget them (called with
        the lock held)."""
        tickets = {id(t): t for t in [*self.pending, *self.tickets.values()]}  # each once
        for ticket in tickets.values():
            ticket.send([("error", Stopping("the server is stopping; ask again once it is back"))])
        self.pending.clear()
        self.tickets.clear()
        for name, (run, index, decoding) in list(self.loaded.items()):
            self.loaded[name] = (run, index, type(decoding)(decoding.model, decoding.device))

    def _decoding(self) -> bool:
        return any(len(d) for _, _, d in self.loaded.values())

    def _admit(self) -> list[tuple[Ticket, int, int]]:
        """What starts now (called with the lock held): (ticket, first, end) of the seeds
        each waiting ticket may begin, in order of arrival; cancelled ones are dropped.

        A fair share: with R requests for a run (decoding or waiting), one request decodes
        at most max_batch // R of its samples at a time, the rest as those end; alone, as
        many as it asks (a request larger than the batch begins when it is empty)."""
        if not self.pending:  # the usual case while a batch decodes: nothing to count
            return []
        starting, room = [], {}
        requests: dict[str, set[int]] = {}
        for ticket in [*self.tickets.values(), *self.pending]:
            if not ticket.cancelled:
                requests.setdefault(ticket.run, set()).add(id(ticket))
        for ticket in list(self.pending):
            if ticket.cancelled:
                self.pending.remove(ticket)
                continue
            entry = self.loaded.get(ticket.run)
            used = room.setdefault(ticket.run, len(entry[2]) if entry else 0)
            share = max(1, self.max_batch // len(requests[ticket.run]))
            take = ticket.rows
            if len(requests[ticket.run]) > 1:
                take = min(take, share - ticket.decoding)
            if take < 1 or (used and used + take > self.max_batch):
                continue
            room[ticket.run] = used + take
            starting.append((ticket, ticket.started, ticket.started + take))
            ticket.started += take
            ticket.decoding += take
            if not ticket.rows:
                self.pending.remove(ticket)
        return starting

    def _start(self, ticket: Ticket, first: int, end: int) -> None:
        """Load the ticket's run if need be and put its samples `first`..`end` in the run's
        batch; a failure ends this request only."""
        from authorgen.sample import Job

        try:
            run, index, decoding = self._load(ticket.run)
        except UnknownRun as exc:  # it went while the request waited
            return self._fail(ticket, exc)
        except AuthorgenError as exc:
            return self._fail(ticket, Unavailable(str(exc)))
        try:
            counts = run.ngrams(ticket.config.ngrams)
            job = Job(
                run.tokenizer, ticket.prompt, ticket.config, ticket.seeds[first:end], index,
                False, counts, ticket.deadline,
            )  # fmt: skip
            decoding.add(job)
        except Exception as exc:  # the prompt does not fit the run (or worse: a 500)
            return self._fail(ticket, exc)
        job.first = first  # its samples' place among the request's
        self.tickets[id(job)] = ticket
        if ticket.job is None:  # originality reports are made on a reporter thread
            ticket.job = job
            ticket.lane, self.dealt = self.dealt % REPORT_LANES, self.dealt + 1
            ticket.send([("started", job)])

    @staticmethod
    def _fail(ticket: Ticket, exc: Exception) -> None:
        """End a request with `exc`; the rest of its samples start no more."""
        ticket.cancelled = True
        ticket.send([("error", exc)])

    def _load(self, name: str):
        """The run, its originality index and its batch: loaded once, least recently used out,
        and again when its files changed (trained again under its name) and it is idle."""
        path = self.path(name)
        if name in self.loaded:
            if self.stamps.get(name) == _stamp(path) or len(self.loaded[name][2]):
                with self.wake:  # the caller's side reads the table under the lock
                    self.loaded.move_to_end(name)
                    return self.loaded[name]
            with self.wake:
                del self.loaded[name]
        from authorgen.checkpoint import load_run, read_config
        from authorgen.devices import generation_weights, resolve_device
        from authorgen.files import cache_dir
        from authorgen.sample import Decoding

        device = resolve_device(self.device_name)
        stamp = _stamp(path)
        kind = read_config(path)["model"].get("model", "lstm")
        int8_fits = kind == "transformer" and device.type == "cpu"
        weights = generation_weights(
            self.precision if int8_fits else "fp32", kind, device, cache_dir()
        )
        run = load_run(path, device, weights=weights)
        entry = (run, run.originality_index(), Decoding(run.model, device))
        with self.wake:
            self.loaded[name] = entry
            self.stamps[name] = stamp
            idle = [n for n, (_, _, d) in self.loaded.items() if not len(d) and n != name]
            for old in idle[: max(0, len(self.loaded) - self.max_loaded)]:
                del self.loaded[old]
        return entry

    def _step(self, name: str) -> None:
        """One token for every sample of the run's batch, handed to their callers."""
        run, index, decoding = self.loaded[name]
        for job in {id(job): job for job, _ in decoding.rows}.values():
            if self.tickets[id(job)].cancelled:
                decoding.drop(job)
                del self.tickets[id(job)]
        if not len(decoding):
            return
        try:
            events = decoding.step()
        except Exception as exc:  # a failure of one batch ends its requests, not the server
            for key in {id(job) for job, _ in decoding.rows}:
                self.tickets.pop(key).send([("error", exc)])
            with self.wake:
                self.loaded[name] = (run, index, type(decoding)(decoding.model, decoding.device))
            return
        out: dict[int, list] = {}
        jobs = {}
        for job, i, text, sample in events:
            items, jobs[id(job)] = out.setdefault(id(job), []), job
            i += job.first
            items.append(("text", i, text) if sample is None else ("sample", i, sample))
        for key, items in out.items():
            ticket = self.tickets[key]
            if all(s.sample is not None for s in jobs[key].states):
                del self.tickets[key]
                ticket.decoding -= len(jobs[key].states)
            ended = ticket.done
            if index is None:
                ticket.send([*items, ("end",)] if ended else items)
                continue
            texts = [item for item in items if item[0] == "text"]
            samples = [item for item in items if item[0] == "sample"]
            if samples or ended:
                ticket.send(texts)  # before the samples' ends, which follow their reports
                for item in samples:
                    self.reporters[ticket.lane].submit(_report, ticket, item)
                if ended:
                    self.reporters[ticket.lane].submit(_hand, ticket, [("end",)])
            else:
                ticket.hold(texts)


def _stamp(path: Path) -> tuple:
    """What identifies a run's files on disk: a run trained again under the name changes it."""
    from authorgen.checkpoint import CONFIG, WEIGHTS

    stamp = []
    for name in (CONFIG, WEIGHTS):
        try:
            info = (path / name).stat()
            stamp.append((info.st_ino, info.st_size, info.st_mtime_ns))
        except OSError:
            stamp.append(None)
    return tuple(stamp)


def _report(ticket: Ticket, item: tuple) -> None:
    """On the request's reporter thread: a finished sample's originality report, then the
    sample."""
    sample = item[2]
    sample.originality = ticket.job.originality(sample.text, sample.stopped)
    _hand(ticket, [item])


def _hand(ticket: Ticket, items: list) -> None:
    """On the request's reporter thread: `items` to the caller (the worker is done with this
    ticket's samples, so this does not race with its hand-overs)."""
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
        ticket.loop.call_soon_threadsafe(ticket.queue.put_nowait, items)
