"""Micro-batching: concurrent requests share one model call.

Design
- Requests that passed every check join one queue (whole requests, never
  split, so a reply is one job's result). The batching task runs on the
  server's event loop; only the model call itself runs on a worker thread,
  under the service's model lock (and that thread hands the batch to the
  model process, fastnet.serve.model_process, and waits). All queue
  bookkeeping therefore happens on one thread and needs no locks.
- A batch is cut when the sentences waiting for the oldest request's target
  (language, beam, n_best) fill `max_sentences` or the token budget
  (`max_tokens`, counted as padded tokens: sentences x longest), when the
  oldest request has waited `window_ms`, or as soon as no other request is
  on its way into the queue: every request in the server is already queued
  and either the last batch was one request (a lone client: no waiting) or
  none arrived in the last fifth of the window (see `_wait_until`). While
  a batch runs, new requests queue up and form the next one. Its sentences
  are sorted by length (less padding), translated in one call, and each
  request gets back its own sentences in its own order.
- A request still waiting at its deadline gets 503 `deadline_exceeded` with
  Retry-After (from the measured time per sentence); a request whose client
  disconnects leaves the queue (fastnet's server protocol says so through a
  future in the scope; under another ASGI server a task per request waits
  for http.disconnect); a full queue answers 503 `overloaded` before
  queueing. Sentences that were dropped are counted in the metrics by reason.
"""
import asyncio
import collections
import functools
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fastnet.checks import positive_int
from fastnet.serve.errors import ClientGone, RequestError
from fastnet.serve.protocol import CONNECTION_LOST


