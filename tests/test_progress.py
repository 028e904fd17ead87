"""Progress bars: the items pass through unchanged; bars only when enabled."""

from __future__ import annotations

import pytest

from cmgit.progress import SILENT, Progress


@pytest.mark.parametrize("bar", [SILENT, Progress(enabled=True)])
def test_each_yields_every_item_in_order(bar: Progress, capsys: pytest.CaptureFixture[str]) -> None:
    assert list(bar.each("Working", ["a", "b", "c"])) == ["a", "b", "c"]
    out = capsys.readouterr()
    assert out.out == ""  # never on standard output, which scripts read


def test_json_and_pipes_get_no_bar() -> None:
    from cmgit import cli

    assert cli._progress_printer(quiet=True).enabled is False
