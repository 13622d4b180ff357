"""Background work of the widgets: what scales with a sample of the data runs outside the message handler.

A widget submits a job of a kind (its "sample"); a newer job of the same widget and kind cancels the
older one (latest wins), and only the latest publishes its result, so a burst of slider moves ends on
the last one and never shows a stale result. Jobs run one at a time on one worker thread of the
kernel, in chunks that report progress.

Why a thread, not chunks on the kernel's event loop: torch releases the GIL inside its operations, so
the kernel keeps answering messages while a chunk runs; on the event loop every chunk would block the
kernel for its whole duration (one sampled text of a GPT-2-size model costs about three forwards of a
sentence: benchmarks/live_interventions.py).

The worker runs a twin of the probe (its own module objects, sharing every parameter and buffer, so no
memory is copied): a probe's hooks and edits sit on its modules and would otherwise act on the
foreground's forward passes too. Two forwards at once would also slow each other on a laptop's cores
(2.3× a forward for a slider move, against 1.0× when pausing): every module of the twin checks, as it
starts, whether the foreground is busy (:func:`foreground`: a message handler at work, see
NeuroWidget._handle_msg) and waits until it is done, and whether its job was cancelled. A foreground
request so shares the cores with at most one module of a background forward, and a cancelled job
stops within one module.

A page's request may be answered by a job (NeuroWidget._on_request, :meth:`Job.answer`): its progress
as parts, then one final answer when it publishes, fails or is cancelled.

Outside a kernel (a script, the tests) the same thread runs the jobs: :func:`wait` blocks until a
widget's jobs are done.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import logging
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..core import Probe

log = logging.getLogger("neurowidgets")

# Widgets publish what a job computed, and what their handlers compute, while holding this lock: a
# result is published only by the latest job, and the check and the publishing are one step.
lock = threading.RLock()

Work = Callable[[Probe], Generator[Any, None, Any]]
Send = Callable[[dict[str, Any]], None]

CANCELLED = {"ok": False, "cancelled": True}


class Cancelled(Exception):
    """Raised inside a cancelled job's forward pass to stop it."""

    _from_probe = True  # Probe.run passes its own errors on as they are, not wrapped


class Job:
    """One piece of background work: ``work(probe)`` is a generator that runs one chunk per step and
    yields how far it is after it, then returns the result, which ``publish(result, seconds)`` shows
    (what it returns answers the requests of :meth:`answer`). ``progress(yielded, seconds)`` is told
    after every chunk. Both run only while the job is the latest."""

    def __init__(
        self,
        owner: Any,
        kind: str,
        probe: Probe,
        work: Work,
        publish: Callable[[Any, float], Any],
        progress: Callable[[Any, float], None] | None,
        action: str,
    ):
        self.owner, self.kind, self.probe, self.work = owner, kind, probe, work
        self.publish, self.progress, self.action = publish, progress, action
        self.twin = twin(probe)  # made here, between the foreground's forward passes (it copies the modules)
        self.cancelled = False
        self.done = threading.Event()
        self.started = 0.0
        self.outcome: dict[str, Any] | None = None  # the final answer's fields, once the job has ended
        self._answering: list[tuple[Send, Any]] = []  # (send, request id) of the requests it answers

    def answer(self, send: Send, request_id: Any) -> None:
        """Answer the page's request ``request_id`` through ``send``: each later step's yield (JSON-safe)
        as a part ``{type: "progress", id, data}``, then ``{type: "response", id, ok, ...}`` once the job
        ends (at once if it has): ``data`` = what ``publish`` returned, ``cancelled``, or ``error``."""
        with lock:
            if self.outcome is None:
                self._answering.append((send, request_id))
            else:
                send({"type": "response", "id": request_id, **self.outcome})

    def _report(self, step: Any) -> None:
        for send, request_id in self._answering:
            send({"type": "progress", "id": request_id, "data": step})

    def _settle(self, **outcome: Any) -> None:
        """End the job's requests with ``outcome``; only the first call counts (one final answer each)."""
        with lock:
            if self.outcome is not None:
                return
            self.outcome = outcome
            for send, request_id in self._answering:
                send({"type": "response", "id": request_id, **outcome})
            self._answering.clear()

    def _drop(self) -> None:
        """Cancel a job that has not started: it never runs, so it is settled here."""
        self.cancelled = True
        self._settle(**CANCELLED)
        self.done.set()


