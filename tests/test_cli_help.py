"""Every command is documented: --help works and shows an example."""

from __future__ import annotations

import click
from click.testing import CliRunner

from cmgit.cli import cli

SPEC_COMMANDS = {
    "init",
    "keygen",
    "whoami",
    "staff",
    "settings",
    "new",
    "show",
    "find",
    "edit",
    "record",
    "validate",
    "demo",
    "move",
    "assign",
    "list",
    "due",
    "log",
}


def walk(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        if command.hidden:  # run by git hooks, not by people
            continue
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found.extend(walk(command, (*prefix, name)))
    return found


def test_the_commands_of_this_stage_exist() -> None:
    assert set(cli.commands) >= SPEC_COMMANDS


def test_every_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    for path in walk(cli):
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Example" in result.output, path


def test_errors_are_one_line_with_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["-C", "/", "show", "CP-7K2M9QX4"])
    assert result.exit_code == 6
    assert result.stderr.startswith("Error: not inside a git repository")
