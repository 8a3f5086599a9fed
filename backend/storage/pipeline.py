"""Write-behind: overlap hashing (main thread) with writing (one background thread).

`put` is bound by sha256 plus the write of every block; doing them one after the other costs their sum, doing
them on two threads costs about the larger of the two. Both `hashlib` (for more than 2 KiB) and `os.writev`
release the GIL, so a single writer thread is enough.

Buffers are recycled instead of allocated per chunk: a freshly allocated page costs a page fault (slow on some
VMs), a reused one does not. A buffer handed to `release` comes back only after every write queued before it has
run, so the writes that point into it never see it overwritten.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

_RELEASE = object()
_STOP = object()


class WriteBehind:
    """Runs jobs in order on one thread; the first error stops the jobs after it and is re-raised to the caller."""

    def __init__(self, buffer_size: int, depth: int = 8) -> None:
        self.buffer_size = buffer_size
        self._depth = depth
        self._jobs: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._created = 0
        self._outstanding = 0  # buffers released but not yet taken back (only the caller's thread touches it)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[..., None], *args: Any) -> None:
        """Queue `job(*args)`; raises at once if an earlier job failed."""
        self._raise_if_failed()
        self._jobs.put((job, args))

    def take(self) -> bytearray:
        """A buffer to read into: a recycled one if any, a new one up to `depth`, else wait for one to return."""
        try:
            buffer = self._free.get_nowait()
        except queue.Empty:
            if self._created < self._depth or self._outstanding == 0:
                # Below the budget, or every buffer is held by the caller: a new one cannot deadlock.
                self._created += 1
                return bytearray(self.buffer_size)
            buffer = self._free.get()
        self._outstanding -= 1
        return buffer

    def release(self, buffer: bytearray) -> None:
        """Give `buffer` back once the jobs queued so far (which may point into it) have run."""
        self._outstanding += 1
        self._jobs.put((_RELEASE, (buffer,)))

    def close(self) -> None:
        """Wait for every queued job; raise the first error any of them hit."""
        self._jobs.put((_STOP, ()))
        self._thread.join()
        self._raise_if_failed()

    def abort(self) -> None:
        """Stop after the job in progress (used when the caller fails); errors of the writer are dropped."""
        if self._error is None:
            self._error = _Aborted()
        self._jobs.put((_STOP, ()))
        self._thread.join()

    def _raise_if_failed(self) -> None:
        if self._error is not None and not isinstance(self._error, _Aborted):
            raise self._error

    def _run(self) -> None:
        while True:
            job, args = self._jobs.get()
            if job is _STOP:
                return
            if job is _RELEASE:
                self._free.put(args[0])
            elif self._error is None:
                try:
                    job(*args)
                except BaseException as exc:  # handed to the caller's thread by submit/close
                    self._error = exc


class _Aborted(Exception):
    """Marks a pipeline stopped by its caller: later jobs are skipped, nothing is re-raised."""


__all__ = ["WriteBehind"]
