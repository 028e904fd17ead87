"""Progress bars on stderr for long work; silent when stderr is not a terminal or the
output is JSON, so scripts and pipes see only results."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


class Progress:
    def __init__(self, enabled: bool):
        self.enabled = enabled

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """Yields ``advance(n)``; draws a bar only when enabled."""
        if not self.enabled:
            yield _ignore
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        with Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as bar:
            task_id = bar.add_task(description, total=total)

            def advance(n: int = 1) -> None:
                bar.advance(task_id, n)

            yield advance

    def each(self, description: str, items: Sequence[T]) -> Iterator[T]:
        """The items, with a bar advancing as each one is done."""
        with self.task(description, len(items)) as advance:
            for item in items:
                yield item
                advance(1)


def _ignore(n: int = 1) -> None:
    return None


SILENT = Progress(enabled=False)
