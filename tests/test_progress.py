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


def test_lines_say_each_tenth_of_the_work_on_stderr_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert list(Progress(enabled=False, lines=True).each("Creating", range(25))) == list(range(25))
    out = capsys.readouterr()
    assert out.out == ""
    said = out.err.splitlines()
    assert said[0] == "Creating: 3/25" and said[-1] == "Creating: 25/25" and len(said) == 10
    assert list(SILENT.each("Creating", range(25))) == list(range(25))
    assert capsys.readouterr().err == ""
