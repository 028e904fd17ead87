"""Audit of what a commit says besides its files: git's indirections set aside, message
forms by version, times, and the registry's compromised keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmgit import audit as audit_module
from cmgit import ids
from cmgit.history import Git, clean_env
from cmgit.registry import Registry, Staff

from .conftest import Programme, form, git
from .hostile.test_metadata_attacks import craft, head_parts
from .test_audit import audit, forge, rules


def _linear_history(root: Path) -> list[str]:
    for n in range(3):
        (root / "f").write_text(str(n))
        git(root, "add", "f")
        git(root, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", str(n))
    return Git(root).text("rev-list", "HEAD").split()


def test_git_calls_ignore_replace_refs_and_grafts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    newest, middle, oldest = _linear_history(root)
    grafts = root / ".git" / "info" / "grafts"
    grafts.write_text(f"{newest}\n")  # the newest commit made a root: two hidden
    git(root, "replace", middle, oldest)
    assert git(root, "rev-list", "HEAD").split() == [newest]
    assert Git(root).text("rev-list", "HEAD").split() == [newest, middle, oldest]
    assert Git(root).text("log", "--format=%s", "-1", middle) == "1"

    # Nor can the caller's environment bring them back.
    monkeypatch.setenv("GIT_GRAFT_FILE", str(grafts))
    monkeypatch.setenv("GIT_REPLACE_REF_BASE", "refs/replace/")
    env = clean_env()
    assert env["GIT_NO_REPLACE_OBJECTS"] == "1"
    assert not Path(env["GIT_GRAFT_FILE"]).exists()
    assert "GIT_REPLACE_REF_BASE" not in env
    assert Git(root).text("rev-list", "HEAD").split() == [newest, middle, oldest]


NOTE = [("Cmgit-Action", "record"), ("Cmgit-Form", "note"), ("Cmgit-Date", "2026-04-01")]


def _note(programme: Programme, case_id: str, version: int, extra: list[tuple[str, str]]) -> str:
    path = ids.record_path(case_id)
    data = (programme.root / path).read_text()
    return forge(
        programme,
        {path: data.replace(f"version: {version - 1}\n", f"version: {version}\n").encode()},
        f"{case_id}: record note",
        [
            ("Cmgit-Case", case_id),
            *NOTE,
            ("Cmgit-Version", str(version)),
            *extra,
            ("Cmgit-Actor", "cw-north-1"),
            ("Cmgit-Role", "caseworker"),
        ],
        "cw-north-1",
    )


def test_a_message_is_judged_by_the_form_it_names(
    programme: Programme, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Form 1 names no version. A later form (here a made-up form 2 whose `record` has a
    Cmgit-Item trailer) is judged by its own trailers; form 1 still by its own."""
    case_id = programme.new_case()
    form_2 = dict(audit_module.TRAILERS)
    form_2["record"] = audit_module.TRAILERS["record"] | {"Cmgit-Item", "Cmgit-Format"}
    monkeypatch.setitem(audit_module.MESSAGE_FORMS, "2", form_2)
    assert audit(programme)[0] == 0
    _note(programme, case_id, 2, [("Cmgit-Item", "note-1"), ("Cmgit-Format", "2")])
    code, report = audit(programme)
    assert code == 0, report
    bad = _note(programme, case_id, 3, [("Cmgit-Item", "note-2")])
    code, report = audit(programme)
    assert code == 6 and [(v["commit"], v["rule"]) for v in report["violations"]] == [
        (bad, "message")
    ]
    assert report["violations"][0]["detail"] == "the message carries trailers its action never has"


def test_back_dated_entry_stays_possible(programme: Programme) -> None:
    """Forms carry the days things happened, entered later: a case identified weeks
    before it was entered, and a note about a day before the identification."""
    doc = {"identification": {**_identification(), "identified_on": "2026-01-05"}}
    made = programme.cli("new", "--from", programme.form_file("intake", doc))
    assert made.exit_code == 0, made.output
    note = {"note": {"written_on": "2025-12-20", "written_by": "cw-north-1", "text": "x"}}
    noted = programme.cli(
        "record", made.stdout.strip(), "note", "--from", programme.form_file("note", note)
    )
    assert noted.exit_code == 0, noted.output
    programme.walk("assessment")
    code, report = audit(programme)
    assert code == 0, report


def _identification() -> dict:  # type: ignore[type-arg]
    return dict(form("identification")["identification"])


def test_time_is_checked_across_batches(
    programme: Programme, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first commit of a batch is compared with its parent, read with the batch
    before: a history split anywhere is judged alike."""
    case_id = programme.new_case()
    if len(programme.git("rev-list", "HEAD").split()) % 2 == 0:
        noted = programme.cli("record", case_id, "note", "--from", programme.form_file("note"))
        assert noted.exit_code == 0, noted.output
    monkeypatch.setattr(audit_module, "BATCH", 2)
    code, report = audit(programme)
    assert code == 0 and report["checked"] > 4, report
    headers, message = head_parts(programme.root)
    stamp = int(headers[-1][1].rsplit(" ", 2)[1]) - 3 * 86400
    person = f"cw-north-1 <cw-north-1@cmgit.invalid> {stamp} +0000"
    early = [*headers[:-2], ("author", person), ("committer", person)]
    bad = craft(programme.root, early, message, None)  # the first of its batch
    programme.git("reset", "-q", "--hard", bad)
    code, report = audit(programme, "--full")
    assert code == 6 and [(v["commit"], v["rule"]) for v in report["violations"]] == [(bad, "time")]


def test_registry_marks_compromised_keys() -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOv2ZuZ2ZyQ3R4tX6sNQk7yVvP1m6h3s5dVgQ6c0uPzH"
    member = Staff("cw-1", "caseworker", "north", "age1x", key, True)
    doc = Registry([member]).to_doc()
    assert "compromised_keys" not in doc["staff"]["cw-1"]  # registries without any unchanged
    marked = Registry.from_doc(doc).with_key_compromised("cw-1", "2026-03-01")
    again = Registry.from_doc(marked.to_doc())
    assert again.staff["cw-1"].signing_key is None
    assert again.compromised_keys == {key: "2026-03-01"}
    assert marked.to_doc()["staff"]["cw-1"]["compromised_keys"] == [
        {"signing_key": key, "since": "2026-03-01"}
    ]


def test_replace_refs_are_reported_by_name_only_when_an_object_id(programme: Programme) -> None:
    programme.new_case()
    head = programme.git("rev-parse", "HEAD").strip()
    programme.git("update-ref", "refs/replace/amina-yusuf-CANARY", head)
    result = programme.cli("audit", as_=None)
    assert result.exit_code == 6
    assert "a ref under refs/replace/ makes git show another object" in result.output
    assert "CANARY" not in result.output
    assert "indirection" in rules(audit(programme, "--full")[1])
