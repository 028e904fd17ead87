"""Progress bars on stderr for long work; silent when stderr is not a terminal or the
output is JSON, so scripts and pipes see only results. A job people start to watch (the
demo) may instead say how far it is in plain lines where no bar can be drawn, as under a
`make` whose output is captured."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


class Progress:
    def __init__(self, enabled: bool, *, lines: bool = False):
        self.enabled = enabled
        self.lines = lines  # when not enabled: a plain line at each tenth of the work

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """Yields ``advance(n)``; draws a bar only when enabled."""
        if not self.enabled:
            yield _in_lines(description, total) if self.lines and total > 0 else _ignore
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


def _in_lines(description: str, total: int) -> Callable[[int], None]:
    done = 0
    said = 0  # tenths said so far

    def advance(n: int = 1) -> None:
        nonlocal done, said
        done += n
        tenths = done * 10 // total
        if tenths > said:
            said = tenths
            print(f"{description}: {done}/{total}", file=sys.stderr, flush=True)

    return advance


SILENT = Progress(enabled=False)
