# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One writer per repository.

configure (and migrate, rotate, the ESO GitOps writer) hold an exclusive lock on the repository while
they plan and write, so two runs on one repository never interleave their writes: the second waits
(bounded, ``timeout``) and then fails saying who holds it. The lock is ``flock`` on the repository's
folder itself, so no lock file appears in the repository and a killed run releases it with its
process. Who holds it (pid, what, since when; no secret) is noted in a private file in the user's
cache folder, for the message of the run that waits.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import private_dir

DEFAULT_TIMEOUT = 120.0
POLL_SECONDS = 0.2


class LockError(Exception):
    """Another run holds the repository."""


def _holder_file(root: Path, environ: Mapping[str, str] | None) -> Path:
    env = environ if environ is not None else os.environ
    base = Path(env.get("XDG_CACHE_HOME") or Path(env.get("HOME") or Path.home()) / ".cache") / "cluster.secrets" / "locks"
    return base / (hashlib.sha256(str(root).encode()).hexdigest()[:32] + ".holder")


def _read_holder(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "another run"
    except (OSError, UnicodeDecodeError):
        return "another run (who, is not recorded where this user can read it)"


@contextlib.contextmanager
def repository_lock(root: Path, what: str, timeout: float = DEFAULT_TIMEOUT,
                    environ: Mapping[str, str] | None = None) -> Iterator[None]:
    """Hold the repository for ``what`` (e.g. "configure"); wait up to ``timeout`` seconds for another holder."""
    root = Path(root).resolve()
    try:
        fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise LockError(f"cannot lock {root} ({exc.strerror or exc.__class__.__name__})") from None
    holder = _holder_file(root, environ)
    try:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockError(
                        f"{root} is being changed by {_read_holder(holder)}; waited {timeout:g} s. Let that run finish "
                        "and run again (or raise the lock timeout); two runs must never write one repository at once"
                    ) from None
                time.sleep(POLL_SECONDS)
        _note_holder(holder, what)
        _die_with_parent()
        yield
    finally:
        os.close(fd)  # releases the lock


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ansible runs each task in a worker in a session of its own, so killing ansible-playbook (Ctrl-C twice, a CI
    timeout) would leave the worker writing, racing the user's next run. Ask Linux to end this process with its parent;
    elsewhere the lock alone keeps the next run waiting until the orphan is done."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return


def _note_holder(path: Path, what: str) -> None:
    since = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    try:
        private_dir(path.parent)
        # Written in place (no temporary to leave behind if this run is killed); a torn note is harmless.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"{what} (pid {os.getpid()} on {socket.gethostname()}, since {since})\n")
    except OSError:
        pass  # the note only improves the message of a run that waits
