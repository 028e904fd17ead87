"""Shared fixtures: a hermetic environment and a real case repository with real keys."""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from cmgit import crypto, demo
from cmgit.cli import cli
from cmgit.registry import Staff
from cmgit.store import Repository, init_repository, setup
from cmgit.template import template_root

FIXTURES = Path(__file__).parent / "fixtures"
CANARY = "CANARY"
TODAY = "2026-04-01"

# Staff of the test programme: id, role, team.
STAFF = (
    ("pm-001", "programme_manager", "programme"),
    ("sv-north", "supervisor", "north"),
    ("cw-north-1", "caseworker", "north"),
    ("cw-north-2", "caseworker", "north"),
    ("co-north", "coordinator", "north"),
    ("sv-south", "supervisor", "south"),
    ("cw-south-1", "caseworker", "south"),
    ("aud-001", "auditor", "programme"),
)


@pytest.fixture(autouse=True)
def hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test may read or write the real home, git config or cmgit variables."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for var in list(os.environ):
        if var.startswith("GIT_") or (var.startswith("CMGIT_") and var != "CMGIT_REQUIRE_AGE"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("EDITOR", "false")
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    runtime = tmp_path / "run"  # where `cmgit edit` keeps its private file
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    yield


def form(name: str, *, drop_id: bool = True) -> dict[str, Any]:
    """A fixture form file as a mapping ({form: fields}); ids dropped so cmgit assigns them."""
    doc = yaml.safe_load((FIXTURES / "forms" / f"{name}.yaml").read_text())
    if drop_id and isinstance(doc[name], dict):
        for key in [k for k in doc[name] if k.endswith("_id") and k != "staff_id"]:
            if str(doc[name][key]).startswith(f"{name}-") or key in (
                "plan_id",
                "action_id",
                "conference_id",
            ):
                del doc[name][key]
    return doc


def write_form(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


def git(root: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, env=env
    ).stdout


@dataclass
class Programme:
    """A case repository with staff and their identity files side by side."""

    root: Path
    keys: Path
    work: Path

    def key(self, staff_id: str) -> Path:
        return self.keys / f"{staff_id}.txt"

    def identities(self, staff_id: str) -> tuple[crypto.Identity, ...]:
        return crypto.load_identities(self.key(staff_id))

    def cli(
        self,
        *args: str,
        as_: str | None = "cw-north-1",
        today: str = TODAY,
        input: str | bytes | None = None,
        env: dict[str, str] | None = None,
    ) -> Result:
        full_env = {"CMGIT_TODAY": today, **(env or {})}
        if as_ is not None:
            full_env["CMGIT_IDENTITY"] = str(self.key(as_))
        runner = CliRunner()
        return runner.invoke(
            cli, ["-C", str(self.root), *args], env=full_env, input=input, catch_exceptions=False
        )

    def git(self, *args: str) -> str:
        return git(self.root, *args)

    def state(self) -> tuple[str, str, str]:
        """HEAD, `git status --porcelain` and the index: what must not change on refusal."""
        return (
            self.git("rev-parse", "HEAD").strip(),
            self.git("status", "--porcelain", "--untracked-files=all"),
            self.git("ls-files", "-s"),
        )

    def form_file(self, name: str, doc: dict[str, Any] | None = None) -> str:
        path = self.work / f"{name}-{len(list(self.work.iterdir()))}.yaml"
        return str(write_form(path, doc if doc is not None else form(name)))

    def new_case(self, as_: str = "cw-north-1", **extra: Any) -> str:
        doc = form("identification")
        doc.update(extra)
        result = self.cli("new", "--from", self.form_file("intake", doc), as_=as_)
        assert result.exit_code == 0, result.output
        return result.stdout.strip()

    def repo(self) -> Repository:
        return Repository.open(self.root)

    def person(self, staff_id: str) -> demo.Person:
        repo = self.repo()
        return demo.Person(repo.registry.get(staff_id), self.identities(staff_id))

    def journey(
        self,
        worker: str = "cw-north-1",
        supervisor: str = "sv-north",
        *,
        days_before: int = 120,
        seed: int = 1,
        **kw: Any,
    ) -> demo.Journey:
        """A case walked through the real transitions by its staff, with invented forms."""
        repo = self.repo()
        start = dt.date.fromisoformat(TODAY) - dt.timedelta(days=days_before)
        return demo.Journey(
            repo,
            demo.Forms(random.Random(seed), seed, **kw),
            self.person(worker),
            self.person(supervisor),
            start,
            list(repo.settings["vulnerability_criteria"]),
        )

    def walk(self, destination: str, **kw: Any) -> str:
        journey = self.journey(days_before=demo.DURATION[destination] + 10, **kw)
        demo.walk(journey, destination)
        return journey.case_id


def build_programme(base: Path) -> Programme:
    keys = base / "keys"
    keys.mkdir(parents=True)
    members = []
    for staff_id, role, team in STAFF:
        secret, recipient = crypto.generate_identity()
        crypto.write_identity_file(keys / f"{staff_id}.txt", secret, recipient)
        members.append(Staff(staff_id, role, team, recipient, None, True))
    admin = members[0]
    root = base / "cases"
    init_repository(
        root,
        admin=admin.id,
        recipient=admin.recipient,
        team=admin.team,
        signing_key=None,
        prefix="CP",
        programme="Test programme",
        unsigned=True,  # most tests judge other rules; tests/test_signed_default.py signs
    )
    repo = Repository.open(root)
    pm = crypto.load_identities(keys / "pm-001.txt")
    repo.settings_set(pm, "reader_roles", "[coordinator]")
    for member in members[1:]:
        repo.staff_add(pm, member)
    work = base / "work"
    work.mkdir()
    return Programme(root, keys, work)


@pytest.fixture(scope="session")
def programme_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Programme]:
    base = tmp_path_factory.mktemp("template")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(base))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        yield build_programme(base)


def copy_programme(template: Programme, base: Path) -> Programme:
    shutil.copytree(template.root.parent, base, symlinks=True)
    return Programme(base / "cases", base / "keys", base / "work")


@pytest.fixture
def programme(programme_template: Programme, tmp_path: Path) -> Programme:
    """A fresh copy of the test programme for one test."""
    return copy_programme(programme_template, tmp_path / "prog")


# The migration that brings records to format 2 (sealed entries under a key per case).
SEALED_ENTRIES_MIGRATION = "schemas/migrations/0003-sealed-entries.yaml"


def format_1_template(folder: Path) -> Path:
    """The case-repository template as a cmgit from before record format 2 shipped it:
    this one's, without the migration to sealed entries."""
    folder.mkdir(parents=True)
    setup.copy_template(template_root(), folder)
    (folder / SEALED_ENTRIES_MIGRATION).unlink()
    return folder


@pytest.fixture(scope="session")
def format_1_programme_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Programme]:
    base = tmp_path_factory.mktemp("format-1")
    old = format_1_template(base / "template")
    # The old template only while it is built: the session's other programmes, and
    # `cmgit migrate` in the tests, use this cmgit's.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(base))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        with pytest.MonkeyPatch.context() as older:
            older.setattr(setup, "template_root", lambda: old)
            made = build_programme(base / "programme")
        yield made


@pytest.fixture
def format_1_programme(format_1_programme_template: Programme, tmp_path: Path) -> Programme:
    """A fresh copy of a programme made before record format 2: its records keep their
    forms in one sealed block, until `cmgit migrate` brings them to sealed entries."""
    return copy_programme(format_1_programme_template, tmp_path / "prog")
