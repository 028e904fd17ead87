"""Work spread over one forked process per core, results in order.

Forked, not spawned: a worker inherits what its parent has loaded (the configuration,
the identities) instead of having it pickled, and keys are never pickled. What a worker
needs beyond its item is set in a module variable just before the pool starts.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def workers() -> int:
    return min(os.cpu_count() or 1, 8)


def fork_map(
    function: Callable[[T], R], items: Iterable[T], initializer: Callable[[], Any] | None = None
) -> Iterator[R]:
    """``function(item)`` for each item, in order, on every core; a few items ahead of the
    results at most, so a long stream of items is never held whole."""
    from concurrent.futures import Future, ProcessPoolExecutor  # costly to import: only here
    from multiprocessing import get_context

    count = workers()
    with ProcessPoolExecutor(
        count, mp_context=get_context("fork"), initializer=initializer
    ) as pool:
        pending: collections.deque[Future[R]] = collections.deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) > 2 * count:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class Background(Generic[R]):
    """``function()`` running in a thread, for work that mostly waits on git while the
    cores do something else; `result` waits for it and raises what it raised."""

    def __init__(self, function: Callable[[], R]) -> None:
        self._value: list[R] = []
        self._failure: list[BaseException] = []

        def run() -> None:
            try:
                self._value.append(function())
            except BaseException as exc:  # raised again in the caller's thread
                self._failure.append(exc)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def result(self) -> R:
        self._thread.join()
        if self._failure:
            raise self._failure[0]
        return self._value[0]


class Forked(Generic[R]):
    """``function()`` in a forked child, for work on the other core while this process
    does its own: the child starts with everything already loaded (nothing is sent to
    it) and sends back only the pickled result. `result` waits for it and raises what it
    raised."""

    def __init__(self, function: Callable[[], R]) -> None:
        import pickle  # costly to import: only here

        read, write = os.pipe()
        self._pid = os.fork()
        if self._pid == 0:  # the child: answer, and leave without any of the parent's exits
            os.close(read)
            try:
                answer = pickle.dumps((True, function()))
            except BaseException as exc:  # raised again in the parent
                answer = pickle.dumps((False, exc))
            with os.fdopen(write, "wb") as pipe:
                pipe.write(answer)
            os._exit(0)
        os.close(write)
        self._read = read

    def result(self) -> R:
        with os.fdopen(self._read, "rb") as pipe:
            answer = pipe.read()
        os.waitpid(self._pid, 0)
        if not answer:
            raise RuntimeError("a forked worker ended without an answer")
        import pickle

        ok, value = pickle.loads(answer)  # noqa: S301 (our own child's answer)
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]
