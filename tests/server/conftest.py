"""The central repository as offices reach it: Debian's sshd with git-shell, and git's
http-backend behind Debian's nginx and fcgiwrap with basic authentication. Each listens on
loopback on a free port, runs as the test runner from configuration written into the
session's temporary folder (no system configuration is used or changed), and is started
once for the test session and stopped afterwards.

Without the programs the tests skip; with CMGIT_REQUIRE_SERVERS=1 (set by CI, which
installs them) they fail instead.
"""

from __future__ import annotations

import base64
import grp
import hashlib
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

# Read before the hermetic fixture clears the CMGIT_ variables.
REQUIRE_SERVERS = os.environ.get("CMGIT_REQUIRE_SERVERS") == "1"

SSHD = Path("/usr/sbin/sshd")
NGINX = Path("/usr/sbin/nginx")
FCGIWRAP = Path("/usr/sbin/fcgiwrap")
STARTUP = 20.0  # seconds a server may take to accept connections
NO_LOGIN_SHELLS = ("nologin", "false")


@dataclass(frozen=True)
class Central:
    """A server offices push to: where its bare repositories live, how a clone reaches
    one, and the git settings an office's clone keeps for it."""

    transport: str
    root: Path
    base_url: str
    client_config: tuple[str, ...]
    log: Path  # the server's own log, shown when a clone fails (a locked account, say)

    def url(self, repository: Path) -> str:
        return f"{self.base_url}/{repository.relative_to(self.root)}"

    def new_repository(self) -> Path:
        """An empty folder for one test's central repository."""
        return Path(tempfile.mkdtemp(dir=self.root, prefix="central-", suffix=".git"))


def unavailable(reason: str) -> NoReturn:
    if REQUIRE_SERVERS:
        pytest.fail(f"{reason} (CMGIT_REQUIRE_SERVERS=1 requires it)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def accepts(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    return ready


def started(command: list[str], ready: Callable[[], bool], log: Path) -> subprocess.Popen[bytes]:
    """Run a server in the foreground, in a process group of its own (stopped whole,
    with the children it forks), and wait until it is ready."""
    with log.open("ab") as errors:
        server = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,
        )
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline and server.poll() is None:
        if ready():
            return server
        time.sleep(0.05)
    stop(server)
    pytest.fail(f"{command[0]} did not start:\n{log.read_text(errors='replace')}")


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@pytest.fixture(scope="session")
def server_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Configuration, keys, logs and repositories of the session's servers."""
    return tmp_path_factory.mktemp("servers")


