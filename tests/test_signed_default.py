"""Signed by default: `cmgit init` requires signed commits and signs its first one, an
unsigned programme is an explicit choice that every audit names first, and the README's
steps give a history whose every actor is proven. Audit also reads a bare central
repository, and only audit does."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner, Result

from cmgit import signing
from cmgit.cli import cli

from .conftest import TODAY, Programme, git
from .test_signing import ssh_key

CMGIT = Path(sys.executable).parent / "cmgit"
README = Path(__file__).parent.parent / "README.md"
CLAIMS = "audit: actors are claims, not proofs"


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    full_env = {"CMGIT_TODAY": TODAY, **(env or {})}
    return CliRunner().invoke(cli, list(args), env=full_env, catch_exceptions=False)


def identity(folder: Path, name: str = "identity.txt") -> tuple[Path, str]:
    path = folder / name
    result = run("keygen", "-o", str(path))
    assert result.exit_code == 0, result.output
    return path, result.stdout.strip()


def audit_json(where: Path) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = run("-C", str(where), "audit", "--json")
    return result.exit_code, json.loads(result.stdout)


def settings_of(root: Path) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(git(root, "show", "HEAD:settings.yaml"))


def test_init_makes_a_signing_key_beside_the_identity_and_requires_signatures(
    tmp_path: Path,
) -> None:
    key_file, recipient = identity(tmp_path)
    root = tmp_path / "cases"
    result = run(
        "init", str(root), "--admin", "pm-001", "--recipient", recipient,
        env={"CMGIT_IDENTITY": str(key_file)},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    made = tmp_path / "identity-signing"
    public = signing.public_key_text(signing.load_private_key(made).public_key())
    assert result.stdout.splitlines() == [
        f"Created case repository {root}; every commit must be signed",
        f"Made pm-001's SSH signing key {made}; its public key:",
        f"  {public}",
        "Next steps:",
        f"  1. Sign your commits: export CMGIT_SIGNING_KEY={made}",
        f"  2. Work inside the repository: cd {root}",
        "  3. Register staff: cmgit staff add ID --role caseworker --team TEAM --recipient "
        'age1... --signing-key "ssh-ed25519 AAAA..."',
        "  4. Install the hooks in each clone: cmgit hooks install; on the central "
        "repository: cmgit hooks install --server",
        "  5. Add a recovery recipient, its identity kept offline: cmgit settings set "
        "recovery_recipients '[age1...]'",
    ]
    assert result.stderr.startswith("Warning: no recovery recipient")
    assert made.stat().st_mode & 0o777 == 0o600
    assert settings_of(root)["require_signed_commits"] is True
    staff = yaml.safe_load(git(root, "show", "HEAD:staff.yaml"))
    assert staff["staff"]["pm-001"]["signing_key"] == public
    assert "gpgsig" in git(root, "cat-file", "commit", "HEAD")
    code, report = audit_json(root)
    assert code == 0 and report["ok"] and report["actors_proven"] is True
    assert report["signatures_required"] is True and report["unproven_commits"] == 0


def test_init_sets_recovery_recipients_given_and_then_does_not_warn(tmp_path: Path) -> None:
    key_file, recipient = identity(tmp_path)
    _, recovery = identity(tmp_path, "recovery.txt")
    root = tmp_path / "cases"
    result = run(
        "init", str(root), "--admin", "pm-001", "--recipient", recipient,
        "--recovery-recipient", recovery, "--recovery-recipient", recovery,
        env={"CMGIT_IDENTITY": str(key_file)},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert settings_of(root)["recovery_recipients"] == [recovery]
    assert "recovery recipient" not in result.stdout and result.stderr == ""


def test_keygen_makes_missing_folders_private_and_leaves_existing_ones(tmp_path: Path) -> None:
    shared = tmp_path / "office"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    path = shared / ".config" / "cmgit" / "identity.txt"
    result = run("keygen", "-o", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("age1")
    assert path.stat().st_mode & 0o777 == 0o600
    for folder in (shared / ".config", path.parent):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    assert shared.stat().st_mode & 0o777 == 0o755


def test_init_signs_with_the_key_in_cmgit_signing_key(tmp_path: Path) -> None:
    key_file, recipient = identity(tmp_path)
    private, public = ssh_key(tmp_path, "pm")
    root = tmp_path / "cases"
    env = {"CMGIT_IDENTITY": str(key_file), "CMGIT_SIGNING_KEY": str(private)}
    result = run("init", str(root), "--admin", "pm-001", "--recipient", recipient, env=env)
    assert result.exit_code == 0, result.output
    assert "Made" not in result.stdout and not (tmp_path / "identity-signing").exists()
    staff = yaml.safe_load(git(root, "show", "HEAD:staff.yaml"))
    assert staff["staff"]["pm-001"]["signing_key"] == signing.check_public_key(public)
    assert audit_json(root)[1]["actors_proven"] is True


def test_init_refuses_to_leave_the_first_commit_unsigned(tmp_path: Path) -> None:
    key_file, recipient = identity(tmp_path)
    _, public = ssh_key(tmp_path, "pm")
    root = tmp_path / "cases"
    base = ["init", str(root), "--admin", "pm-001", "--recipient", recipient]
    # a public key but not its private half: the first commit could not be signed
    result = run(*base, "--signing-key", public, env={"CMGIT_IDENTITY": str(key_file)})
    assert result.exit_code == 5
    assert result.stderr.startswith(
        "Error: init signs the first commit with the key given in --signing-key"
    )
    # no key and no identity to make one beside
    result = run(*base)
    assert result.exit_code == 5
    assert "requires signed commits, and no signing key was given" in result.stderr
    assert "--unsigned" in result.stderr
    # a private key that is not the public key named
    other, _ = ssh_key(tmp_path, "other")
    result = run(
        *base, "--signing-key", public,
        env={"CMGIT_IDENTITY": str(key_file), "CMGIT_SIGNING_KEY": str(other)},
    )  # fmt: skip
    assert result.exit_code == 5
    assert "your signing key is not the one registered for pm-001" in result.stderr
    assert not root.exists()
    # a key file already where init would make one: never replaced
    (tmp_path / "identity-signing").write_text("someone's key\n")
    result = run(*base, env={"CMGIT_IDENTITY": str(key_file)})
    assert result.exit_code == 5
    assert "a signing key already exists beside the identity file" in result.stderr
    assert (tmp_path / "identity-signing").read_text() == "someone's key\n"
    assert not root.exists()


def test_a_failed_init_leaves_no_key_behind(tmp_path: Path) -> None:
    key_file, recipient = identity(tmp_path)
    root = tmp_path / "cases"
    root.mkdir()
    (root / "other").write_text("x")
    result = run(
        "init", str(root), "--admin", "pm-001", "--recipient", recipient,
        env={"CMGIT_IDENTITY": str(key_file)},
    )  # fmt: skip
    assert result.exit_code == 2 and "target folder is not empty" in result.stderr
    assert not (tmp_path / "identity-signing").exists()


def test_an_unsigned_commit_in_a_signed_programme_is_a_violation_and_unproven(
    tmp_path: Path,
) -> None:
    key_file, recipient = identity(tmp_path)
    root = tmp_path / "cases"
    env = {"CMGIT_IDENTITY": str(key_file)}
    assert (
        run("init", str(root), "--admin", "pm-001", "--recipient", recipient, env=env).exit_code
        == 0
    )
    assert audit_json(root)[1]["actors_proven"] is True
    # the same change as a plain, unsigned git commit in pm-001's name
    (root / "site" / "extra.md").write_text("# extra\n")
    git(root, "add", "site/extra.md")
    git(
        root,
        "-c",
        "user.name=pm-001",
        "-c",
        "user.email=pm-001@cmgit.invalid",
        "commit",
        "-qm",
        "x",
    )
    result = run("-C", str(root), "audit")
    assert result.exit_code == 6
    assert result.stderr.splitlines()[0] == (
        f"{CLAIMS}: not every commit of this history had to be, and is, signed by its actor"
    )
    code, report = audit_json(root)
    assert code == 6 and "signature" in {v["rule"] for v in report["violations"]}
    assert report["actors_proven"] is False and report["unproven_commits"] == 1


def test_unsigned_is_an_explicit_choice_every_audit_names_first(tmp_path: Path) -> None:
    _, recipient = identity(tmp_path)
    root = tmp_path / "cases"
    result = run("init", str(root), "--admin", "pm-001", "--recipient", recipient, "--unsigned")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:3] == [
        f"Created case repository {root}, unsigned: the actors its history names are "
        "claims, not proofs",
        "Next steps:",
        f"  1. Work inside the repository: cd {root}",
    ]
    assert settings_of(root)["require_signed_commits"] is False
    for args in ((), ("--full",), ("--since", "HEAD")):
        audited = run("-C", str(root), "audit", *args)
        assert audited.exit_code == 0
        lines = audited.stderr.splitlines()
        assert lines[0] == f"{CLAIMS}: this programme does not require signed commits"
        assert lines[-1].endswith("checked, no violations, actors unproven")
        assert not re.search(r"\bok\b", audited.output)
    code, report = audit_json(root)
    assert code == 0 and report["ok"] and report["actors_proven"] is False


def test_a_forged_supervisor_closure_in_an_unsigned_programme_is_not_called_ok(
    programme: Programme,
) -> None:
    """Issue #14: a caseworker writes, with plain git, the commit in which the supervisor
    authorises the closure of the caseworker's own case. Without signatures nothing in the
    history tells it from the supervisor's own: audit must say the actors are claims."""
    programme.walk("post_closure_monitoring")
    message = programme.git("log", "-1", "--format=%B").strip() + "\n"
    assert "Cmgit-Actor: sv-north" in message and "Cmgit-Action: move" in message
    tree = programme.git("rev-parse", "HEAD^{tree}").strip()
    parent = programme.git("rev-parse", "HEAD~1").strip()
    # in cmgit's form and order of time, as a careful forger would write it
    seconds = int(programme.git("log", "-1", "--format=%ct").strip()) + 1
    ident = {"NAME": "sv-north", "EMAIL": "sv-north@cmgit.invalid", "DATE": f"{seconds} +0000"}
    env = {f"GIT_{who}_{k}": v for who in ("AUTHOR", "COMMITTER") for k, v in ident.items()}
    forged = subprocess.run(
        ["git", "-C", str(programme.root), "commit-tree", tree, "-p", parent],
        input=message, env={**os.environ, **env}, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    programme.git("reset", "-q", "--hard", forged)
    result = programme.cli("audit", as_=None)
    assert result.exit_code == 0
    assert result.stderr.splitlines()[0] == (
        f"{CLAIMS}: this programme does not require signed commits"
    )
    assert "checked, no violations, actors unproven" in result.stderr
    assert not re.search(r"\bok\b", result.output)
    assert audit_json(programme.root)[1]["actors_proven"] is False


def test_history_signed_only_later_stays_unproven(programme: Programme, tmp_path: Path) -> None:
    from .test_signing import require_signatures

    _, cw_key = require_signatures(programme, tmp_path)
    new = programme.cli(
        "new", "--from", programme.form_file("identification"),
        env={"CMGIT_SIGNING_KEY": str(cw_key)},
    )  # fmt: skip
    assert new.exit_code == 0, new.output
    result = programme.cli("audit", as_=None)
    assert result.exit_code == 0
    assert result.stderr.splitlines()[0] == (
        f"{CLAIMS}: not every commit of this history had to be, and is, signed by its actor"
    )
    # the next audit starts from there, and still knows what came before
    again = programme.cli("audit", "--json", as_=None)
    assert json.loads(again.stdout)["checked"] == 0
    assert json.loads(again.stdout)["actors_proven"] is False


def readme_blocks() -> list[list[str]]:
    """The shell blocks of the README's "Using cmgit", each a list of commands."""
    text = README.read_text()
    section = text[text.index("## Using cmgit\n") :]
    section = section[: section.index("\n##", 3)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [
        [re.sub(r"\s+#\s.*$", "", line) for line in block.splitlines() if line.strip()]
        for block in blocks
    ]


def test_the_readme_steps_give_a_signed_history(tmp_path: Path) -> None:
    """The README's "Using cmgit" commands run as written by the real `cmgit` in a shell,
    the first block by the programme manager, the second by the caseworker on their own
    account, with only the placeholders filled in: every actor in the result is proven."""
    manager, caseworker = readme_blocks()
    homes = {"pm": tmp_path / "pm", "cw": tmp_path / "cw"}
    own = homes["cw"] / ".config" / "cmgit"
    own.mkdir(parents=True)
    _, cw_recipient = identity(own)
    _, cw_public = ssh_key(own, "signing")  # as the README says the caseworker made it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMGIT_", "GIT_"))}
    env |= {"PATH": f"{CMGIT.parent}:{env['PATH']}", "EDITOR": "true", "CMGIT_TODAY": TODAY}
    cwd = tmp_path
    said: dict[str, str] = {}
    for who, steps in (("pm", manager), ("cw", caseworker)):
        env["HOME"] = str(homes[who])
        homes[who].mkdir(exist_ok=True)
        for step in steps:
            words = step.split()
            if words[0] == "cd":
                cwd = cwd / words[1]
                continue
            if words[0] == "export":
                for word in words[1:]:
                    name, _, value = word.partition("=")
                    env[name] = value.replace("~", env["HOME"], 1)
                continue
            command = step
            if "staff add" in step:
                command = command.replace("age1...", cw_recipient)
            command = command.replace("age1...", said.get("keygen", "age1..."))
            command = command.replace("CP-7K2M9QX4", said.get("new", "CP-7K2M9QX4"))
            command = command.replace("ssh-ed25519 AAAA...", cw_public)
            done = subprocess.run(
                ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, (step, done.stdout, done.stderr)
            said[words[1]] = done.stdout.strip()
            if words[1] == "init":
                # it printed the path the README then exports
                assert f"export CMGIT_SIGNING_KEY={homes['pm']}/.config/cmgit/" in done.stdout
            if words[1] == "audit":
                assert done.stderr.splitlines()[-1].endswith(" commit(s) checked, ok")
                assert "claims" not in done.stderr
    # the form files came from the templates the steps printed, accepted as they are
    assert (cwd / "intake.yaml").read_text().startswith("# Identification: ")
    assert (cwd / "consent.yaml").read_text().startswith("# Consent or assent: ")
    report = subprocess.run(
        ["cmgit", "audit", "--json", "--full"], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert report.returncode == 0, report.stderr
    found = json.loads(report.stdout)
    commits = int(git(cwd, "rev-list", "--count", "HEAD"))  # init, staff, new, record
    assert found["ok"] and found["actors_proven"] is True and found["checked"] == commits >= 4


def test_audit_reads_a_bare_central_repository(programme: Programme, tmp_path: Path) -> None:
    programme.new_case()
    central = tmp_path / "central.git"
    git(tmp_path, "clone", "-q", "--bare", str(programme.root), str(central))
    result = run("-C", str(central), "audit")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1].startswith("audit: ")
    assert (central / "cmgit" / "audit-verified").is_file()
    head = git(central, "rev-parse", "HEAD").strip()
    again = run("-C", str(central), "audit")
    assert again.exit_code == 0
    assert re.search(rf"^audit: from {head[:12]}, verified \S+Z$", again.stderr, re.M)
    code, report = audit_json(central)
    assert code == 0 and report["checked"] == 0 and report["since"] == head
    # writing commands still need a work tree
    refused = run(
        "-C", str(central), "new", "--from", programme.form_file("identification"),
        env={"CMGIT_IDENTITY": str(programme.key("cw-north-1"))},
    )  # fmt: skip
    assert refused.exit_code == 6
    assert refused.stderr == (
        "Error: a bare repository has no work tree to change cases in "
        "(work in a clone of it; cmgit audit reads it as it is)\n"
    )
    assert git(central, "rev-parse", "HEAD").strip() == head
