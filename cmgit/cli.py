"""The command line: the only module that prints or exits.

Each command opens the repository, calls one library method and prints the result.
Every CmgitError becomes ``Error: ...`` on stderr and its exit code in one place
(``CmgitGroup.invoke``).
"""

from __future__ import annotations

import datetime as dt
import gc
import itertools
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from . import errors, ids
from .errors import CmgitError, RepositoryError, UsageError
from .registry import ROLES, Staff

if TYPE_CHECKING:  # imported late below: a command loads only what it runs
    from .audit import Exposure, Report
    from .crypto import Identity
    from .formtemplate import FormInfo
    from .progress import Progress
    from .store import Repository
    from .store.procedure import ConfigChange
    from .store.setup import NewRepository

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
WORKFLOW_WIDTH = 100  # `cmgit workflow` fits a terminal of this many columns


class CmgitGroup(click.Group):
    """Translates cmgit's errors into messages and exit codes, once for every command."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
            warn_untrusted_config(ctx.obj)
            return result
        except CmgitError as exc:
            fail(exc)
        except KeyboardInterrupt:
            click.echo("Error: interrupted; nothing was changed", err=True)
            ctx.exit(130)
        except BrokenPipeError:  # the reader left (`cmgit stats | head`): as a pipe's writer
            ctx.exit(128 + 13)  # that SIGPIPE ends, quietly
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # the last line of defence: never print a traceback
            if os.environ.get("CMGIT_DEBUG"):
                raise
            click.echo(
                f"Error: internal error ({type(exc).__name__}); nothing was changed. "
                "Run again with CMGIT_DEBUG=1 to see where, and report it.",
                err=True,
            )
            ctx.exit(errors.OTHER)
        finally:
            if isinstance(ctx.obj, State):
                ctx.obj.close()


def fail(exc: CmgitError) -> NoReturn:
    click.echo(f"Error: {exc}", err=True)
    raise click.exceptions.Exit(exc.exit_code)


def warn_untrusted_config(state: State | None) -> None:
    """After a command that read the repository: say so if the configuration committed is
    not the one in force (a command that would change something is refused instead)."""
    if state is not None and state.opened is not None:
        try:
            problem = state.opened.untrusted_config()
        except CmgitError:
            return
        if problem is not None:
            click.echo(f"Warning: {problem}", err=True)


class State:
    """Options every command shares: the repository folder and the identity file."""

    def __init__(self, directory: str | None, identity: str | None):
        self.directory = Path(directory) if directory else None
        self.identity_path = identity
        self.opened: Repository | None = None
        self._all_opened: list[Repository] = []

    def repo(self) -> Repository:
        from .store import Repository

        repo = Repository.open(self.directory)
        repo.signing_key_path = signing_key_path()
        self.opened = repo
        self._all_opened.append(repo)
        return repo

    def close(self) -> None:
        """End the git readers of the repositories the command opened: a command run in
        a longer-lived process (a test, a script calling the CLI) must not leave one
        `git cat-file` behind per run until a garbage collection finds it."""
        for repo in self._all_opened:
            repo.git.close()
        self._all_opened.clear()

    def identities(self) -> tuple[Identity, ...]:
        from .store import load_identities

        return load_identities(self.identity_path)

    def optional_identities(self) -> tuple[Identity, ...] | None:
        return self.identities() if self.identity_path else None


def signing_key_path() -> Path | None:
    """CMGIT_SIGNING_KEY: the SSH private key cmgit signs commits with (SPEC section 3)."""
    text = os.environ.get("CMGIT_SIGNING_KEY")
    return Path(text) if text else None


def today() -> dt.date:
    """Today, or CMGIT_TODAY=YYYY-MM-DD for tests, demos and back-dated data entry."""
    text = os.environ.get("CMGIT_TODAY")
    if not text:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError("CMGIT_TODAY must be a date such as 2026-03-01") from None


def read_input(path: str) -> bytes:
    from .store import MAX_FORM_BYTES

    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_FORM_BYTES + 1)
        else:
            size = os.stat(path).st_size
            if size > MAX_FORM_BYTES:
                raise errors.TooLarge("form file is larger than cmgit accepts (1 MiB)")
            with open(path, "rb") as handle:
                data = handle.read(MAX_FORM_BYTES + 1)
    except OSError:
        raise UsageError(
            "cannot read the form file", hint="check the path given to --from"
        ) from None
    if len(data) > MAX_FORM_BYTES:
        raise errors.TooLarge("form file is larger than cmgit accepts (1 MiB)")
    return data


def emit(data: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        from .yamlio import dump

        click.echo(dump(data), nl=False)


pass_state = click.make_pass_decorator(State)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.group(cls=CmgitGroup, context_settings=CONTEXT)
@click.option("-C", "directory", metavar="DIR", help="Act on the case repository in DIR.")
@click.option(
    "--identity",
    envvar="CMGIT_IDENTITY",
    metavar="PATH",
    help="Your age identity file (default: $CMGIT_IDENTITY).",
)
@click.version_option(package_name="cmgit")
@click.pass_context
def cli(ctx: click.Context, directory: str | None, identity: str | None) -> None:
    """cmgit: child-protection case records, sealed with age, kept in git.

    Every change is one git commit; everything personal is sealed to the staff who may
    read it. Commands act on the case repository around the current folder, or -C DIR.

    \b
    Example:
      cmgit keygen -o ~/.config/cmgit/identity.txt
      export CMGIT_IDENTITY=~/.config/cmgit/identity.txt
      cmgit new --from intake.yaml
    """
    ctx.obj = State(directory, identity)
    if ctx.invoked_subcommand not in ("recover", "hooks"):  # hooks: git's, not a person's
        warn_leftover_edits()


def warn_leftover_edits() -> None:
    """One line on stderr while a killed `cmgit edit` has left plaintext behind."""
    from .editing import leftover_edits

    found = leftover_edits()
    if found:
        running = " (close its editor first)" if any(f.editor_running for f in found) else ""
        click.echo(
            f"warning: a stopped cmgit edit left {len(found)} unencrypted edit file(s) in "
            f"{found[0].path.parent}; run cmgit recover to remove them{running}",
            err=True,
        )


# -- repository and people ---------------------------------------------------------------


@cli.command()
@click.argument("directory", metavar="DIR", required=False, default=".")
@click.option(
    "--admin", required=True, metavar="ID", help="Staff ID of the first programme manager."
)
@click.option("--recipient", required=True, metavar="AGE1...", help="Their age recipient.")
@click.option(
    "--signing-key",
    metavar="SSHPUB",
    help="Their SSH public signing key (text); default: that of $CMGIT_SIGNING_KEY, or a "
    "new key made beside the identity file.",
)
@click.option("--team", default="programme", show_default=True, help="Their team.")
@click.option("--prefix", default="CP", show_default=True, help="Case ID prefix.")
@click.option(
    "--programme", default="Child protection programme", show_default=True, help="Programme name."
)
@click.option(
    "--recovery-recipient",
    "recovery",
    metavar="AGE1...",
    multiple=True,
    help="A recovery recipient (repeat for more), added to every record so cases survive "
    "lost keys; keep its identity offline. Also later: cmgit settings set recovery_recipients.",
)
@click.option(
    "--unsigned",
    is_flag=True,
    help="Do not require signed commits: every actor in the history is then a claim, not "
    "a proof, and every audit says so.",
)
@pass_state
def init(
    state: State,
    directory: str,
    admin: str,
    recipient: str,
    signing_key: str | None,
    team: str,
    prefix: str,
    programme: str,
    recovery: tuple[str, ...],
    unsigned: bool,
) -> None:
    """Create a case repository in DIR (new or empty), requiring signed commits.

    The first programme manager is registered in the first commit, the trust root, signed
    with $CMGIT_SIGNING_KEY; without it init makes their SSH signing key beside the
    identity file ($CMGIT_IDENTITY) and prints where.

    \b
    Example:
      cmgit init ./cases --admin pm-001 --recipient age1...
    """
    from .store import init_repository

    made = init_repository(
        Path(directory),
        admin=admin,
        recipient=recipient,
        team=team,
        signing_key=signing_key,
        prefix=prefix,
        programme=programme,
        signing_key_path=signing_key_path(),
        unsigned=unsigned,
        key_beside=Path(state.identity_path) if state.identity_path else None,
        recovery=recovery,
    )
    if not made.signed:
        click.echo(
            f"Created case repository {made.root}, unsigned: the actors its history names "
            "are claims, not proofs"
        )
    else:
        click.echo(f"Created case repository {made.root}; every commit must be signed")
    if made.made_key is not None:
        click.echo(f"Made {admin}'s SSH signing key {made.made_key}; its public key:")
        click.echo(f"  {made.signing_key}")
    _print_next_steps(made)


def _print_next_steps(made: NewRepository) -> None:
    """What a new programme does next, in order, as commands to copy."""
    steps = []
    if made.made_key is not None:
        steps.append(f"Sign your commits: export CMGIT_SIGNING_KEY={made.made_key}")
    elif made.signed:
        steps.append("Sign your commits with the key you gave: keep CMGIT_SIGNING_KEY set")
    steps += [
        f"Work inside the repository: cd {made.root}",
        "Register staff: cmgit staff add ID --role caseworker --team TEAM "
        '--recipient age1... --signing-key "ssh-ed25519 AAAA..."',
        "Install the hooks in each clone: cmgit hooks install; on the central repository: "
        "cmgit hooks install --server",
    ]
    if not made.recovery:
        steps.append(
            "Add a recovery recipient, its identity kept offline: cmgit settings set "
            "recovery_recipients '[age1...]'"
        )
    click.echo("Next steps:")
    for number, step in enumerate(steps, start=1):
        click.echo(f"  {number}. {step}")
    if not made.recovery:
        click.echo(
            "Warning: no recovery recipient: if every key that opens a case is lost, the case "
            "is lost with it",
            err=True,
        )


@cli.command()
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    required=True,
    help="Where to write the identity (created with mode 0600; never overwritten).",
)
def keygen(output: str) -> None:
    """Create an age identity and print its recipient.

    Give the recipient (age1...) to a programme manager to be registered; keep the file
    private and outside any repository.

    \b
    Example:
      cmgit keygen -o ~/.config/cmgit/identity.txt
    """
    from .store import keygen as make_key

    click.echo(make_key(Path(output)))


@cli.command()
@json_option
@pass_state
def whoami(state: State, as_json: bool) -> None:
    """Say which staff member the current identity is.

    \b
    Example:
      CMGIT_IDENTITY=me.txt cmgit whoami
    """
    actor = state.repo().actor(state.identities())
    if as_json:
        emit({"id": actor.id, "role": actor.role, "team": actor.team}, True)
    else:
        click.echo(f"{actor.id} ({actor.role}, team {actor.team})")


@cli.group(cls=CmgitGroup)
def staff() -> None:
    """Register and manage staff (programme managers only change them).

    \b
    Example:
      cmgit staff add cw-001 --role caseworker --team north --recipient age1...
    """


@staff.command("add")
@click.argument("staff_id", metavar="ID")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--team", required=True)
@click.option("--recipient", required=True, metavar="AGE1...")
@click.option("--signing-key", metavar="SSHPUB")
@pass_state
def staff_add(
    state: State, staff_id: str, role: str, team: str, recipient: str, signing_key: str | None
) -> None:
    """Register a staff member; re-encrypts the cases they now read.

    \b
    Example:
      cmgit staff add sv-north --role supervisor --team north --recipient age1...
    """
    from . import crypto

    member = Staff(
        ids.check_staff_id(staff_id),
        role,
        ids.check_team_id(team),
        crypto.check_recipient(recipient),
        signing_key,
        True,
    )
    repo = state.repo()
    count = repo.staff_add(state.identities(), member)
    click.echo(f"Added {staff_id} ({role}, team {team}); re-encrypted {count} case(s)")


@staff.command("list")
@json_option
@pass_state
def staff_list(state: State, as_json: bool) -> None:
    """List staff from the committed registry.

    \b
    Example:
      cmgit staff list --json
    """
    registry = state.repo().registry
    rows = [{"id": m.id, **m.as_doc()} for m in registry.staff.values()]
    if as_json:
        emit(rows, True)
        return
    for row in rows:
        flag = "" if row["active"] else "  (deactivated)"
        click.echo(f"{row['id']:<16} {row['role']:<18} {row['team']:<14}{flag}")


@staff.command("update")
@click.argument("staff_id", metavar="ID")
@click.option("--team")
@click.option("--role", type=click.Choice(ROLES))
@click.option("--recipient", metavar="AGE1...")
@click.option("--signing-key", metavar="SSHPUB")
@click.option(
    "--key-compromised-on",
    metavar="YYYY-MM-DD",
    help="Mark their signing key compromised from this day: audit flags commits it "
    "signed since. Give --signing-key with it to register their new key.",
)
@json_option
@pass_state
def staff_update(
    state: State,
    staff_id: str,
    team: str | None,
    role: str | None,
    recipient: str | None,
    signing_key: str | None,
    key_compromised_on: str | None,
    as_json: bool,
) -> None:
    """Change a staff member's team, role, recipient (a lost laptop) or signing key.

    A new recipient re-encrypts every case they read; the versions sealed before stay
    readable with the old key, and the report lists them (--json: each one).

    \b
    Example:
      cmgit staff update cw-001 --recipient age1...
      cmgit staff update cw-001 --key-compromised-on 2026-03-01 --signing-key "ssh-ed25519 ..."
    """
    from . import crypto
    from .audit import readable_history
    from .store.casekeys import format_1_until

    repo = state.repo()
    before = repo.git.head()
    count = repo.staff_update(
        state.identities(),
        ids.check_staff_id(staff_id),
        team=ids.check_team_id(team) if team else None,
        role=role,
        recipient=crypto.check_recipient(recipient) if recipient else None,
        signing_key=signing_key,
        key_compromised_on=_key_compromised_on(key_compromised_on),
    )
    # What the old key opened: the versions sealed up to the commit the change was made on.
    until = format_1_until(repo, before or "HEAD") if recipient else None
    history = readable_history(repo.root, staff_id, until=until) if until else []
    if as_json:
        doc: dict[str, Any] = {"staff": staff_id, "reencrypted": count}
        if recipient:
            doc["history_readable"] = [e.as_dict() for e in history]
        emit(doc, True)
        return
    click.echo(f"Updated {staff_id}; re-encrypted {count} case(s)")
    _report_readable_history(history, "Their old key")
    if key_compromised_on:
        # An incremental audit judges new commits only: those already verified that the
        # key signed since that day are found by a whole-history run.
        click.echo(
            f"Marked {staff_id}'s signing key compromised from {key_compromised_on}; "
            "run cmgit audit --full to find the commits it signed since"
        )


def _key_compromised_on(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise UsageError("--key-compromised-on must be a date such as 2026-03-01") from None


@staff.command("deactivate")
@click.argument("staff_id", metavar="ID")
@json_option
@pass_state
def staff_deactivate(state: State, staff_id: str, as_json: bool) -> None:
    """Deactivate a staff member and re-encrypt every case they could read.

    Refused while they still hold open cases: reassign those first. Earlier versions in
    the history stay readable with their key; the report lists them (--json: each one).

    \b
    Example:
      cmgit staff deactivate cw-007
    """
    from .audit import readable_history
    from .store.casekeys import format_1_until

    repo = state.repo()
    count = repo.staff_deactivate(state.identities(), ids.check_staff_id(staff_id))
    until = format_1_until(repo)
    history = readable_history(repo.root, staff_id, until=until) if until else []
    if as_json:
        emit(
            {
                "staff": staff_id,
                "reencrypted": count,
                "history_readable": [e.as_dict() for e in history],
            },
            True,
        )
        return
    click.echo(f"Deactivated {staff_id}; re-encrypted {count} case(s) without their key")
    _report_readable_history(history, "Their key")


def _report_readable_history(history: Sequence[Exposure], key: str) -> None:
    """The versions in the history a key taken away still opens, by case."""
    if not history:
        return
    versions: dict[str, list[int]] = {}
    for exposure in history:
        versions.setdefault(exposure.case_id, []).append(exposure.version)
    click.echo(
        f"{key} still opens {len(history)} earlier version(s) of "
        f"{len(versions)} case(s) in the history; destroy every copy of it:"
    )
    for case_id, numbers in versions.items():
        click.echo(f"  {case_id}  version(s) {', '.join(map(str, sorted(numbers)))}")


@cli.group(cls=CmgitGroup)
def settings() -> None:
    """Show and change the programme settings.

    \b
    Example:
      cmgit settings set caseload_limit 20
    """


@settings.command("show")
@json_option
@pass_state
def settings_show(state: State, as_json: bool) -> None:
    """Print the committed settings.

    \b
    Example:
      cmgit settings show --json
    """
    emit(state.repo().settings, as_json)


@settings.command("set")
@click.argument("key")
@click.argument("value")
@pass_state
def settings_set(state: State, key: str, value: str) -> None:
    """Change one setting (programme managers); VALUE is YAML, e.g. '[coordinator]'.

    \b
    Example:
      cmgit settings set reader_roles '[coordinator]'
    """
    count = state.repo().settings_set(state.identities(), key, value)
    click.echo(f"Set {key}; re-encrypted {count} case(s)")


@cli.group("config", cls=CmgitGroup)
def config_group() -> None:
    """Commit changes of the procedure made in the work tree: forms, workflow, SOP pages.

    \b
    Example:
      cmgit config commit -m sop_typo_fix --dry-run
    """


@config_group.command("commit")
@click.option(
    "-m",
    "reason",
    metavar="REASON",
    help="Why, as a code such as sop_typo_fix (commit messages carry no free text).",
)
@click.option("--dry-run", is_flag=True, help="Validate and show what changes; commit nothing.")
@json_option
@pass_state
def config_commit(state: State, reason: str | None, dry_run: bool, as_json: bool) -> None:
    """Validate the work tree's changes of schemas/, mkdocs.yml, providers.yaml and site/
    and commit them as one commit. Programme managers change schemas/, mkdocs.yml and
    providers.yaml; the roles in the setting sop_editors change the pages under site/.

    \b
    Example:
      cmgit config commit -m sop_typo_fix
    """
    if reason is None and not dry_run:
        raise UsageError("give the reason for the change: -m REASON", hint="e.g. -m sop_typo_fix")
    change = state.repo().config_commit(
        state.identities(), reason or "dry_run", today=today(), dry_run=dry_run
    )
    if as_json:
        emit(change.as_dict(), True)
        return
    if not change.files:
        click.echo("No change of the configuration in the work tree; nothing committed")
        return
    _report_config_change(change)


def _report_config_change(change: ConfigChange) -> None:
    summary = change.as_dict()
    del summary["commit"]
    emit(summary, False)
    if change.commit is None:
        click.echo("Dry run: nothing committed")
    else:
        click.echo(f"Committed {len(change.files)} file(s) as {change.commit[:12]}")
    if change.commit is not None and change.migrations:
        click.echo(
            f"Migrated {change.records_migrated} record(s) to format "
            f"{change.record_format} ({', '.join(change.migrations)})"
        )


@cli.command("migrate")
@click.option("--dry-run", is_flag=True, help="Show what it brings and does; commit nothing.")
@json_option
@pass_state
def migrate_command(state: State, dry_run: bool, as_json: bool) -> None:
    """Bring the record migrations this cmgit ships that the repository lacks, with the
    schema fields they need, and migrate every record in one commit (programme managers).
    The template's schemas, workflow, SOP pages and mkdocs.yml that this cmgit changed
    come too, where the programme never changed its own since cmgit init.

    \b
    Example:
      cmgit migrate --dry-run
    """
    change = state.repo().migrate(state.identities(), today=today(), dry_run=dry_run)
    if as_json:
        emit(change.as_dict(), True)
        return
    if not change.files:
        click.echo(
            "The records are at the format this cmgit ships, and the template's files the "
            "programme kept as they were are up to date; nothing to migrate"
        )
        return
    _report_config_change(change)


# -- cases ---------------------------------------------------------------------------


TEMPLATE_HELP = "Print the template of the form --from takes, and change nothing."


def template_option(command: Any) -> Any:
    return click.option("--template", "as_template", is_flag=True, help=TEMPLATE_HELP)(command)


def need_source(source: str | None) -> str:
    if source is None:
        raise UsageError(
            "give the form file with --from FILE",
            hint="--template prints the form to fill in",
        )
    return source


@cli.command()
@click.option(
    "--from",
    "source",
    metavar="FILE",
    help="Form file with the identification form (and registration, if at hand).",
)
@click.option("--caseworker", metavar="ID", help="Key caseworker (default: you, if a caseworker).")
@click.option("--team", metavar="T", help="Team (default: the caseworker's).")
@template_option
@pass_state
def new(
    state: State, source: str | None, caseworker: str | None, team: str | None, as_template: bool
) -> None:
    """Create a case in state identified and print its new case ID.

    \b
    Example:
      cmgit new --template > intake.yaml
      cmgit new --from intake.yaml --caseworker cw-001
    """
    if as_template:
        from .workflow import NEW_CASE_FORMS

        first, *more = NEW_CASE_FORMS
        note = " ".join(
            f"The same file may hold the {name} form too: add it with "
            f"cmgit form template {name} >> FILE."
            for name in more
        )
        _print_templates(state.repo(), [first], "cmgit new --from FILE", note=note)
        return
    data = read_input(need_source(source))
    repo = state.repo()
    click.echo(
        repo.new_case(state.identities(), data, today=today(), caseworker=caseworker, team=team)
    )


@cli.command()
@click.argument("case_id", metavar="ID")
@json_option
@pass_state
def show(state: State, case_id: str, as_json: bool) -> None:
    """Print a case, decrypted (recipients only).

    \b
    Example:
      cmgit show CP-7K2M9QX4
    """
    ids.check_case_id(case_id)
    emit(state.repo().show(state.identities(), case_id), as_json)


@cli.command()
@click.argument("text")
@json_option
@pass_state
def find(state: State, text: str, as_json: bool) -> None:
    """Search the sealed text of the cases you can open; prints case IDs.

    \b
    Example:
      cmgit find "Amina"
    """
    hits = state.repo().find(state.identities(), text, progress=_progress_printer(quiet=as_json))
    if as_json:
        emit(hits, True)
    else:
        for case_id in hits:
            click.echo(case_id)


@cli.command()
@click.argument("case_id", metavar="ID")
@pass_state
def edit(state: State, case_id: str) -> None:
    """Edit a case's sealed forms in $EDITOR, then validate, re-seal and commit.

    The forms go to a private temporary file (mode 0600, in memory where the system
    allows) that is removed on every exit. An invalid edit can be re-opened.

    \b
    Example:
      EDITOR=nano cmgit edit CP-7K2M9QX4
    """
    ids.check_case_id(case_id)
    repo = state.repo()
    identities = state.identities()
    from .editing import run_editor

    changed = repo.edit(identities, case_id, run_editor, _ask_retry, today=today())
    click.echo(f"{case_id}: saved" if changed else f"{case_id}: no change; nothing committed")


def _ask_retry(problem: CmgitError) -> bool:
    if not sys.stdin.isatty():
        return False  # the refusal is then reported once, as the command's error
    click.echo(f"Error: {problem}", err=True)
    return click.confirm("Re-open the editor?", default=True, err=True)


@cli.command()
@click.argument("case_id", metavar="ID")
@click.argument("form", metavar="FORM")
@click.option(
    "--from",
    "source",
    metavar="FILE",
    help="Form file holding exactly this form (- for standard input).",
)
@click.option(
    "--receipt",
    metavar="CODE",
    help="Referral or transfer: the receipt code the receiving agency gave for its package.",
)
@template_option
@pass_state
def record(
    state: State,
    case_id: str,
    form: str,
    source: str | None,
    receipt: str | None,
    as_template: bool,
) -> None:
    """Add or update one form of a case, with no change of state.

    Repeated forms (consent, follow_up, referral, ...) get an id; give an existing id
    to update that item. Follow-ups are append-only; a new case plan supersedes the
    previous one, which is kept.

    \b
    Example:
      cmgit record CP-7K2M9QX4 follow_up --template > visit.yaml
      cmgit record CP-7K2M9QX4 follow_up --from visit.yaml
      cmgit record CP-7K2M9QX4 transfer --from transfer.yaml --receipt 7K2M-9QX4-ABCD-EFGH
    """
    ids.check_case_id(case_id)
    if as_template:
        repo = state.repo()
        info = _known_form(_form_catalogue(repo), form)
        if not info.record_states:
            raise UsageError(
                f"cmgit record does not take the {form} form", hint=" or ".join(info.commands())
            )
        _print_templates(repo, [form], f"cmgit record {case_id} {form} --from FILE")
        return
    data = read_input(need_source(source))
    item = state.repo().record_form(
        state.identities(), case_id, form, data, today=today(), receipt=receipt
    )
    click.echo(f"{case_id}: recorded {item}")


@cli.command()
@click.argument("case_id", metavar="ID")
@click.argument("target", metavar="STATE")
@click.option("--reason", metavar="CODE", help="Reason code the transition asks for.")
@click.option("--from", "source", metavar="FILE", help="Merge one form in the same commit.")
@click.option(
    "--override-caseload",
    "override",
    metavar="REASON",
    help="Supervisors: accept a caseworker above the caseload limit: a reason code the "
    'workflow lists, then words kept sealed ("emergency: ...").',
)
@template_option
@pass_state
def move(
    state: State,
    case_id: str,
    target: str,
    source: str | None,
    reason: str | None,
    override: str | None,
    as_template: bool,
) -> None:
    """Move a case to STATE through one guarded transition of the workflow.

    A refused move lists every failing guard by code (G01...) and changes nothing
    (exit 4). Warnings print but do not refuse. Transitions that need authorisation
    (plan approval, closure, archive, reopening) are run by the authorising supervisor.

    \b
    Example:
      cmgit move CP-7K2M9QX4 case_planning
      cmgit move CP-7K2M9QX4 closed --reason death --from closure.yaml
      cmgit move CP-7K2M9QX4 closure_pending --reason objectives_met --template
    """
    ids.check_case_id(case_id)
    if as_template:
        _print_move_templates(state.repo(), case_id, target, reason)
        return
    data = read_input(source) if source else None
    result = state.repo().move(
        state.identities(),
        case_id,
        target,
        today=today(),
        reason=reason,
        form_data=data,
        override=override,
    )
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    assert result.transition is not None
    click.echo(f"{case_id}: {result.source} -> {result.target} ({result.transition.id})")


def _print_move_templates(repo: Repository, case_id: str, target: str, reason: str | None) -> None:
    """The templates of the forms a move reads, from the case's state (an open field)."""
    from .formtemplate import form_names, transition_reads
    from .workflow import NEW_EPISODE

    source = repo.load_open(case_id).record.open["state"]
    transition = repo.workflow.transition_for(source, target, reason, case_id=case_id)
    repo.workflow.reasons_for(transition, reason)
    names = transition_reads(repo.workflow, transition, form_names(repo.schemas), reason)
    move = f"{source} -> {target} ({transition.id})"
    command = f"cmgit move {case_id} {target}" + (f" --reason {reason}" if reason else "")
    if not names:
        click.echo(f"# The move {move} reads no form: run {command} without --from.")
        return
    note = None
    if len(names) > 1:
        note = f"The move {move} reads these forms: " + ", ".join(names) + ". "
        note += (
            "It takes them in one file."
            if NEW_EPISODE in transition.effects
            else "--from brings one of them: keep the one to record with the move, and "
            f"record the others first with cmgit record {case_id} FORM --from FILE."
        )
    _print_templates(repo, names, f"{command} --from FILE", note=note)