def _folder(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir()
    return path


def _keypair(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


@pytest.fixture(scope="session")
def ssh_central(server_folder: Path) -> Iterator[Central]:
    """sshd on loopback. The office's key may run git-shell only, as on a central server
    where offices log in to push and fetch and do nothing else."""
    git_shell = shutil.which("git-shell")
    if not SSHD.exists() or git_shell is None or shutil.which("ssh") is None:
        unavailable(f"SSH transport tests need {SSHD}, ssh and git-shell (openssh-server)")
    assert git_shell is not None
    login = pwd.getpwuid(os.getuid())
    if Path(login.pw_shell).name in NO_LOGIN_SHELLS:
        unavailable(f"sshd runs git-shell through the login shell, and {login.pw_shell} runs none")
    folder = _folder(server_folder, "ssh")
    home = _folder(folder, "home")
    repositories = _folder(folder, "repositories")
    host_public = _keypair(folder / "host_key")
    office_public = _keypair(folder / "office_key")
    port = free_port()
    restrictions = "no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty"
    forced = f'command="{git_shell} -c \\"$SSH_ORIGINAL_COMMAND\\"",{restrictions}'
    (folder / "authorized_keys").write_text(f"{forced} {office_public}\n")
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_public}\n")
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"Port {port}",
                f"HostKey {folder / 'host_key'}",
                f"AuthorizedKeysFile {folder / 'authorized_keys'}",
                f"PidFile {folder / 'sshd.pid'}",
                f"AllowUsers {login.pw_name}",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "StrictModes no",
                "UsePAM no",
                # git run by git-shell reads neither the system's nor the user's git config
                f"SetEnv GIT_CONFIG_NOSYSTEM=1 HOME={home}",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        # sshd started as root separates privileges into this empty folder; Debian's
        # service makes it at boot, and a test machine may not have booted one.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = folder / "sshd.log"
    server = started([str(SSHD), "-D", "-f", str(config), "-E", str(log)], accepts(port), log)
    ssh = [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        str(folder / "office_key"),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={folder / 'known_hosts'}",
    ]
    try:
        yield Central(
            "ssh",
            repositories,
            f"ssh://{login.pw_name}@127.0.0.1:{port}{repositories}",
            (f"core.sshCommand={shlex.join(ssh)}",),
            log,
        )
    finally:
        stop(server)


NGINX_CONFIG = """\
daemon off;
{user}
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
worker_processes 2;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    fastcgi_temp_path {folder}/fastcgi;
    proxy_temp_path {folder}/proxy;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{port};
        # Case records are sealed, but a clone is still nobody's business but the staff's:
        # every request authenticates, and git http-backend takes a push from a known user.
        location ~ ^/git(/.*)$ {{
            auth_basic "case records";
            auth_basic_user_file {folder}/htpasswd;
            client_max_body_size 0;
            fastcgi_pass unix:{folder}/fcgiwrap.sock;
            fastcgi_param SCRIPT_FILENAME {backend};
            fastcgi_param PATH_INFO $1;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param REMOTE_USER $remote_user;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param GIT_PROJECT_ROOT {repositories};
            fastcgi_param GIT_HTTP_EXPORT_ALL "";
            fastcgi_param GIT_CONFIG_NOSYSTEM 1;
            fastcgi_param HOME {home};
        }}
    }}
}}
"""


def _password_line(user: str, password: str) -> str:
    """An htpasswd line in the salted SHA-1 form nginx reads ({SSHA})."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return f"{user}:{{SSHA}}{base64.b64encode(digest + salt).decode()}\n"


@pytest.fixture(scope="session")
def http_central(server_folder: Path) -> Iterator[Central]:
    """git http-backend behind nginx on loopback, every request with a password. git runs
    under fcgiwrap as the user who owns the repositories, here the test runner, who may be
    root: Apache's CGI would run as www-data, which cannot run a cmgit installed for root."""
    exec_path = subprocess.run(
        ["git", "--exec-path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    backend = Path(exec_path) / "git-http-backend"
    if not NGINX.exists() or not FCGIWRAP.exists() or not backend.exists():
        unavailable(f"HTTP transport tests need {NGINX}, {FCGIWRAP} and {backend}")
    login = pwd.getpwuid(os.getuid())
    root = os.geteuid() == 0
    folder = _folder(server_folder, "http")
    home = _folder(folder, "home")
    repositories = _folder(folder, "repositories")
    password = secrets.token_urlsafe(16)
    (folder / "htpasswd").write_text(_password_line("office", password))
    (folder / "htpasswd").chmod(0o644)
    port = free_port()
    config = folder / "nginx.conf"
    config.write_text(
        NGINX_CONFIG.format(
            # Started by root, nginx would serve as nobody, who may not enter the folder.
            user=f"user {login.pw_name} {grp.getgrgid(login.pw_gid).gr_name};" if root else "",
            folder=folder,
            port=port,
            repositories=repositories,
            home=home,
            backend=backend,
        )
    )
    credentials = folder / "credentials"
    credentials.write_text(f"http://office:{password}@127.0.0.1:{port}\n")
    credentials.chmod(0o600)
    socket_path = folder / "fcgiwrap.sock"
    log = folder / "error.log"
    wrapper = started(
        [str(FCGIWRAP), "-s", f"unix:{socket_path}", "-p", str(backend)], socket_path.exists, log
    )
    try:
        web = started(
            [str(NGINX), "-e", str(log), "-p", str(folder), "-c", str(config)], accepts(port), log
        )
        try:
            yield Central(
                "http",
                repositories,
                f"http://127.0.0.1:{port}/git",
                ("credential.helper=", f"credential.helper=store --file={credentials}"),
                log,
            )
        finally:
            stop(web)
    finally:
        stop(wrapper)


@pytest.fixture(params=["ssh", "http"])
def central(request: pytest.FixtureRequest) -> Central:
    """Each transport in turn."""
    server: Central = request.getfixturevalue(f"{request.param}_central")
    return server
