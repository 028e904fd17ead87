"""The private editor session of ``cmgit edit``.

The only place plaintext of a sealed block touches a disk (SPEC section 8): a file of
mode 0600 on a memory file system where there is one, removed on every way out,
including Ctrl-C and termination signals. Only SIGKILL (or a power cut) leaves it: a
hidden owner file beside it names the processes of the session, cmgit's and the
editor's, each with its start time, so that later commands warn about it and
``cmgit recover`` removes it once both are gone, never while an orphaned editor still
has it open, and never mistaking a new process that got the same id for the old one.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from .errors import UsageError

MEMORY_FS = Path("/dev/shm")  # noqa: S108 - files inside are made by mkstemp, mode 0600
PREFIX = "cmgit-edit-"


def private_folder() -> Path:
    """The person's own runtime folder ($XDG_RUNTIME_DIR: a memory file system only they
    can enter), else the shared memory file system, else the temporary folder: no
    plaintext on a real disk where that can be helped."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime) and _private_to_me(Path(runtime)):
        return Path(runtime)
    if MEMORY_FS.is_dir() and os.access(MEMORY_FS, os.W_OK):
        return MEMORY_FS
    return Path(tempfile.gettempdir())


def _private_to_me(folder: Path) -> bool:
    try:
        info = folder.stat()
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and not info.st_mode & 0o077
        and os.access(folder, os.W_OK)
    )


def editor_command() -> list[str]:
    text = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    try:
        argv = shlex.split(text)
    except ValueError:
        raise UsageError("cannot read $EDITOR", hint="set EDITOR to a command, e.g. nano") from None
    if not argv:
        raise UsageError("$EDITOR is empty", hint="set EDITOR to a command, e.g. nano")
    return argv


class _Terminated(BaseException):
    """Raised from a signal handler so that cleanup code runs."""


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Terminated(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def leftovers(path: Path) -> list[Path]:
    """Files editors leave beside the one they edit (backups, swap files)."""
    name = path.name
    return [
        path.with_name(name + "~"),
        path.with_name(f".{name}.swp"),
        path.with_name(f".{name}.swo"),
        path.with_name(f".#{name}"),
        path.with_name(f"#{name}#"),
    ]


def _shred(path: Path) -> None:
    with contextlib.suppress(OSError):
        size = path.stat().st_size
        with open(path, "r+b") as handle:
            handle.write(b"\0" * size)
            handle.flush()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def run_editor(text: str) -> str | None:
    """Open ``text`` in the person's editor; the edited text, or None if they gave up
    (the editor failed or was interrupted)."""
    argv = editor_command()
    fd, name = tempfile.mkstemp(
        prefix=f"{PREFIX}{os.getpid()}-", suffix=".yaml", dir=private_folder()
    )
    path = Path(name)
    try:
        with _signals_raise():
            _note_process(path, os.getpid())  # before any plaintext is written
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            editor = subprocess.Popen([*argv, str(path)])
            try:
                _note_process(path, editor.pid)
                returncode = editor.wait()
            except BaseException:
                editor.kill()  # as subprocess.run does: no editor outlives its session
                editor.wait()
                raise
            if returncode != 0:
                return None
            return path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return "\ufffd"  # not UTF-8: the loader refuses it with a clear message
    except _Terminated:
        return None
    finally:
        _shred(path)
        for extra in [*leftovers(path), _owner_file(path)]:
            _shred(extra)


def _owner_file(path: Path) -> Path:
    """Beside the edit file: one line "PID START" for each process of the session."""
    return path.with_name(f".{path.name}.owner")


def _note_process(path: Path, pid: int) -> None:
    start = _start_time(pid)
    with open(_owner_file(path), "a", encoding="ascii", opener=_private_opener) as handle:
        handle.write(f"{pid} {start or '-'}\n")


def _private_opener(name: str, flags: int) -> int:
    return os.open(name, flags | os.O_NOFOLLOW, 0o600)


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks after boot, from /proc), or None if it is
    not running (gone, or a zombie). "-" where the system has no /proc: only its id."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except OSError:
            pass  # someone else's process: running
        return "-"
    except OSError:
        return None
    # The name in brackets may hold spaces: the fields that follow it are counted from
    # its end. They start with the state (field 3); the start time is field 22.
    fields = stat_line.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _running(noted: str) -> bool:
    """Whether the process of one owner-file line is still the one that was noted."""
    pid, _, start = noted.partition(" ")
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    now = _start_time(int(pid))
    return now is not None and (now == start or "-" in (now, start))


@dataclass(frozen=True)
class Leftover:
    """An edit file whose `cmgit edit` is gone (killed), with every file beside it."""

    path: Path
    files: tuple[Path, ...]
    editor_running: bool


def _sessions() -> dict[Path, list[Path]]:
    """Every edit file of this user in the private folder, with the files beside it."""
    folder = private_folder()
    found: dict[Path, list[Path]] = {}
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            # leftovers() names: NAME~, .NAME.swp, .NAME.swo, .#NAME, #NAME#; .NAME.owner
            main = path.name.lstrip(".#").rstrip("~#")
            for suffix in (".swp", ".swo", ".owner"):
                main = main.removesuffix(suffix)
            if not main.startswith(PREFIX):
                continue
            with contextlib.suppress(OSError):
                info = path.lstat()
                if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid():
                    found.setdefault(folder / main, []).append(path)
    return found


def leftover_edits() -> list[Leftover]:
    """The edit files that a killed `cmgit edit` left, each with whether the editor it
    started is still running; a session whose cmgit is running is none of them."""
    found = []
    for path, files in sorted(_sessions().items()):
        try:
            noted = _owner_file(path).read_text(encoding="ascii").splitlines()
        except (OSError, UnicodeDecodeError):
            # Made before the owner file was written (or by an older cmgit): the
            # process id in the name is cmgit's.
            noted = [path.name[len(PREFIX) :].split("-", 1)[0] + " -"]
        if noted and _running(noted[0]):
            continue
        editor_running = any(map(_running, noted[1:]))
        found.append(Leftover(path, tuple(sorted(files)), editor_running))
    return found


def recover_private_files() -> tuple[list[Path], list[Path]]:
    """Remove what a killed ``cmgit edit`` left behind: its edit file and the editor's
    swap, backup and lock files beside it, once its editor is gone too. The edit files
    removed, and those kept because their editor still runs."""
    removed, kept = [], []
    for leftover in leftover_edits():
        if leftover.editor_running:
            kept.append(leftover.path)
            continue
        for path in leftover.files:
            _shred(path)
        removed.append(leftover.path)
    return removed, kept
