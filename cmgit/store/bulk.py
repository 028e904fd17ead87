"""Bulk reads on every core: one function applied to every case, in order.

The pool is forked, so the workers inherit the repository, its configuration, the
identities and the function itself instead of having them pickled (keys never are);
only case IDs go to the workers and results come back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .. import pool
from ..history import Git
from ..progress import Progress
from .core import Committed

T = TypeVar("T")
# What a case is read with: its ID and what is committed for it.
Work = Callable[[str, Committed], T]

# Set in the parent just before the pool forks, for the workers to inherit.
_BULK: tuple[Git, Callable[[str, Committed], Any], dict[str, tuple[str, str]]] | None = None


def in_pool(
    git: Git,
    work: Work[T],
    case_ids: list[str],
    committed: dict[str, tuple[str, str]],
    what: str,
    progress: Progress,
) -> list[T]:
    """``work(case_id, committed entry)`` for every case, in order; on every core when
    there are many (``cmgit.store.POOL_FROM`` or more)."""
    from . import POOL_FROM  # the package's, read at each call: a test may lower it

    global _BULK
    _BULK = (git, work, committed)
    try:
        with progress.task(what, len(case_ids)) as advance:
            if len(case_ids) < POOL_FROM or pool.workers() < 2:
                parts: Iterator[list[Any]] = map(_run_chunk, ([c] for c in case_ids))
            else:
                size = max(50, min(1000, len(case_ids) // (pool.workers() * 8) or 1))
                chunks = (case_ids[i : i + size] for i in range(0, len(case_ids), size))
                parts = pool.fork_map(_run_chunk, chunks, _own_reader)
            results: list[T] = []
            for part in parts:
                results.extend(part)
                advance(len(part))
            return results
    finally:
        _BULK = None


def _own_reader() -> None:
    assert _BULK is not None
    _BULK[0].forget_reader()


def _run_chunk(case_ids: list[str]) -> list[Any]:
    assert _BULK is not None
    _, work, committed = _BULK
    return [work(case_id, committed.get(case_id)) for case_id in case_ids]