@cli.command()
@click.argument("case_id", metavar="ID")
@click.argument("staff_id", metavar="STAFF")
@click.option(
    "--reason",
    metavar="CODE",
    required=True,
    help="specific_qualification_needed, child_family_request, staff_departure, "
    "caseload_balancing or transfer_in.",
)
@click.option(
    "--override-caseload",
    "override",
    metavar="REASON",
    help="Accept a caseworker above the caseload limit: a reason code the workflow lists, "
    'then words kept sealed ("emergency: ...").',
)
@pass_state
def assign(state: State, case_id: str, staff_id: str, reason: str, override: str | None) -> None:
    """Reassign a case's key caseworker (supervisors, programme managers); re-encrypts.

    \b
    Example:
      cmgit assign CP-7K2M9QX4 cw-north-2 --reason caseload_balancing
    """
    ids.check_case_id(case_id)
    state.repo().assign(
        state.identities(), case_id, staff_id, today=today(), reason=reason, override=override
    )
    click.echo(f"{case_id}: assigned to {staff_id}")


@cli.command("list")
@click.option("--state", "states", metavar="S", multiple=True, help="Only cases in state S.")
@click.option("--team", metavar="T", help="Only cases of team T.")
@click.option("--caseworker", metavar="ID", help="Only cases of this caseworker.")
@click.option("--mine", is_flag=True, help="Only your cases (needs your identity).")
@click.option("--overdue", is_flag=True, help="Only cases with a follow-up or review overdue.")
@click.option("--profile", metavar="NAME", help="Display profile for the step names.")
@json_option
@pass_state
def list_cases(
    state: State,
    states: Sequence[str],
    team: str | None,
    caseworker: str | None,
    mine: bool,
    overdue: bool,
    profile: str | None,
    as_json: bool,
) -> None:
    """List cases from their open fields; no key needed (except for --mine).

    \b
    Example:
      cmgit list --team north --overdue
    """
    repo = state.repo()
    repo.progress = _progress_printer(quiet=as_json)
    if mine:
        caseworker = repo.actor(state.identities()).id
    cases = repo.list_cases(
        states=states,
        team=team,
        caseworker=caseworker,
        overdue=overdue,
        today=today(),
        profile=profile,
    )
    if as_json:
        emit(cases.as_dicts(), True)
        return
    print_columns(
        ("case", "step", "team", "caseworker", "risk", "follow-up due", "review due"),
        [
            [value or "-" for value in cases.column(name)]
            for name in (
                "case_id",
                "step",
                "team",
                "caseworker",
                "risk_level",
                "next_follow_up_due",
                "next_review_due",
            )
        ],
    )
    click.echo(f"{len(cases.rows)} case(s)", err=True)