class _Runner:
    """The kernel's one worker thread and its queue: at most one job per (widget, kind) waits."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.pending: dict[tuple[int, str], Job] = {}  # in submission order
        self.running: Job | None = None
        self.busy_foreground = 0
        self.thread: threading.Thread | None = None

    def submit(self, job: Job) -> Job:
        if job.twin is None:  # a model that cannot be copied: the work runs now, as it would in a handler
            self._run(job, inline=True)
            job.done.set()
            return job
        key = (id(job.owner), job.kind)
        with lock, self.condition:
            old = self.pending.pop(key, None)
            if old is not None:
                old._drop()
            if self.running is not None and (id(self.running.owner), self.running.kind) == key:
                self.running.cancelled = True
            self.pending[key] = job
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="neurowidgets-background", daemon=True)
                self.thread.start()
            self.condition.notify_all()
        return job

    def cancel(self, owner: Any, kind: str | None = None) -> None:
        with lock, self.condition:
            for key in [k for k in self.pending if k[0] == id(owner) and kind in (None, k[1])]:
                self.pending.pop(key)._drop()
            job = self.running
            if job is not None and job.owner is owner and kind in (None, job.kind):
                job.cancelled = True
            self.condition.notify_all()

    def jobs_of(self, owner: Any) -> list[Job]:
        with self.condition:
            jobs = [job for job in self.pending.values() if job.owner is owner]
            if self.running is not None and self.running.owner is owner:
                jobs.append(self.running)
            return jobs

    def _loop(self) -> None:
        while True:
            with self.condition:
                while not self.pending:
                    self.condition.wait()
                key = next(iter(self.pending))
                job = self.running = self.pending.pop(key)
            try:
                self._run(job)
            except BaseException:  # the worker outlives any job (errors are reported in _run)
                log.exception("neurowidgets: background job %r failed", job.action)
            finally:
                with self.condition:
                    self.running = None
                    job.done.set()
                    self.condition.notify_all()

    def _run(self, job: Job, inline: bool = False) -> None:
        job.started = time.perf_counter()
        try:
            steps = job.work(job.probe if inline else job.twin)
            while True:
                if not inline:  # inline, it is the foreground
                    self.checkpoint(job)
                try:
                    step = next(steps)
                except StopIteration as finished:
                    result = finished.value
                    break
                with lock:
                    if not job.cancelled:
                        if job.progress is not None:
                            job.progress(step, time.perf_counter() - job.started)
                        job._report(step)
            with lock:
                if not job.cancelled:
                    data = job.publish(result, time.perf_counter() - job.started)
                    job._settle(ok=True, **({} if data is None else {"data": data}))
        except Exception as error:
            with lock:
                if not job.cancelled and not isinstance(error, Cancelled):
                    with job.owner.reporting_errors(job.action):  # shown in the widget once, and logged
                        raise error from None
                    job._settle(ok=False, error=job.owner.error)
        finally:
            job._settle(**CANCELLED)  # it neither published nor failed: cancelled (no-op once settled)

    def checkpoint(self, job: Job | None = None) -> None:
        """In the worker: stop a cancelled job; wait while a foreground handler works."""
        job = job or self.running
        if job is None:
            return
        if self.busy_foreground:
            with self.condition:
                while self.busy_foreground and not job.cancelled:
                    self.condition.wait()
        if job.cancelled:
            raise Cancelled(f"{job.action}: superseded by a newer request")

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel every job and wait (up to ``timeout``) until the running one stops: a worker still in a
        torch operation while the interpreter finalizes aborts the process ("terminate called without an
        active exception", exit code 134) however well everything else went."""
        with lock, self.condition:
            for job in self.pending.values():
                job._drop()
            self.pending.clear()
            running = self.running
            if running is not None:
                running.cancelled = True
            self.condition.notify_all()
        if running is not None:
            running.done.wait(timeout)

    @contextlib.contextmanager
    def foreground(self) -> Iterator[None]:
        with self.condition:
            self.busy_foreground += 1
        try:
            yield
        finally:
            with self.condition:
                self.busy_foreground -= 1
                self.condition.notify_all()


_runner = _Runner()
atexit.register(_runner.shutdown)


def submit(
    owner: Any,
    kind: str,
    probe: Probe,
    work: Work,
    publish: Callable[[Any, float], Any],
    progress: Callable[[Any, float], None] | None = None,
    action: str = "computing in the background",
) -> Job:
    """Run ``work`` on a twin of ``probe`` in the background, cancelling ``owner``'s job of ``kind``.

    ``publish(result, seconds)`` and ``progress(yielded, seconds)`` run in the worker thread while
    holding :data:`lock`, only if the job is still the latest of its kind; an error is shown in
    ``owner`` (a NeuroWidget) with ``action``. Must be called outside a forward pass of ``probe``. A
    ``@handles`` method that returns the job answers its request from the job (:meth:`Job.answer`)."""
    return _runner.submit(Job(owner, kind, probe, work, publish, progress, action))