@dataclass(frozen=True)
class Batching:
    """How requests are merged. enabled=False translates each request alone, in arrival order."""

    enabled: bool = True
    max_sentences: int = 32
    max_tokens: int = 2048
    window_ms: float = 5.0
    deadline_s: float = 30.0
    max_queue: int = 4096

    def __post_init__(self):
        for name in ("max_sentences", "max_tokens", "max_queue"):
            object.__setattr__(self, name, positive_int(getattr(self, name), f"Batching.{name}"))
        for name in ("window_ms", "deadline_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"Batching.{name} must be a finite number >= 0, got {value!r}")
        if self.deadline_s == 0:
            raise ValueError("Batching.deadline_s must be > 0")


class _Job:
    """One request's sentences waiting in the queue, and the future its handler awaits."""

    __slots__ = ("arrived", "deadline", "future", "queued", "target", "texts", "tokens")

    def __init__(self, texts, tokens, target, future, arrived, deadline):
        self.texts, self.tokens, self.target = texts, tokens, target
        self.future, self.arrived, self.deadline = future, arrived, deadline
        self.queued = True


async def wait_for_disconnect(request):
    """Returns when the client of `request` (whose body was read) closes its connection."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class MicroBatcher:
    """The queue and the batching task of one TranslationService (created on first use, per event loop)."""

    def __init__(self, service, config):
        self.service, self.config = service, config
        self.metrics = service.metrics
        self._queue = collections.deque()
        self._queued_sentences = 0
        self._seconds_per_sentence = 0.01  # updated from every batch; only used for Retry-After
        self._gap = config.window_ms / 5000.0  # seconds: a fifth of the window
        self._last_arrival = -math.inf
        self._last_batch_requests = 0
        self._wakeup = None
        self._task = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="fastnet-batch")

    # ---- the request side ----
    async def translate(self, request, texts, tokens, target):
        """Translations of `texts` (one request), or RequestError 503 / ClientGone."""
        loop = asyncio.get_running_loop()
        job = self._enqueue(loop, texts, tokens, target)
        deadline = loop.call_at(job.deadline, self._expire, job)
        lost = request.scope.get("extensions", {}).get(CONNECTION_LOST)
        if lost is not None:  # our server says when the connection goes: no task per request
            gone = functools.partial(self._gone, job)
            lost.add_done_callback(gone)
        else:  # any other ASGI server: wait for its http.disconnect message
            watcher = loop.create_task(wait_for_disconnect(request))
            watcher.add_done_callback(lambda w: w.cancelled() or self._gone(job))
        try:
            return await job.future
        finally:
            deadline.cancel()
            if lost is not None:
                lost.remove_done_callback(gone)
            else:
                watcher.cancel()

    def _expire(self, job):
        """The job's deadline passed before its reply: 503 with Retry-After (translated or not)."""
        if job.future.done():
            return
        self._withdraw(job, "deadline")
        retry = self.retry_after()
        job.future.set_exception(RequestError(
            503, "deadline_exceeded", f"the request waited {self.config.deadline_s:g} s (the deadline) without "
            f"being translated; the service is busy, retry in {retry} s", headers={"Retry-After": str(retry)},
            retry_after=retry))

    def _gone(self, job, _lost=None):
        """The job's client went away: its sentences leave the queue (the handler answers 499)."""
        if not job.future.done():
            self._withdraw(job, "disconnect")
            job.future.set_exception(ClientGone())

    def retry_after(self, extra_sentences=0):
        waiting = self._queued_sentences + extra_sentences
        return max(1, math.ceil(waiting * self._seconds_per_sentence))

    def _enqueue(self, loop, texts, tokens, target):
        if self._queued_sentences + len(texts) > self.config.max_queue:
            retry = self.retry_after(len(texts))
            raise RequestError(503, "overloaded", f"{self._queued_sentences} sentences are already waiting "
                               f"(the queue holds {self.config.max_queue}); retry in {retry} s",
                               headers={"Retry-After": str(retry)}, retry_after=retry)
        self._start(loop)
        now = loop.time()
        job = _Job(list(texts), list(tokens), target, loop.create_future(), now, now + self.config.deadline_s)
        self._queue.append(job)
        self._last_arrival = now
        self._count_queued(len(texts))
        self._wakeup.set()
        return job

    def _withdraw(self, job, reason):
        if job.queued:
            self._queue.remove(job)
            job.queued = False
            self._count_queued(-len(job.texts))
            self.metrics.dropped.labels(reason).inc(len(job.texts))

    def _count_queued(self, n):
        self._queued_sentences += n
        self.metrics.queue.inc(n)

    # ---- the batching task ----
    def _start(self, loop):
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run(), name="fastnet-batching")

    async def stop(self):
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._executor.shutdown(wait=True)

    async def _run(self):
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._gather(loop, self._queue[0])
            batch = self._cut(loop.time())
            if batch:
                await self._translate(loop, batch)
            else:
                await asyncio.sleep(0)  # every request of that target was past its deadline: let them answer

    async def _gather(self, loop, oldest):
        """Wait while more requests may join the oldest one's batch: until it is full, or the oldest
        has waited the window, or nothing more is expected (see `_wait_until`)."""
        cut_at = oldest.arrived + self.config.window_ms / 1000.0
        while oldest.queued and not self._full(oldest.target):
            until = self._wait_until(loop.time(), cut_at)
            if until is None:
                return
            self._wakeup.clear()
            timer = loop.call_at(until, self._wakeup.set)  # a new request sets it sooner
            try:
                await self._wakeup.wait()
            finally:
                timer.cancel()

    def _wait_until(self, now, cut_at):
        """When to look again, or None to cut the batch now.

        Waiting pays while requests are in the server but not yet queued (reading,
        checking), and while they keep arriving (one within the last fifth of the
        window) from clients that sent concurrently before (the last batch merged
        several requests): a client that gets its answer sends again a moment later,
        and a batch cut then runs with only the first of them. A lone client is
        translated at once instead of waiting out the window."""
        if now >= cut_at:
            return None
        if self.service.in_flight > len(self._queue):
            return cut_at
        if self._last_batch_requests > 1 and now - self._last_arrival < self._gap:
            return min(cut_at, self._last_arrival + self._gap)
        return None

    def _full(self, target):
        sentences, longest = 0, 0
        for job in self._queue:
            if job.target == target:
                sentences += len(job.texts)
                longest = max(longest, max(job.tokens))
                if sentences >= self.config.max_sentences or sentences * longest >= self.config.max_tokens:
                    return True
        return False

    def _cut(self, now):
        """Take the oldest request and those after it with the same target that fit the budget."""
        batch, sentences, longest = [], 0, 0
        target = self._queue[0].target
        for job in list(self._queue):
            if job.target != target:
                continue
            if job.deadline <= now:
                self._expire(job)  # its handler answers 503 at this moment
                continue
            n, top = sentences + len(job.texts), max(longest, max(job.tokens))
            if batch and (n > self.config.max_sentences or n * top > self.config.max_tokens):
                break
            batch.append(job)
            sentences, longest = n, top
        for job in batch:
            self._queue.remove(job)
            job.queued = False
        self._last_batch_requests = len(batch)
        if batch:
            self._count_queued(-sentences)
        return batch

    async def _translate(self, loop, batch):
        items = sorted(((tokens, j, i) for j, job in enumerate(batch) for i, tokens in enumerate(job.tokens)),
                       key=lambda item: item[0])
        texts = [batch[j].texts[i] for _, j, i in items]
        to, beam, n_best = batch[0].target
        started = loop.time()
        for job in batch:
            self.metrics.queue_wait.observe(started - job.arrived)
        try:
            outputs = await loop.run_in_executor(self._executor, self._call_model, texts, to, beam, n_best)
        except Exception as exc:  # noqa: BLE001 - every request of the batch gets the same error
            error = exc if isinstance(exc, RequestError) else RequestError(
                500, "internal_error", f"{type(exc).__name__}: {exc}")
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        replies = [[None] * len(job.texts) for job in batch]
        for (_, j, i), output in zip(items, outputs):
            replies[j][i] = output
        for job, reply in zip(batch, replies):
            if not job.future.done():
                job.future.set_result(reply)

    def _call_model(self, texts, to, beam, n_best):
        start = time.perf_counter()
        outputs = self.service.translate_batch(texts, to, beam, n_best)
        elapsed = time.perf_counter() - start
        self.service.record_batch(texts, elapsed)
        self._seconds_per_sentence = 0.8 * self._seconds_per_sentence + 0.2 * elapsed / len(texts)
        return outputs