@cli.command()
@click.option(
    "--within",
    default=7,
    show_default=True,
    metavar="DAYS",
    help="Also show what falls due within DAYS.",
)
@click.option("--team", metavar="T", help="Only cases of team T.")
@click.option("--caseworker", metavar="ID", help="Only cases of this caseworker.")
@click.option("--mine", is_flag=True, help="Only your cases (needs your identity).")
@click.option(
    "--risk",
    "risks",
    type=click.Choice(["high", "medium", "low"]),
    multiple=True,
    help="Only cases at this risk level (repeat for more).",
)
@json_option
@pass_state
def due(
    state: State,
    within: int,
    team: str | None,
    caseworker: str | None,
    mine: bool,
    risks: Sequence[str],
    as_json: bool,
) -> None:
    """Follow-ups and reviews due or overdue, by risk level; no key needed (except for
    --mine).

    A failed contact attempt does not reset the follow-up clock.

    \b
    Example:
      cmgit due --mine --risk high --within 3
    """
    repo = state.repo()
    repo.progress = _progress_printer(quiet=as_json)
    if mine:
        caseworker = repo.actor(state.identities()).id
    rows = repo.due(today=today(), within=within, team=team, caseworker=caseworker, risks=risks)
    if as_json:
        emit(rows, True)
        return
    table = [
        (
            r["risk_level"] or "-",
            r["case_id"],
            r["kind"],
            r["due_on"],
            f"{days(r['days_overdue'])} overdue"
            if r["days_overdue"] > 0
            else ("due today" if r["days_overdue"] == 0 else f"in {days(-r['days_overdue'])}"),
            r["caseworker"],
        )
        for r in rows
    ]
    print_table(("risk", "case", "what", "due", "when", "caseworker"), table)


