"""The private editor session of ``cmgit edit``.

The only place plaintext of a sealed block touches a disk (SPEC section 8): a file of
mode 0600 on a memory file system where there is one, removed on every way out,
including Ctrl-C and termination signals.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from .errors import UsageError

MEMORY_FS = Path("/dev/shm")  # noqa: S108 - files inside are made by mkstemp, mode 0600
PREFIX = "cmgit-edit-"


def private_folder() -> Path:
    """The memory file system when it is there and writable: no plaintext on a real disk."""
    if MEMORY_FS.is_dir() and os.access(MEMORY_FS, os.W_OK):
        return MEMORY_FS
    return Path(tempfile.gettempdir())


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
    # The process id in the name tells `recover` whether the session is still alive.
    fd, name = tempfile.mkstemp(
        prefix=f"{PREFIX}{os.getpid()}-", suffix=".yaml", dir=private_folder()
    )
    path = Path(name)
    try:
        with _signals_raise():
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            proc = subprocess.run([*argv, str(path)], check=False)
            if proc.returncode != 0:
                return None
            return path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return "\ufffd"  # not UTF-8: the loader refuses it with a clear message
    except _Terminated:
        return None
    finally:
        _shred(path)
        for extra in leftovers(path):
            _shred(extra)


def _session_alive(name: str) -> bool:
    """Whether the `cmgit edit` that made the file NAME is still running."""
    pid = name[len(PREFIX) :].split("-", 1)[0]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive
    return True


def recover_private_files() -> list[Path]:
    """Remove what a killed ``cmgit edit`` left behind: its edit file and the editor's
    swap, backup and lock files beside it. A session still running keeps its files."""
    removed = []
    folder = private_folder()
    for path in sorted(folder.iterdir()):
        # leftovers() names: NAME~, .NAME.swp, .NAME.swo, .#NAME, #NAME#
        main = path.name.lstrip(".#").rstrip("~#")
        for suffix in (".swp", ".swo"):
            main = main.removesuffix(suffix)
        if not main.startswith(PREFIX) or _session_alive(main):
            continue
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink() and path.stat().st_uid == os.getuid():
                _shred(path)
                removed.append(path)
    return removed
