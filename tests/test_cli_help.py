"""Every command is documented: --help works and shows an example."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_shell_completion_as_the_readme_documents_it() -> None:
    """The installed `cmgit` completes its commands and options in the shells the README
    names; hidden commands (run by git) are not offered."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    beside = Path(sys.executable).parent / "cmgit"  # this install's, not another on PATH
    program = str(beside) if beside.exists() else shutil.which("cmgit")
    assert program is not None

    def complete(*words: str) -> list[str]:
        env = {
            **os.environ,
            "_CMGIT_COMPLETE": "bash_complete",
            "COMP_WORDS": " ".join(["cmgit", *words]),
            "COMP_CWORD": str(len(words)),
        }
        done = subprocess.run([program], env=env, capture_output=True, text=True, check=True)
        return [line.partition(",")[2] for line in done.stdout.splitlines()]

    for shell in ("bash", "zsh", "fish"):
        assert f"_CMGIT_COMPLETE={shell}_source cmgit" in readme
    assert complete("mo") == ["move"]
    assert complete("due", "--r") == ["--risk"]
    offered = complete("")
    assert "move" in offered and not any(name.startswith("_") for name in offered)