def days(count: int) -> str:
    return f"{count} day" if count == 1 else f"{count} days"


@cli.command()
@click.argument("case_id", metavar="ID")
@click.option("--profile", metavar="NAME", help="Display profile for the step names.")
@json_option
@pass_state
def log(state: State, case_id: str, profile: str | None, as_json: bool) -> None:
    """A case's history from git: when, who, role, action, from -> to, reason, and the
    decisions of each transition: the authoriser (and proposer), the caseworker before a
    reassignment, and every guard with its result (pass, warn, overridden REASON).

    Needs no key: it reads commit messages, which hold IDs and codes only.

    \b
    Example:
      cmgit log CP-7K2M9QX4
    """
    from .trail import describe

    ids.check_case_id(case_id)
    rows = state.repo().case_log(case_id, profile=profile)
    if as_json:
        emit(rows, True)
        return
    table = [
        (
            r["date"],
            r["actor"],
            r["role"],
            r["action"],
            f"{r['from']} -> {r['to']}" if r["from"] else (r["to"] or ""),
            r["reason"] or "",
            r["detail"] or "",
            r["signature"],
            describe(r),
        )
        for r in rows
    ]
    print_table(
        (
            "when",
            "who",
            "role",
            "action",
            "from -> to",
            "reason",
            "detail",
            "signature",
            "decisions",
        ),
        table,
    )


@cli.command()
@click.option("--since", metavar="REV", help="Check only the commits after REV.")
@click.option(
    "--full",
    is_flag=True,
    help="Check the whole history and every object, not only what is new since "
    "the last verified commit.",
)
@click.option(
    "--server-checks",
    is_flag=True,
    help="In a mirror of the central repository (git clone --mirror), check what its "
    "pre-receive hook would refuse, where the host runs none: any ref but the programme's "
    "branch fails.",
)
@json_option
@pass_state
def audit(state: State, since: str | None, full: bool, server_checks: bool, as_json: bool) -> None:
    """Verify the history without any key; exit 6 on any violation.

    For every commit since the trust root (or the last verified commit): the generated
    message, the actor's role at the time, the signature and its key, the transition and
    its four-eyes rule, the change matching the action (the state history with it), every
    record sealed, the commit's own lines and times. Replace refs and grafts are reported
    and ignored. The first audit (and --full) hashes every object in the repository;
    later ones start from the last verified commit, say so, and check the objects of the
    new commits; a history rewritten under it is reported, and a record of it that this
    audit did not write forces a full run. Works on a bare central repository too.

    Actors are proven only where every commit had to be signed: otherwise the first line
    says they are claims, not proofs (--json: "actors_proven": false).

    With --server-checks, for a central repository on a hosting service that runs no
    pre-receive hook (a required status check in CI): this detects, it does not prevent.

    \b
    Example:
      cmgit audit --json
      cmgit -C central.git audit --server-checks
      cmgit -C /srv/git/cases.git audit
    """
    if server_checks:
        if since:
            raise UsageError("--server-checks judges every ref and the whole branch: no --since")
        _server_checks(state, full, as_json)
        return
    from .audit import audit_repository, summarise

    report = audit_repository(
        state.directory or Path.cwd(),
        since,
        remembered=not full,
        progress=_progress_printer(quiet=as_json),
    )
    if as_json:
        emit(summarise(report), True)
    else:
        for line in audit_preamble(report):
            click.echo(f"audit: {line}", err=True)
        for v in report.violations:
            click.echo(f"{v.commit[:12]}  {v.rule:<18} {v.detail}")
        if not report.ok:
            verdict = f"{len(report.violations)} violation(s)"
        elif report.actors_proven:
            verdict = "ok"
        else:  # never a bare "ok": it would read as "each actor proven"
            verdict = "no violations, actors unproven"
        click.echo(f"audit: {report.checked} commit(s) checked, {verdict}", err=True)
        if report.sealed_entries_unchecked:
            click.echo(
                "audit: sealed entries this clone does not hold (an auditor's clone), "
                f"their form unchecked: {report.sealed_entries_unchecked}",
                err=True,
            )
    if not report.ok:
        raise click.exceptions.Exit(errors.REPOSITORY)


def _server_checks(state: State, full: bool, as_json: bool) -> None:
    from .history import Git
    from .hooks import server_checks

    git = Git((state.directory or Path.cwd()).resolve())
    problems = server_checks(git, remembered=not full, progress=_progress_printer(quiet=as_json))
    if as_json:
        emit({"ok": not problems, "problems": problems}, True)
    else:
        for line in problems:
            click.echo(line)
        verdict = "ok" if not problems else f"{len(problems)} problem(s)"
        click.echo(f"audit --server-checks: {verdict}", err=True)
    if problems:
        raise click.exceptions.Exit(errors.REPOSITORY)


def audit_preamble(report: Report) -> list[str]:
    """What an audit says before its findings: first whether the actors it names are
    proven, then where it started from and why."""
    lines = []
    if not report.actors_proven:
        why = {
            True: "not every commit of this history had to be, and is, signed by its actor",
            False: "this programme does not require signed commits",
            None: "the history could not be read",
        }[report.signatures_required]
        lines.append(f"actors are claims, not proofs: {why}")
    if report.full_run_reason:
        lines.append(report.full_run_reason)
    if report.verified_at and report.start:
        lines.append(f"from {report.start[:12]}, verified {report.verified_at}")
    if report.ok and not report.state_saved:
        lines.append("could not remember this audit (git folder not writable)")
    return lines


@cli.command()
@click.argument("url", metavar="URL")
@click.argument("directory", metavar="[DIR]", required=False)
@click.option(
    "--auditor",
    is_flag=True,
    help="The clone an auditor keeps: history and open files, no sealed entry, no keyring.",
)
@click.option(
    "--branch", default="main", show_default=True, help="The programme's branch (--auditor)."
)
@pass_state
def clone(state: State, url: str, directory: str | None, auditor: bool, branch: str) -> None:
    """Clone the central repository for an office: the programme's branch, the keyring
    (the wrapped case keys) fetched on its own, the client hooks installed and git's
    commit-graph written, so the first command works at once.

    With --auditor: every commit and open file and none of the sealed entries (a blob
    filter of 1,024 bytes leaves them on the server), never the keyring. `cmgit audit` in
    it checks everything but the form of the entries it lacks, and says how many.

    \b
    Example:
      cmgit clone ssh://git@server/srv/git/cases.git cases
      cmgit clone --auditor https://git.example.org/cases.git audit-copy
    """
    name = directory or url.rstrip("/").rpartition("/")[2].removesuffix(".git") or "cases"
    target = (state.directory or Path.cwd()) / name
    if auditor:
        from .store import clone_auditor

        made = clone_auditor(url, target, branch)
        click.echo(f"auditor's clone made in {made}: cmgit -C {made} audit", err=True)
        return
    from .sync import clone as clone_office

    if Path(url).exists():  # a local path: git runs beside the new folder
        url = str(Path(url).resolve())
    repo, untrusted = clone_office(url, target.resolve())
    if untrusted is not None:
        click.echo(f"warning: {untrusted.message} ({untrusted.hint})", err=True)
    click.echo(f"clone: {repo.root}")


@cli.command()
@click.option("--remote", default="origin", show_default=True, help="The central repository.")
@click.option(
    "--abort",
    is_flag=True,
    help="Go back to where this clone was before a sync that did not finish.",
)
@click.option(
    "--drop",
    metavar="ID",
    multiple=True,
    help="Set this clone's unpushed changes to a case aside (kept, not pushed) and sync "
    "the rest: the way out of a true conflict that keeps the central version. Repeatable.",
)
@pass_state
def sync(state: State, remote: str, abort: bool, drop: tuple[str, ...]) -> None:
    """Exchange work with the central repository; history stays linear.

    Local commits are replayed on top of the central ones and re-signed; two offices'
    changes to the same case merge field by field, and items both added to one case are
    kept (an unpushed item whose old-style id the other office also used gets a new id);
    a true conflict (for example two different moves of one case) is refused, naming
    the case and the command that resolves it, and nothing is lost. A sync can always be
    run again.

    \b
    Example:
      cmgit sync
      cmgit sync --drop CP-7K2M9QX4   # keep the central version of a case in conflict
      cmgit sync --abort              # back to before a sync that did not finish
    """
    from .sync import abort as abort_sync
    from .sync import sync as run_sync

    repo = state.repo()
    if abort:
        if drop:
            raise UsageError("--abort takes no --drop")
        begun = abort_sync(repo, remote=remote)
        click.echo(
            f"sync: aborted; this clone is back at {begun[:12]}"
            if begun
            else "sync: no unfinished sync to abort"
        )
        return
    for case_id in drop:
        ids.check_case_id(case_id)
    result = run_sync(repo, state.identities(), remote=remote, today=today(), drop=drop)
    for subject in result.set_aside:
        click.echo(f"set aside: {subject}")
    if result.kept_as:
        click.echo(
            f"sync: the changes set aside are kept as {result.kept_as}, not pushed; "
            "redo with cmgit what still applies"
        )
    renumbered = f", {result.renumbered} item id(s) renumbered" if result.renumbered else ""
    click.echo(
        f"sync: {result.fetched} fetched, {result.replayed} replayed "
        f"({result.merged} merged{renumbered}), "
        f"{'pushed' if result.pushed else 'nothing to push'}"
    )