def cancel(owner: Any, kind: str | None = None) -> None:
    """Cancel ``owner``'s jobs (of ``kind``, or all): none of them publishes anything any more."""
    _runner.cancel(owner, kind)


def running(owner: Any) -> bool:
    """Whether ``owner`` has a job waiting or running."""
    return any(not job.cancelled for job in _runner.jobs_of(owner))


def can_wait() -> bool:
    """Whether :func:`wait` may block here: not inside a message handler (the background pauses for it)."""
    return not _runner.busy_foreground


def wait(owner: Any, timeout: float | None = None) -> None:
    """Block until ``owner``'s jobs are done (published, failed or cancelled); for scripts and tests.
    Raises TimeoutError after ``timeout`` seconds, and RuntimeError inside a message handler (which the
    background pauses for: it would wait for ever)."""
    if not can_wait() and _runner.jobs_of(owner):
        raise RuntimeError(
            f"{type(owner).__name__}: cannot wait for the background work inside a message handler "
            "(it pauses while a handler works); read the result once it is published"
        )
    deadline = None if timeout is None else time.monotonic() + timeout
    while jobs := _runner.jobs_of(owner):
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TimeoutError(f"{type(owner).__name__}'s background work did not finish in {timeout} s")
        jobs[0].done.wait(left)


def foreground() -> contextlib.AbstractContextManager[None]:
    """Mark a message handler at work: background forward passes pause at their next module until it
    is done, so the current input's answer is not slowed by the sample behind it."""
    return _runner.foreground()


# -- the sample in chunks ------------------------------------------------------------------------


def positions(inputs: Any) -> float:
    """The mean number of valid positions per example of ``inputs``: tokens of a padded text batch,
    else 1 (what a forward pass's cost grows with, between a sentence and the data's texts)."""
    mask = inputs.get("attention_mask") if isinstance(inputs, Mapping) else None
    if isinstance(mask, torch.Tensor) and mask.ndim == 2:
        return float(mask.sum()) / max(len(mask), 1)
    return 1.0


def chunks(examples: Any, indices: Sequence[int], step: int) -> list[Any]:
    """Model inputs for ``indices`` of ``examples`` (an Examples), ``step`` at a time. Made in the
    foreground: a tokenizer must not be used by two threads at once."""
    return [examples.batch([int(i) for i in indices[start : start + step]]) for start in range(0, len(indices), step)]


# -- the twin of a probe --------------------------------------------------------------------------

_twins: dict[int, tuple[weakref.ref, tuple[str, ...], Probe]] = {}


def twin(probe: Probe) -> Probe | None:
    """A copy of ``probe`` for the worker: its own modules (hooks), the same parameters and buffers
    (shared, not copied: weights changed in place are seen). Made again when the probe's layers change
    (a layer attached since). None for a model that cannot be copied (one holding a lock, say).

    Other attributes of the modules (flags, not tensors) are the twin's own from then on: setting
    one on the model later is not seen by the background until :func:`forget` drops the twin."""
    key = id(probe)
    held = _twins.get(key)
    names = tuple(probe.layer_names)
    if held is not None and held[0]() is probe and held[1] == names:
        return held[2]
    modules = [probe.model, *(m for a in probe._attached.values() for m in (a.encoder, a.decoder) if m is not None)]
    shared = {id(t): t for m in modules for t in (*m.parameters(), *m.buffers())}
    try:
        copied = copy.deepcopy(probe, shared)
        for module in _modules_of(copied):
            module.register_forward_pre_hook(_checkpoint)
    except Exception as error:
        log.warning("neurowidgets: the model cannot be copied (%s): its sample runs in the foreground", error)
        copied = None
    _twins[key] = (weakref.ref(probe, lambda _: _twins.pop(key, None)), names, copied)
    return copied


def forget(probe: Probe) -> None:
    """Drop ``probe``'s twin: the next background job copies the model as it is now."""
    _twins.pop(id(probe), None)


def _modules_of(probe: Probe) -> Iterator[nn.Module]:
    yield from probe.model.modules()
    for attached in probe._attached.values():
        for module in (attached.encoder, attached.decoder):
            if module is not None:
                yield from module.modules()


def _checkpoint(module: nn.Module, args: Any) -> None:
    if _runner.busy_foreground or (_runner.running is not None and _runner.running.cancelled):
        _runner.checkpoint()