MAX_EXCHANGE_BYTES = 256 * 1024 * 1024


def _read_exchange_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_EXCHANGE_BYTES + 1)
    except OSError:
        raise UsageError(f"cannot read the {what}", hint="check the path given") from None
    if len(data) > MAX_EXCHANGE_BYTES:
        raise errors.TooLarge(f"the {what} is larger than cmgit accepts (256 MiB): split it")
    return data


def _new_output(path: str) -> Path:
    """An output file not yet there, in a folder that is: checked before anything is
    recorded, so an export or disclosure is not recorded for a file never written."""
    out = Path(path)
    if out.exists() or not out.parent.is_dir():
        raise UsageError(f"{path} exists or its folder does not", hint="name a new file with -o")
    return out


def _write_private(out: Path, data: bytes) -> None:
    with open(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
        handle.write(data)


@cli.command("import")
@click.argument("source", metavar="FILE")
@click.option("--map", "map_path", metavar="MAP.yaml", help="Import map (none: a cmgit export).")
@click.option("--dry-run", is_flag=True, help="Check every row and report; commit nothing.")
@json_option
@pass_state
def import_command(
    state: State, source: str, map_path: str | None, dry_run: bool, as_json: bool
) -> None:
    """Create cases from the rows of a CSV file, in one import commit (programme managers).

    Each row becomes a case, in the state the map's state column gives. Rows with problems
    are reported by row number and field, never by value, and left out; --dry-run only
    reports. A file sealed with age (a cmgit export) is opened with your identity. The
    same file is never imported twice. The map cmgit ships for Primero / CPIMS+ exports is
    cmgit/maps/primero.yaml.

    \b
    Example:
      cmgit import cases.csv --map primero.yaml --dry-run
      cmgit import export.csv.age
    """
    data = _read_exchange_file(source, "CSV file")
    mapping = _read_exchange_file(map_path, "import map") if map_path else None
    repo = state.repo()
    report = repo.import_cases(state.identities(), data, mapping, today=today(), dry_run=dry_run)
    if as_json:
        emit(report.as_dict(), True)
    else:
        for problem in report.problems:
            click.echo(problem)
        verb = "would import" if dry_run else "imported"
        click.echo(
            f"{verb} {len(report.case_ids)} of {report.rows} rows; "
            f"{report.failed_rows} row(s) with problems left out",
            err=True,
        )
    if report.problems and not report.case_ids:
        raise click.exceptions.Exit(errors.INVALID_RECORD)


@cli.command("export")
@click.option("--fields", metavar="F,...", help="Fields to export (default: all forms).")
@click.option("--recipient", metavar="AGE1...", help="Seal to this recipient (default: you).")
@click.option("-o", "output", required=True, metavar="FILE", help="The file to write (new).")
@click.option("--plaintext", is_flag=True, help="Write the CSV in the clear (needs --reason).")
@click.option(
    "--reason",
    metavar="CODE",
    help="Why in the clear: system_migration, statutory_report or court_order.",
)
@pass_state
def export_command(
    state: State,
    fields: str | None,
    recipient: str | None,
    output: str,
    plaintext: bool,
    reason: str | None,
) -> None:
    """Write a CSV of the cases you can open, sealed with age; the export is recorded.

    Columns are field paths (state, registration.child.sex, or a whole form as JSON):
    `cmgit import` reads the file back without a map. Written in the clear only with
    --plaintext and a reason code, which the export's commit keeps.

    \b
    Example:
      cmgit export -o cases.csv.age
      cmgit export --fields state,registration.child.sex --recipient age1... -o out.age
    """
    if plaintext != (reason is not None) or (plaintext and recipient):
        raise UsageError(
            "--plaintext and --reason go together, without --recipient",
            hint="leave both out for a sealed export",
        )
    out = _new_output(output)
    chosen = [f.strip() for f in fields.split(",") if f.strip()] if fields else None
    made = state.repo().export_cases(
        state.identities(),
        fields=chosen,
        recipient=recipient,
        plaintext_reason=reason,
        today=today(),
    )
    _write_private(out, made.data)
    click.echo(f"{made.event_id}: {made.rows} case(s) written to {output}")


@cli.command()
@click.argument("case_id", metavar="ID")
@click.option("--recipient", required=True, metavar="AGE1...", help="Whom the file is for.")
@click.option("-o", "output", required=True, metavar="FILE", help="The file to write (new).")
@click.option("--reason", metavar="CODE", help="Why, as a code (e.g. child_request).")
@pass_state
def disclose(state: State, case_id: str, recipient: str, output: str, reason: str | None) -> None:
    """Write one case, complete and readable (YAML), sealed to the recipient named: the
    answer to a child's or family's request to see their own record. Recorded on the case.

    \b
    Example:
      cmgit disclose CP-7K2M9QX4 --recipient age1... -o record.age --reason child_request
    """
    ids.check_case_id(case_id)
    out = _new_output(output)
    made = state.repo().disclose(
        state.identities(), case_id, recipient=recipient, reason=reason, today=today()
    )
    _write_private(out, made.data)
    click.echo(f"{case_id}: {made.event_id} written to {output}")


@cli.command("gc")
@pass_state
def gc_command(state: State) -> None:
    """Pack the history of this clone, or of the central repository (use -C DIR), apart
    from the keyring; use it instead of git gc, which would pack the case keys with the
    records so that a purge could no longer delete them at once.

    \b
    Example:
      cmgit gc
      cmgit -C /srv/git/cases.git gc
    """
    from .history import Git, repository_lock
    from .keyring.packing import gc

    git = Git.discover(state.directory or Path.cwd(), bare=True)
    with repository_lock(git.git_dir):
        done = gc(git)
    where = f" into {done.pack}" if done.pack else ""
    click.echo(
        f"gc: {done.objects} object(s) packed{where}; {done.pruned} keyring object(s) pruned"
    )


@cli.command()
@pass_state
def recover(state: State) -> None:
    """Clean up after an interrupted command: temporary files, private edit files of
    commands that are gone (kept while the editor they opened still runs), git's
    index.lock left by a killed git, and records whose commit was made but whose
    work-tree copy was not yet updated.

    \b
    Example:
      cmgit recover
    """
    done = state.repo().recover()
    from .editing import recover_private_files

    removed, kept = recover_private_files()
    done += [f"removed an edit file left in {p.parent}" for p in removed]
    for line in done:
        click.echo(line)
    for path in kept:
        click.echo(
            f"kept an edit file in {path.parent}: the editor a stopped cmgit edit opened on "
            "it is still running; close it, then run cmgit recover again",
            err=True,
        )
    click.echo(f"recover: {len(done)} thing(s) put right", err=True)


@cli.group(cls=CmgitGroup)
def hooks() -> None:
    """git hooks: refuse commits cmgit did not make; let the server refuse what audit would.

    \b
    Example:
      cmgit hooks install
      cmgit -C /srv/git/cases.git hooks install --server
    """


@hooks.command("install")
@click.option(
    "--server",
    is_flag=True,
    help="Install the pre-receive and post-receive hooks into this bare central repository "
    "(use -C DIR): it accepts the programme's one branch and the keyring, nothing else.",
)
@click.option(
    "--allow-unsigned",
    is_flag=True,
    help="Server: accept unsigned commits where the settings do not require them.",
)
@pass_state
def hooks_install(state: State, server: bool, allow_unsigned: bool) -> None:
    """Install the client hooks (pre-commit, commit-msg, diff driver) or, with --server, the
    central repository's pre-receive hook.

    \b
    Example:
      cmgit hooks install
    """
    from . import hooks as hook_module
    from .history import Git

    if server:
        where = (state.directory or Path.cwd()).resolve()
        path = hook_module.install_server(where, require_signatures=not allow_unsigned)
        click.echo(f"Installed {path}")
        click.echo(
            "Pack this repository with cmgit gc, never git gc: git's would pack the keyring "
            "with the records, and a purge could no longer delete a case's keys at once"
        )
        return
    for item in hook_module.install_client(Git.discover(state.directory or Path.cwd())):
        click.echo(f"Installed {item}")


@hooks.command("pre-commit", hidden=True)
@pass_state
def hooks_pre_commit(state: State) -> None:
    """Refuse a git commit that changes records/ or sealed/ (cmgit never runs git commit),
    adds a path outside the layout, or adds one that holds a case's name, place or
    contact."""
    from . import hooks as hook_module
    from .history import Git

    git = Git.discover(state.directory or Path.cwd())
    staged = hook_module.pre_commit(git)
    if staged:
        click.echo(
            "Error: records change only through cmgit commands; this commit touches "
            f"{len(staged)} record file(s) (unstage them with git restore --staged)",
            err=True,
        )
        raise click.exceptions.Exit(1)
    skipped = hook_module.check_new_paths(git, state.identity_path)
    if skipped:
        click.echo(f"cmgit: {skipped}", err=True)


@hooks.command("commit-msg", hidden=True)
@click.argument("message_file", metavar="FILE")
@pass_state
def hooks_commit_msg(state: State, message_file: str) -> None:
    """Refuse a commit message that holds a name, place or contact of a case (GC)."""
    from . import hooks as hook_module
    from .history import Git

    git = Git.discover(state.directory or Path.cwd())
    skipped = hook_module.check_message(git, state.identity_path, Path(message_file))
    if skipped:
        click.echo(f"cmgit: {skipped}", err=True)


@hooks.command("pre-receive", hidden=True)
@click.option("--allow-unsigned", is_flag=True)
@pass_state
def hooks_pre_receive(state: State, allow_unsigned: bool) -> None:
    """Check a push (reads "old new ref" lines on standard input)."""
    from . import hooks as hook_module
    from .history import Git

    git = Git((state.directory or Path.cwd()).resolve())
    # git holds the pushed objects apart, in this folder, until the hook agrees.
    quarantine = os.environ.get("GIT_QUARANTINE_PATH")
    problems = hook_module.pre_receive(
        git,
        sys.stdin.read().splitlines(),
        require_signatures=not allow_unsigned,
        quarantine=Path(quarantine) if quarantine else None,
    )
    for line in problems:
        click.echo(f"cmgit: refused: {line}", err=True)
    if problems:
        raise click.exceptions.Exit(1)


@hooks.command("post-receive", hidden=True)
@pass_state
def hooks_post_receive(state: State) -> None:
    """After a push: prune what the keyring shards it replaced alone held (reads "old new
    ref" lines on standard input)."""
    from . import hooks as hook_module
    from .history import Git

    git = Git((state.directory or Path.cwd()).resolve())
    hook_module.post_receive(git, sys.stdin.read().splitlines())


@hooks.command("merge-driver", hidden=True)
@click.argument("base")
@click.argument("ours")
@click.argument("theirs")
@click.argument("path")
@pass_state
def hooks_merge_driver(state: State, base: str, ours: str, theirs: str, path: str) -> None:
    """git merge driver: merge a record field by field and re-seal it; exit 1 on a true
    conflict, leaving our sealed version in place (never plaintext). A case kept as
    sealed entries is more than one file (a merge of it writes the open file and an entry
    of the next version, which a file's driver cannot): left to `cmgit sync`."""
    from .entries import parse_entry_path
    from .history import object_id
    from .records import MAX_RECORD_FILE, has_sealed_block
    from .store import read_limited

    entry = parse_entry_path(path)
    case_id = entry[0] if entry else ids.case_id_from_path(path)
    if case_id is None:
        raise click.exceptions.Exit(1)
    try:
        data = {
            name: read_limited(p, MAX_RECORD_FILE, "record file or sealed entry")
            for name, p in (("base", base), ("ours", ours), ("theirs", theirs))
        }
    except CmgitError as exc:
        click.echo(f"cmgit: {exc}", err=True)
        raise click.exceptions.Exit(1) from None
    theirs_blob = object_id("blob", data["theirs"])  # the git blob id of their version
    if entry or not all(has_sealed_block(data[side]) for side in ("ours", "theirs")):
        refused = RepositoryError(
            "a case kept as sealed entries is merged by cmgit sync, not by git merge",
            case_id=case_id,
            hint="run git merge --abort, then cmgit sync",
        )
        click.echo(f"cmgit: {refused}", err=True)
        raise click.exceptions.Exit(1)
    try:
        merged = state.repo().merge_record(
            case_id,
            data["base"] or None,
            data["ours"],
            data["theirs"],
            theirs_blob,
            state.identities(),
            today(),
        )
    except CmgitError as exc:
        click.echo(f"cmgit: {exc}", err=True)
        raise click.exceptions.Exit(1) from None
    Path(ours).write_bytes(merged)


@hooks.command("textconv", hidden=True)
@click.argument("path")
@pass_state
def hooks_textconv(state: State, path: str) -> None:
    """git diff driver: a record or sealed entry decrypted for a recipient, to the
    terminal only."""
    from .records import MAX_RECORD_FILE  # larger than any sealed entry
    from .store import read_limited

    data = read_limited(path, MAX_RECORD_FILE, "record file or sealed entry")
    text = state.repo().textconv(data, state.optional_identities(), Path(path).name)
    sys.stdout.write(text)


@cli.command("workflow")
@click.option("--guards", "show_guards", is_flag=True, help="List the guards instead.")
@json_option
@pass_state
def workflow_table(state: State, show_guards: bool, as_json: bool) -> None:
    """Print the procedure from the repository's workflow data: transitions or guards.

    \b
    Example:
      cmgit workflow
      cmgit workflow --guards --json
    """
    flow = state.repo().workflow
    if show_guards:
        guards = [
            {
                "code": g.code,
                "severity": g.severity,
                "summary": g.summary,
                "refusal": g.refusal_text,
                **({"override_reasons": list(g.override_reasons)} if g.override_reasons else {}),
            }
            for g in flow.guards.values()
        ]
        if as_json:
            emit(guards, True)
        else:
            for r in guards:
                echo_wrapped(f"{r['code']:<6}{r['severity']:<9}{r['summary']}", indent=15)
        return
    rows: list[dict[str, Any]] = [
        {
            "id": t.id,
            "from": list(t.sources),
            "to": t.target,
            "by": list(t.by),
            "four_eyes": t.four_eyes,
            "guards": list(t.guards),
            "reasons": dict(t.reasons) if t.reasons else None,
            "summary": t.summary,
        }
        for t in flow.transitions.values()
    ]
    if as_json:
        emit(rows, True)
        return
    # Two lines a transition, wrapped to 100 columns: the move, then who and what it needs.
    open_states = flow.caseload_states
    for t in flow.transitions.values():
        sources = list(t.sources)
        if len(open_states) > 1 and open_states <= set(sources):
            sources = ["any open state", *(s for s in sources if s not in open_states)]
        needs = [f"by {', '.join(t.by)}"]
        codes = [g for g in dict.fromkeys(t.guards) if g != t.four_eyes]
        if codes:
            needs.append("guards " + " ".join(codes))
        if t.four_eyes:
            needs.append(f"four eyes {t.four_eyes}")
        if t.reasons:
            needs.append(
                "reasons "
                + ", ".join(
                    f"{reason} ({','.join(extra)})" if extra else reason
                    for reason, extra in t.reasons.items()
                )
            )
        echo_wrapped(f"{t.id:<6}{' or '.join(sources)} -> {t.target}", indent=8)
        echo_wrapped(" " * 6 + "; ".join(needs), indent=8)


@cli.group("form", cls=CmgitGroup)
def form_group() -> None:
    """The forms of this repository: list them, or print a template to fill in.

    \b
    Example:
      cmgit form list
      cmgit form template follow_up > visit.yaml
    """


@form_group.command("list")
@json_option
@pass_state
def form_list(state: State, as_json: bool) -> None:
    """List the forms: what each is, one form or a list of items, and how it is recorded.

    \b
    Example:
      cmgit form list
      cmgit form list --json
    """
    forms = _form_catalogue(state.repo())
    if as_json:
        emit([info.as_dict() for info in forms.values()], True)
        return
    for info in forms.values():
        shape = f"a list of items, each with its {info.id_field}" if info.repeated else "one form"
        echo_wrapped(f"{info.name}: {info.title} ({shape}). {info.description}", indent=4)
        for command in info.commands():
            click.echo(f"    {command}")


@form_group.command("template")
@click.argument("form_name", metavar="FORM")
@click.option("-o", "output", metavar="FILE", help="Write the template to FILE (a new file).")
@pass_state
def form_template(state: State, form_name: str, output: str | None) -> None:
    """Print a form as commented YAML to fill in: every field, its type, the values it
    takes, whether it is required, and an example the schema accepts.

    Optional fields are commented out; the fields cmgit fills in itself (item ids,
    the authorisation of a closure...) are named and left out.

    \b
    Example:
      cmgit form template identification > intake.yaml
      cmgit form template follow_up -o visit.yaml
    """
    repo = state.repo()
    info = _known_form(_form_catalogue(repo), form_name)
    from .formtemplate import template

    text = template(repo.schemas, info, today().isoformat())
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        with open(output, "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise UsageError(
            "the file given to -o exists", hint="name a new file, or print to the screen"
        ) from None
    except OSError:
        raise UsageError("cannot write the file given to -o") from None


def _form_catalogue(repo: Repository) -> dict[str, FormInfo]:
    from .formtemplate import catalogue

    return catalogue(repo.schemas, repo.workflow)


def _known_form(forms: dict[str, FormInfo], name: str) -> FormInfo:
    """The form of that name, or a usage error naming the forms and the nearest one."""
    if name in forms:
        return forms[name]
    from .formtemplate import nearest

    close = nearest(name, forms)
    raise UsageError(
        "unknown form" + (f"; did you mean {close}?" if close else ""),
        hint="forms: " + ", ".join(forms),
    )


def _print_templates(
    repo: Repository, names: Sequence[str], command: str, note: str | None = None
) -> None:
    """The templates of ``names`` one after the other (a form file holds several forms
    under their names), each saying the command that takes it."""
    from .formtemplate import template

    forms = _form_catalogue(repo)
    if note:
        for line in textwrap.wrap(note, 88, break_on_hyphens=False):
            click.echo(f"# {line}")
    day = today().isoformat()
    for number, name in enumerate(names):
        if number:
            click.echo()
        click.echo(template(repo.schemas, forms[name], day, commands=[command]), nl=False)


@cli.command("stats")
@json_option
@pass_state
def stats_command(state: State, as_json: bool) -> None:
    """Programme statistics from open fields and history, suppressed as the site
    publishes them; no key needed.

    \b
    Example:
      cmgit stats
      cmgit stats --json
    """
    from . import site as site_module
    from .audit import config_in_force

    rep = site_module.statistics_report(
        state.directory,
        today=today(),
        in_force=config_in_force,
        progress=_progress_printer(quiet=as_json),
    )
    if rep.config_warning is not None:
        click.echo(f"Warning: {rep.config_warning}", err=True)
    if as_json:
        emit(rep.as_dict(), True)
        return
    k = rep.result.threshold
    click.echo(
        f"{rep.programme_name}: figures as of {rep.result.as_of.isoformat()}, "
        f"commit {rep.commit[:12]}, counts below {k} hidden"
    )
    for table in rep.tables:
        click.echo(f"\n{table.title}")
        print_table(*table.grid_rows())
    if rep.result.withheld:
        click.echo("\nFewer than 20 open cases: the finer tables are not published.")


@cli.group("report", cls=CmgitGroup)
def report_group() -> None:
    """Reports of a month for managers and donors.

    \b
    Example:
      cmgit report monthly 2026-03 -o reports/
    """


@report_group.command("monthly")
@click.argument("month", metavar="YYYY-MM")
@click.option("-o", "--out", required=True, metavar="DIR", help="Folder to write the report to.")
@click.option("--public", "public_only", is_flag=True, help="Write the public version only.")
@json_option
@pass_state
def report_monthly(state: State, month: str, out: str, public_only: bool, as_json: bool) -> None:
    """The monthly case report (Annex 5) of a month that has ended, at HEAD.

    Writes the public version (keyless: open fields and history, suppressed as the site
    publishes it; JSON and the site's page) and the internal one (full counts, concern
    category x sex x risk level, referrals, BIA/BID, tracing), sealed to the programme
    managers. The internal version needs a programme manager's identity; with --public
    only the public one is written, by anyone. Rebuilt at the same commit, the public
    files are byte-identical and the internal one decrypts to the same bytes.

    \b
    Example:
      cmgit report monthly 2026-03 -o reports/
      cmgit report monthly 2026-03 -o reports/ --public
    """
    from . import reports
    from .audit import config_in_force
    from .site.monthly import monthly_page, public_monthly_report
    from .store.report import write_files

    period = reports.Month.parse(month)
    if not period.has_ended(today()):
        raise UsageError(
            f"the month {period.label} has not ended yet",
            hint="the report covers a whole month: give one that has ended",
        )
    public = public_monthly_report(state.directory, period, in_force=config_in_force)
    name = f"monthly-{period.label}"
    files = {
        f"{name}-public.json": public.to_bytes(),
        f"{name}-public.md": monthly_page(public).encode(),
    }
    internal = None
    if not public_only:
        try:
            internal = state.repo().internal_monthly(
                state.identities(), period, progress=_progress_printer(quiet=as_json)
            )
        except (errors.Refused, errors.AccessError) as exc:
            exc.hint = "--public writes the public version, which needs no key"
            raise
        files[f"{name}-internal.json.age"] = internal.armored.encode()
    written = write_files(Path(out), files)
    if as_json:
        emit(
            {
                "month": period.label,
                "commit": public.commit,
                "files": [str(p) for p in written],
                "active_cases": public.active,
                "unreadable_cases": None if internal is None else internal.unreadable,
            },
            True,
        )
        return
    for path in written:
        click.echo(f"wrote {path}")
    if internal is not None:
        click.echo(f"internal version sealed to {internal.recipients} programme manager(s)")
        if internal.unreadable:
            click.echo(
                f"Warning: {internal.unreadable} case(s) could not be opened and are not "
                "counted; run cmgit validate",
                err=True,
            )


@cli.group("retention", cls=CmgitGroup)
def retention_group() -> None:
    """The programme's retention period: which closed cases are past it.

    \b
    Example:
      cmgit retention due
    """


@retention_group.command("due")
@click.option("--as-of", "as_of", metavar="DATE", help="Count to DATE (default: today).")
@json_option
@pass_state
def retention_due(state: State, as_of: str | None, as_json: bool) -> None:
    """Closed cases whose closed_on plus the setting retention_period_months has passed;
    no key needed (open fields only).

    \b
    Example:
      cmgit retention due --as-of 2030-01-01 --json
    """
    from .store.protection import RETENTION_SETTING, retention_months

    day = today() if as_of is None else _date_option("--as-of", as_of)
    repo = state.repo()
    months = retention_months(repo)
    due = repo.retention_due(today=day)
    if as_json:
        cases = [d.as_dict() for d in due]
        emit({"as_of": day.isoformat(), RETENTION_SETTING: months, "cases": cases}, True)
        return
    if months is None:
        click.echo(
            f"No case is due: the setting {RETENTION_SETTING} is not set, so closed cases "
            "are kept.\nA programme manager sets it, following national law and agency "
            f"policy: cmgit settings set {RETENTION_SETTING} MONTHS"
        )
        return
    if not due:
        click.echo(f"No closed case is past its retention period ({months} months) on {day}.")
        return
    click.echo(f"{len(due)} closed cases past their retention period ({months} months) on {day}:")
    print_table(
        ("case", "closed on", "retention ended", "past by"),
        [(d.case_id, d.closed_on, d.ends_on, days(d.days_past)) for d in due],
    )


@cli.command()
@click.argument("case_id", metavar="ID")
@click.option(
    "--reason", required=True, metavar="CODE", help="Why, as a code (e.g. retention_ended)."
)
@json_option
@pass_state
def purge(state: State, case_id: str, reason: str, as_json: bool) -> None:
    """Erase a case past its retention period (record format 2): one programme manager
    proposes, a second runs the same command to erase. Every key of the case is
    destroyed; its open fields stay, so audit and statistics still count it.

    \b
    Example:
      cmgit purge CP-7K2M9QX4 --reason retention_ended
    """
    from .store.custody import purge as purge_case

    done = purge_case(state.repo(), state.identities(), case_id, reason=reason, today=today())
    if as_json:
        emit(done.as_dict(), True)
    elif done.done:
        click.echo(
            f"{case_id}: erased ({done.event_id}, proposed by {done.proposer}). Every key of "
            "the case is destroyed here; run cmgit sync so the central repository and the "
            "other offices destroy theirs."
        )
    else:
        click.echo(
            f"{case_id}: erasure proposed ({done.event_id}). A second programme manager "
            f"erases it with: cmgit purge {case_id} --reason {reason}"
        )


@cli.command("recover-key")
@click.argument("case_id", metavar="ID")
@click.option(
    "--custodian",
    "custodian_files",
    multiple=True,
    required=True,
    metavar="FILE",
    help="A recovery custodian's identity file; give as many as the threshold.",
)
@json_option
@pass_state
def recover_key(
    state: State, case_id: str, custodian_files: tuple[str, ...], as_json: bool
) -> None:
    """Recover a case key no reader can unwrap, with k of the n recovery custodians, and
    wrap it again to the case's readers; the case records the recovery.

    \b
    Example:
      cmgit recover-key CP-7K2M9QX4 --custodian rc-1.txt --custodian rc-2.txt
    """
    from .store import load_identities
    from .store.custody import recover_key as recover

    custodians = [i for f in custodian_files for i in load_identities(Path(f))]
    done = recover(state.repo(), state.identities(), case_id, custodians, today=today())
    if as_json:
        emit(
            {
                "case_id": done.case_id,
                "event_id": done.event_id,
                "custodians": list(done.custodians),
            },
            True,
        )
    else:
        click.echo(
            f"{case_id}: key recovered by {', '.join(done.custodians)} ({done.event_id}) and "
            "wrapped again to the case's readers"
        )


def _date_option(option: str, text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} must be a date such as 2026-03-01") from None


@cli.command("privacy")
@click.option(
    "--list",
    "list_ids",
    is_flag=True,
    help="Also print the IDs of the cases singled out (a target list: keep it to yourself).",
)
@json_option
@pass_state
def privacy_command(state: State, list_ids: bool, as_json: bool) -> None:
    """How many cases the open fields single out; no key needed.

    Anyone holding the repository reads the open fields. A case alone in its group on
    team, sex, age band, separation status and the open dates (k=1) can be found by
    someone who knows the child's situation; so can, nearly, one in a group smaller than
    the setting suppression_threshold. No case ID is printed unless --list is given.

    \b
    Example:
      cmgit privacy
      cmgit privacy --json
    """
    from .privacy import PRECISION_SETTING

    report = state.repo().single_out()
    if as_json:
        emit(report.as_dict(with_ids=list_ids), True)
        return
    n, k = report.cases, report.threshold

    def share(count: int) -> str:
        return f"{count} ({count / n:.0%})" if n else "0"

    quasi = ", ".join(report.quasi_identifiers)
    heading = (
        f"{n} cases, grouped on {quasi} and the open dates as stored ({', '.join(report.dates)}):"
    )
    click.echo(textwrap.fill(heading, width=90, break_on_hyphens=False))
    click.echo(f"  unique (k=1): {share(report.stored.unique)}")
    click.echo(f"  in groups smaller than {k}: {share(report.stored.small)}")
    months = ", ".join(report.month_fields) or "no open date"
    click.echo(
        f"  with {PRECISION_SETTING}: month ({months} kept to the month): "
        f"{share(report.at_month.unique)} unique"
    )
    day_alone = {e.fields[-1]: e for e in report.with_each_date}
    for coarse in report.each_at_month:
        name = coarse.fields[-1]
        click.echo(
            f"  without the other dates, with {name}: {day_alone[name].unique} unique to the day, "
            f"{coarse.unique} to the month"
        )
    headers = ("grouped on", "groups", "unique", f"in groups < {k}")
    for title, rows in (
        ("\nWithout dates:", report.without_dates),
        ("\nWith one date each:", report.with_each_date),
    ):
        click.echo(title)
        print_table(headers, [(", ".join(e.fields), e.groups, e.unique, e.small) for e in rows])
    if list_ids:
        click.echo("\nCases singled out (k=1):")
        for case_id in report.singled_out:
            click.echo(f"  {case_id}")


@cli.group("site", cls=CmgitGroup)
def site_group() -> None:
    """The SOP site: reference pages, statistics and the static HTML build.

    \b
    Example:
      cmgit site build --out /tmp/site
    """


@site_group.command("build")
@click.option(
    "--out",
    metavar="DIR",
    help="Output folder (default: site-build/ at the top of the repository; "
    "site-preview/ for a preview).",
)
@click.option(
    "--commit",
    "commit",
    metavar="REV",
    help="Build from this commit on the branch instead of HEAD.",
)
@click.option(
    "--preview",
    is_flag=True,
    help="Build the uncommitted pages of the work tree, marked as a preview on every "
    "page; never written to the publish folder.",
)
@pass_state
def site_build(state: State, out: str | None, commit: str | None, preview: bool) -> None:
    """Build the static site: SOP pages, reference pages from the workflow and schemas,
    statistics; needs no key and works offline.

    Everything is read from one commit, HEAD's unless --commit names another: pages
    that are not committed are not published. --preview shows them before they are.

    The build fails (exit 3) and publishes nothing if a record, an age message or
    anything shaped like a case record would reach the output.

    \b
    Example:
      cmgit site build
      cmgit -C ./cases site build --out /srv/www/sop
      cmgit site build --preview
    """
    from . import site as site_module
    from .audit import config_in_force

    result = site_module.build(
        state.directory,
        Path(out) if out else None,
        today=today(),
        in_force=config_in_force,
        commit=commit,
        preview=preview,
        progress=_progress_printer(),
    )
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if result.preview:
        click.echo(
            f"Built a preview of the uncommitted pages ({result.pages} pages, figures from "
            f"commit {result.commit[:12]}) in {result.out}; not for publication"
        )
    else:
        click.echo(f"Built {result.pages} pages from commit {result.commit[:12]} in {result.out}")


def echo_wrapped(text: str, *, indent: int) -> None:
    """``text`` in lines of at most WORKFLOW_WIDTH columns, broken between words only,
    the lines after the first indented by ``indent``."""
    click.echo(
        textwrap.fill(
            text,
            WORKFLOW_WIDTH,
            subsequent_indent=" " * indent,
            break_on_hyphens=False,
            break_long_words=False,
        )
    )


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table: stable for scripts and golden tests, fine in a terminal."""
    print_columns(
        headers,
        [[str(value) for value in column] for column in zip(*rows, strict=True)]
        or [[] for _ in headers],
    )


def print_columns(headers: Sequence[str], columns: Sequence[Sequence[str]]) -> None:
    """`print_table`, given its columns of strings: a programme lists 100,000 cases, and a
    column at a time costs a fraction of a row at a time."""
    widths = [
        max(len(header), max(map(len, column), default=0))
        for header, column in zip(headers, columns, strict=True)
    ]
    # printf-style and one write. The last column is not padded, so only an empty value
    # or one ending in a space there leaves spaces at the end of a line.
    line = "  ".join([*(f"%-{w}s" for w in widths[:-1]), "%s"])
    rows = itertools.chain([tuple(headers)], zip(*columns, strict=True))
    text = "\n".join(map(line.__mod__, rows))
    if any(not value or value[-1] == " " for value in {headers[-1], *columns[-1]}):
        text = "\n".join(map(str.rstrip, text.split("\n")))
    click.echo(text)


@cli.command()
@click.argument("case_ids", metavar="[ID]...", nargs=-1)
@json_option
@pass_state
def validate(state: State, case_ids: Sequence[str], as_json: bool) -> None:
    """Check records: format, schema, integrity; decrypts where your identity allows.

    Without IDs every case at HEAD is checked. Exit 3 if any record is invalid. A record
    the registry seals for you that your key cannot open was sealed without you outside
    cmgit: it is named as a tamper alarm, with the commit that sealed it.

    \b
    Example:
      cmgit validate CP-7K2M9QX4
    """
    for case_id in case_ids:
        ids.check_case_id(case_id)
    repo = state.repo()
    results = repo.validate(
        state.optional_identities(), list(case_ids), progress=_progress_printer(quiet=as_json)
    )
    bad = [r for r in results if not r.ok]
    alarms = [r for r in bad if r.sealed_without_you_by]
    if as_json:
        emit(
            [
                {
                    "case_id": r.case_id,
                    "ok": r.ok,
                    "opened": r.opened,
                    "problem": r.problem,
                    "sealed_without_you_by": r.sealed_without_you_by,
                }
                for r in results
            ],
            True,
        )
    else:
        for r in results:
            if r.ok:
                click.echo(f"{r.case_id}  ok{'' if r.opened else ' (open fields only)'}")
            elif r.sealed_without_you_by:
                click.echo(
                    f"{r.case_id}  TAMPER ALARM  sealed without your key by commit "
                    f"{r.sealed_without_you_by} (see cmgit log {r.case_id} and cmgit audit)"
                )
            else:
                click.echo(f"{r.case_id}  INVALID  {r.problem}")
        summary = f"{len(results) - len(bad)} valid, {len(bad)} invalid"
        if alarms:
            summary += f", {len(alarms)} sealed without you: tamper alarm"
        click.echo(summary, err=True)
    if bad:
        raise click.exceptions.Exit(max(r.exit_code for r in bad))


@cli.command()
@click.argument("directory", metavar="[DIR]", required=False)
@click.option("--cases", default=300, show_default=True, help="How many cases to make.")
@click.option("--seed", default=7, show_default=True, help="Random seed, for the same demo twice.")
def demo(directory: str | None, cases: int, seed: int) -> None:
    """Build a synthetic programme: staff, keys, cases; then print a short tour.

    The case repository and the staff identity files are made side by side in DIR
    (default: a new folder named cmgit-demo-N); identities never go in the repository.

    \b
    Example:
      cmgit demo ./demo && cd ./demo/cases && cmgit log --help
    """
    from . import demo as demo_module

    target = Path(directory) if directory else demo_module.free_folder(Path.cwd())
    from .progress import Progress

    watched = sys.stderr.isatty()
    progress = Progress(enabled=watched, lines=not watched)
    tour = demo_module.build(target, cases=cases, seed=seed, today=today(), progress=progress)
    click.echo(tour)


@cli.group(cls=CmgitGroup)
def referral() -> None:
    """Referral and transfer packages for other agencies, and the service directory.

    A package is one age file sealed to a provider of providers.yaml, holding only the
    forms the consent and the referral (or transfer) cover.

    \b
    Example:
      cmgit referral pack CP-7K2M9QX4 referral-3M8QK2ZD -o ~/outbox/package.age
      cmgit referral receive package.age -i agency-identity.txt
    """


@referral.command("providers")
@json_option
@pass_state
def referral_providers(state: State, as_json: bool) -> None:
    """List the service directory (providers.yaml as committed).

    \b
    Example:
      cmgit referral providers --json
    """
    today_ = today()
    rows = [
        {
            "code": p.code,
            "name": p.name,
            "area": p.area,
            "services": list(p.services),
            "agreement_in_force": p.agreement_holds(today_),
            "takes_packages": p.recipient is not None and p.agreement_holds(today_),
        }
        for p in state.repo().providers().values()
    ]
    if as_json:
        emit(rows, True)
        return
    if not rows:
        click.echo("no providers in the service directory (providers.yaml)")
    for row in rows:
        agreement = "agreement in force" if row["agreement_in_force"] else "no agreement"
        click.echo(f"{row['code']}  {row['name']} ({row['area']}): {agreement}")


@referral.command("pack")
@click.argument("case_id", metavar="ID")
@click.argument("item", metavar="ITEM")
@click.option(
    "-o", "output", metavar="FILE", required=True, help="The package to write (a new file)."
)
@pass_state
def referral_pack(state: State, case_id: str, item: str, output: str) -> None:
    """Write the package of a referral (its referral id) or of the case's transfer (its
    transfer id, or the word transfer), sealed to the provider, and record the disclosure.

    Only the forms the referral's information_shared (or the transfer's
    records_transferred) cover go in, with granted consent named by its consent_ref.

    \b
    Example:
      cmgit referral pack CP-7K2M9QX4 referral-3M8QK2ZD -o ~/outbox/package.age
    """
    ids.check_case_id(case_id)
    packed = state.repo().pack(state.identities(), case_id, item, Path(output), today=today())
    click.echo(
        f"{case_id}: {packed.kind} package {packed.package_id} written to {output} "
        f"({len(packed.sections)} section(s)); ask the provider for its receipt code"
    )


@referral.command("receive")
@click.argument("package_file", metavar="FILE")
@click.option(
    "-i",
    "--agency-identity",
    "agency_identity",
    metavar="PATH",
    required=True,
    help="The age identity of the agency the package was sent to.",
)
@click.option("--caseworker", metavar="ID", help="Transfer: the key caseworker of the new case.")
@click.option("--show", is_flag=True, help="Referral: print the sections received.")
@json_option
@pass_state
def referral_receive(
    state: State,
    package_file: str,
    agency_identity: str,
    caseworker: str | None,
    show: bool,
    as_json: bool,
) -> None:
    """Open a package sent to this agency. A referral gives the receipt code to tell the
    sender; a transfer becomes a new case of this programme (fresh consent still needed).

    \b
    Example:
      cmgit referral receive package.age -i agency-identity.txt --show
      cmgit referral receive package.age -i agency-identity.txt --caseworker cw-014
    """
    from .packages import TRANSFER
    from .store import load_identities
    from .store.referral import open_package

    package = open_package(Path(package_file), load_identities(agency_identity))
    case_id = None
    if package.kind == TRANSFER:
        repo = state.repo()
        case_id = repo.receive_transfer(
            state.identities(), package, today=today(), caseworker=caseworker
        )
    result: dict[str, Any] = {
        "package_id": package.package_id,
        "kind": package.kind,
        "sections": list(package.sections),
        "receipt_code": package.receipt_code,
        "case_id": case_id,
    }
    if show:
        result["content"] = package.sections
    if as_json:
        emit(result, True)
        return
    if case_id:
        click.echo(f"{package.package_id}: transfer received as case {case_id}")
    click.echo(f"{package.package_id}: receipt code {package.receipt_code}")
    if show:
        emit(package.sections, False)


def _progress_printer(quiet: bool = False) -> Progress:
    """Bars on stderr only for a person watching: not in pipes, not with --json."""
    from .progress import Progress

    return Progress(enabled=sys.stderr.isatty() and not quiet)


def main() -> NoReturn:
    # A command is a short-lived process that frees what it made by reference counting:
    # the cycle collector's passes over the hundreds of thousands of objects of a bulk
    # read cost more than the reading (a third of a first `stats` of 100,000 cases).
    gc.disable()
    try:
        cli(prog_name="cmgit")  # it ends by raising SystemExit
    except SystemExit as stop:
        code = stop.code
    else:
        code = 0
    if not isinstance(code, int):
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    # Leave at once: tearing the interpreter down (every module, every object) costs a
    # quick command a tenth of its time. All output is flushed first, and nothing cmgit
    # holds needs a finaliser: files are closed by `with`, children end at the pipe's EOF.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader left (`cmgit list | head`): nothing to tell it
        pass
    os._exit(code)


if __name__ == "__main__":  # the hooks run `python -m cmgit.cli`
    main()
