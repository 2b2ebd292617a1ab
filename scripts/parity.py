# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`python scripts/parity.py REPO`: check once that configure renders what makejinja renders.

REPO is copied twice into a private temporary folder that is always removed: the real makejinja
renders one copy (as the Taskfile did), `ansible-playbook cluster.secrets.configure` the other, and
the two trees are compared file by file. Secret files configure encrypted are decrypted by the real
sops into memory (pipes only, never disk) and compared with makejinja's plaintext. The output names
files, categories and YAML key paths, never a value.

Exit status: 0 when the contents are the same, 1 when they differ, 2 when the check could not be made.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

try:
    from ansible_collections.cluster.secrets.plugins.plugin_utils._credential_dates import DATES_FILE
    from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import (
        SECRET_FILE_PATTERN,
        SOPS_CONFIG_NAMES,
        encrypted_metadata,
        sops_format,
    )
except ImportError:  # a Python that does not know the collection
    sys.exit("parity: run this with the collection's venv: .venv/bin/python scripts/parity.py REPO")

IGNORED_NAMES = frozenset({".git", ".venv", "__pycache__", ".secrets-backup"})
# What configure keeps beside what it renders (when each secret value changed): no output of makejinja's.
IGNORED_PATHS = frozenset({DATES_FILE})
SECRET_NAME = re.compile(SECRET_FILE_PATTERN)
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
LAST_LINES = 15

IDENTICAL = "identical"
SECRET_IDENTICAL = "identical-decrypted"  # noqa: S105 - a status name, not a password
DIFFERENT = "different"
ONLY_MAKEJINJA = "only-in-makejinja"
ONLY_CONFIGURE = "only-in-configure"

Decrypt = Callable[[Path, str], bytes]


class ParityError(Exception):
    """An expected failure: the message tells the user what is wrong and what to do; exit status 2."""


class SideFailed(ParityError):
    """makejinja or configure did not run to the end (``--keep-going`` compares anyway)."""


class DecryptError(Exception):
    """sops could not decrypt a file; the message is sops' own diagnosis, never plaintext."""


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class Entry:
    path: str
    status: str
    detail: str = ""
    complete: bool = True  # False when the file could not be decrypted
    rendered: bool = True  # False for a file of the repository that makejinja left as it was


@dataclass
class ModeDifference:
    path: str
    makejinja: str
    configure: str


@dataclass
class Comparison:
    entries: list[Entry] = field(default_factory=list)
    modes: list[ModeDifference] = field(default_factory=list)

    def count(self, *statuses: str) -> int:
        return sum(1 for entry in self.entries if entry.status in statuses)

    @property
    def same(self) -> bool:
        """Every file's content matches; mode differences are reported but do not count."""
        return self.count(IDENTICAL, SECRET_IDENTICAL) == len(self.entries)

    @property
    def complete(self) -> bool:
        return all(entry.complete for entry in self.entries)

    def summary(self) -> str:
        rendered = sum(1 for entry in self.entries if entry.rendered)
        return (f"compared {len(self.entries)} files ({rendered} rendered by makejinja): {self.count(IDENTICAL, SECRET_IDENTICAL)} identical "
                f"({self.count(SECRET_IDENTICAL)} secrets identical after decryption), {self.count(DIFFERENT)} different, "
                f"{self.count(ONLY_MAKEJINJA)} only in makejinja, {self.count(ONLY_CONFIGURE)} only in configure, "
                f"{len(self.modes)} mode differences")

    def lines(self) -> list[str]:
        lines = [f"{e.status:<18} {e.path}" + (f"  ({e.detail})" if e.detail else "")
                 for e in self.entries if e.status not in (IDENTICAL, SECRET_IDENTICAL)]
        return lines + [f"{'mode differs':<18} {m.path}  (makejinja {m.makejinja}, configure {m.configure})" for m in self.modes]

    def as_dict(self) -> dict[str, Any]:
        return {
            "compared": len(self.entries), "rendered": sum(1 for entry in self.entries if entry.rendered), "identical": self.count(IDENTICAL, SECRET_IDENTICAL),
            "secrets_identical": self.count(SECRET_IDENTICAL), "different": self.count(DIFFERENT),
            "only_in_makejinja": self.count(ONLY_MAKEJINJA), "only_in_configure": self.count(ONLY_CONFIGURE),
            "mode_differences": len(self.modes), "same": self.same,
            "files": [{"path": e.path, "status": e.status, "detail": e.detail} for e in self.entries],
            "modes": [asdict(m) for m in self.modes],
        }


# ---- comparing two trees -------------------------------------------------------------------------

def tree_entries(root: Path) -> dict[str, Path]:
    """Files and symlinks under root by relative POSIX path, leaving out IGNORED_NAMES at any depth and IGNORED_PATHS."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        links = [name for name in dirnames if (base / name).is_symlink()]
        dirnames[:] = [name for name in dirnames if name not in IGNORED_NAMES and name not in links]
        for name in filenames + links:
            rel = (base / name).relative_to(root).as_posix()
            if name not in IGNORED_NAMES and rel not in IGNORED_PATHS:
                found[rel] = base / name
    return found


def read_entry(path: Path) -> tuple[str, bytes]:
    """("link", target) for a symlink, ("file", content) otherwise."""
    if path.is_symlink():
        return "link", os.fsencode(os.readlink(path))
    return "file", path.read_bytes()


def is_encrypted(content: bytes, fmt: str) -> bool:
    return encrypted_metadata(content, fmt) is not None


def is_secret_name(rel: str) -> bool:
    return Path(rel).name not in SOPS_CONFIG_NAMES and SECRET_NAME.search(rel) is not None


def parse_data(content: bytes, fmt: str) -> Any:
    """YAML (every document) or JSON data; ValueError when the text does not parse."""
    try:
        if fmt == "json":
            return json.loads(content)
        return list(yaml.load_all(content, Loader=_SAFE_LOADER))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from None


def format_key_path(path: tuple[Any, ...]) -> str:
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
    return text or "(top level)"


def first_data_difference(left: Any, right: Any, path: tuple[Any, ...] = ()) -> str | None:
    """Where two parsed documents first differ, as 'key.path: reason'; None when equal. Never a value."""
    if isinstance(left, dict) and isinstance(right, dict):
        for key in [*left, *(k for k in right if k not in left)]:
            if key not in right or key not in left:
                return f"{format_key_path((*path, key))}: only in {'makejinja' if key in left else 'configure'}"
            found = first_data_difference(left[key], right[key], (*path, key))
            if found:
                return found
        return None
    if isinstance(left, list) and isinstance(right, list):
        for index, (one, other) in enumerate(zip(left, right, strict=False)):
            found = first_data_difference(one, other, (*path, index))
            if found:
                return found
        return None if len(left) == len(right) else f"{format_key_path(path)}: list lengths differ"
    if type(left) is not type(right):
        return f"{format_key_path(path)}: types differ"
    return None if left == right else f"{format_key_path(path)}: value differs"


def first_line_difference(left: bytes, right: bytes) -> str:
    try:
        one, other = left.decode("utf-8").splitlines(keepends=True), right.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return "bytes differ"
    line = next((n for n, (a, b) in enumerate(zip(one, other, strict=False), 1) if a != b), min(len(one), len(other)) + 1)
    return f"first difference at line {line}"


def content_difference(left: bytes, right: bytes, fmt: str) -> str | None:
    """None when equal (as data for YAML and JSON, as bytes otherwise), else where they first differ."""
    if fmt in ("yaml", "json"):
        try:
            data_left, data_right = parse_data(left, fmt), parse_data(right, fmt)
        except ValueError:
            pass
        else:
            if fmt == "yaml" and len(data_left) == len(data_right) == 1:
                data_left, data_right = data_left[0], data_right[0]
            return first_data_difference(data_left, data_right)
    return None if left == right else first_line_difference(left, right)


def compare_secret(rel: str, left: bytes, right: bytes, b_path: Path, a_path: Path, decrypt: Decrypt) -> Entry:
    """configure's file is encrypted: compare what it decrypts to with makejinja's (decrypted too if encrypted)."""
    fmt = sops_format(rel)
    try:
        plain_right = decrypt(b_path, fmt)
        plain_left = decrypt(a_path, fmt) if is_encrypted(left, fmt) else left
    except DecryptError as exc:
        return Entry(rel, DIFFERENT, f"cannot decrypt: {exc}", complete=False)
    difference = content_difference(plain_left, plain_right, fmt)
    return Entry(rel, SECRET_IDENTICAL) if difference is None else Entry(rel, DIFFERENT, f"after decryption: {difference}")


def compare_file(rel: str, a_path: Path, b_path: Path, decrypt: Decrypt, rendered: bool) -> Entry:
    (left_kind, left), (right_kind, right) = read_entry(a_path), read_entry(b_path)
    if left_kind != right_kind:
        return Entry(rel, DIFFERENT, f"a {left_kind} in makejinja's tree, a {right_kind} in configure's")
    if left_kind == "link":
        return Entry(rel, IDENTICAL if left == right else DIFFERENT, "" if left == right else "symlink targets differ")
    fmt = sops_format(rel)
    if Path(rel).name in SOPS_CONFIG_NAMES and left != right and is_encrypted(right, "yaml"):
        return Entry(rel, DIFFERENT, "configure encrypted it; sops reads it as plain YAML")
    if is_encrypted(right, fmt) and left != right and Path(rel).name not in SOPS_CONFIG_NAMES:
        return compare_secret(rel, left, right, b_path, a_path, decrypt)
    if rendered and is_secret_name(rel) and not is_encrypted(right, fmt):
        difference = None if left == right else content_difference(left, right, fmt)
        return Entry(rel, DIFFERENT, "configure left this secret file unencrypted" + (f"; {difference}" if difference else ""))
    if left == right:
        return Entry(rel, IDENTICAL)
    difference = content_difference(left, right, fmt)
    return Entry(rel, DIFFERENT, difference or f"same {fmt.upper()} data, {first_line_difference(left, right)}")


def rendered_by_makejinja(rel: str, a_path: Path, original: Path | None) -> bool:
    """Whether makejinja produced the file: absent from the original repository, or changed there."""
    if original is None:
        return True
    source = original / rel
    if not (source.is_file() or source.is_symlink()):
        return True
    return read_entry(source) != read_entry(a_path)


def file_mode(path: Path) -> int:
    return path.lstat().st_mode & 0o777


def compare_trees(a: Path, b: Path, decrypt: Decrypt, original: Path | None = None) -> Comparison:
    """Compare makejinja's tree ``a`` with configure's tree ``b``, file by file."""
    left, right = tree_entries(a), tree_entries(b)
    result = Comparison()
    for rel in sorted(set(left) | set(right)):
        if rel not in right:
            result.entries.append(Entry(rel, ONLY_MAKEJINJA))
        elif rel not in left:
            result.entries.append(Entry(rel, ONLY_CONFIGURE))
        else:
            rendered = rendered_by_makejinja(rel, left[rel], original)
            entry = compare_file(rel, left[rel], right[rel], decrypt, rendered)
            entry.rendered = rendered
            result.entries.append(entry)
            if not left[rel].is_symlink() and not right[rel].is_symlink() and file_mode(left[rel]) != file_mode(right[rel]):
                result.modes.append(ModeDifference(rel, f"{file_mode(left[rel]):04o}", f"{file_mode(right[rel]):04o}"))
    return result


def sops_decryptor(binary: str | None, env: Mapping[str, str]) -> Decrypt:
    """Decrypt with the real sops; the plaintext comes back through a pipe and stays in memory."""

    def decrypt(path: Path, fmt: str) -> bytes:
        if binary is None:
            raise DecryptError("no sops binary found (looked next to ansible-playbook and on PATH)")
        result = subprocess.run([binary, "--decrypt", "--input-type", fmt, "--output-type", fmt, str(path)],
                                env=dict(env), stdin=subprocess.DEVNULL, capture_output=True, check=False)
        if result.returncode != 0:
            lines = result.stderr.decode("utf-8", "replace").strip().splitlines() or [f"sops exited with {result.returncode}"]
            raise DecryptError(lines[-1][:200])
        return result.stdout

    return decrypt


# ---- running both sides --------------------------------------------------------------------------

def run(cmd: list[str], cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run cmd in a session of its own, output captured; the whole session is killed if we are interrupted."""
    with subprocess.Popen(cmd, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True) as proc:
        try:
            output = proc.communicate()[0]
        except BaseException:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, output, "")


def last_lines(output: str, count: int = LAST_LINES) -> str:
    return "\n".join("  " + line for line in output.rstrip().splitlines()[-count:])


def makejinja_command(args: argparse.Namespace) -> list[str]:
    if args.makejinja:
        cmd = shlex.split(args.makejinja)
        if not cmd:
            raise ParityError("--makejinja: the command is empty")
        return cmd
    python = args.python or sys.executable
    # makejinja runs inside the copy: a relative path to the interpreter is taken from where parity was started.
    if os.sep in python and not os.path.isabs(python):
        python = os.path.abspath(python)
    return [python, "-m", "makejinja"]


def run_makejinja(args: argparse.Namespace, tree: Path) -> None:
    cmd = makejinja_command(args)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        result = run(cmd, tree, env)
    except OSError as exc:
        raise SideFailed(f"cannot run makejinja ({cmd[0]}: {exc.strerror}); "
                         "pass --python with a Python that has makejinja, or --makejinja CMD") from None
    if result.returncode == 0:
        return
    if not args.makejinja and "No module named makejinja" in result.stdout:
        raise SideFailed(f"makejinja is not installed for {cmd[0]}: install it there (pip install makejinja), "
                         "or pass --python PY / --makejinja CMD")
    raise SideFailed(f"makejinja failed (exit {result.returncode}); its last lines:\n{last_lines(result.stdout)}")


def tools_bin() -> Path:
    """The bin folder of the venv with ansible-playbook: $ANSIBLE_PLAYBOOK's, else this Python's."""
    override = os.environ.get("ANSIBLE_PLAYBOOK")
    return Path(override).parent if override else Path(sys.executable).parent


def ansible_playbook() -> str:
    return os.environ.get("ANSIBLE_PLAYBOOK") or str(tools_bin() / "ansible-playbook")


def find_sops() -> str | None:
    beside = tools_bin() / "sops"
    return str(beside) if beside.is_file() else shutil.which("sops")


def age_key_file(args: argparse.Namespace, tree: Path) -> Path | None:
    if args.age_key:
        key = Path(args.age_key).expanduser().resolve()
        if not key.is_file():
            raise ParityError(f"--age-key {args.age_key}: no such file")
        return key
    key = tree / "age.key"
    return key if key.is_file() else None


def age_env(key: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if key is not None:
        env["SOPS_AGE_KEY_FILE"] = str(key)
    return env


def failure_messages(output: str) -> list[str]:
    """The msg of each failed task, else Ansible's own [ERROR] lines, else the last lines of output."""
    messages = []
    for line in output.splitlines():
        match = re.match(r"^(?:fatal|failed): \[[^\]]*\].*?=> (\{.*\})\s*$", line)
        if match:
            with contextlib.suppress(ValueError):
                msg = json.loads(match.group(1)).get("msg")
                messages += msg if isinstance(msg, list) else [str(msg)] if msg is not None else []
    if not messages:
        messages = [line for line in output.splitlines() if line.startswith(("ERROR!", "[ERROR]"))]
    return messages or [last_lines(output)]


def run_configure(args: argparse.Namespace, tree: Path, key: Path | None) -> None:
    cmd = [ansible_playbook(), "cluster.secrets.configure", "-e", json.dumps({"cluster_root": str(tree)}),
           "-e", "configure_cache=false", *(item for pair in args.extra_vars for item in ("-e", pair))]
    env = {**age_env(key), "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_NOCOLOR": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env["PATH"] = f"{tools_bin()}{os.pathsep}{env.get('PATH', '')}"
    try:
        result = run(cmd, tree, env)
    except OSError as exc:
        raise SideFailed(f"cannot run {cmd[0]} ({exc.strerror}); run this script with the collection's venv python "
                         "or set ANSIBLE_PLAYBOOK") from None
    if result.returncode != 0:
        raise SideFailed(f"configure failed (exit {result.returncode}):\n" + "\n".join("  " + m for m in failure_messages(result.stdout)))


# ---- the private workspace -----------------------------------------------------------------------

def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _set_handlers(handler: Any) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def remove_tree(path: Path) -> None:
    """Remove path even when the copied repository holds read-only folders."""
    with contextlib.suppress(OSError):
        path.chmod(0o700)
    for dirpath, dirnames, _files in os.walk(path):
        for name in dirnames:
            if not (Path(dirpath) / name).is_symlink():
                with contextlib.suppress(OSError):
                    (Path(dirpath) / name).chmod(0o700)
    try:
        shutil.rmtree(path)
    except OSError as exc:
        print(f"parity: could not remove the temporary folder {path}: {exc}", file=sys.stderr)


@contextlib.contextmanager
def private_workspace() -> Iterator[Path]:
    """A 0700 temporary folder, removed at the end, on errors and on SIGINT/SIGTERM alike."""
    previous = _set_handlers(_interrupt)
    path: Path | None = None
    try:
        path = Path(tempfile.mkdtemp(prefix="parity-"))
        yield path
    finally:
        _set_handlers(signal.SIG_IGN)  # a second Ctrl-C must not stop the clean-up half way
        try:
            if path is not None:
                remove_tree(path)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def copy_repository(repo: Path, dest: Path) -> None:
    try:
        shutil.copytree(repo, dest, symlinks=True, ignore=shutil.ignore_patterns(".git", ".venv"))
    except (OSError, shutil.Error) as exc:
        raise ParityError(f"cannot copy {repo}: {exc}") from None


# ---- main ----------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="parity.py", description="Check that cluster.secrets.configure renders what makejinja renders, on copies of REPO.",
        epilog="Exit status: 0 same contents (mode differences are reported only), 1 differences, 2 the check could not be made.")
    parser.add_argument("repo", metavar="REPO", help="the cluster repository (a working tree with makejinja.toml)")
    side_a = parser.add_mutually_exclusive_group()
    side_a.add_argument("--makejinja", metavar="CMD", help='the whole makejinja command, e.g. "uvx makejinja"')
    side_a.add_argument("--python", metavar="PY", help="a Python with makejinja installed (default: this one)")
    parser.add_argument("--age-key", metavar="FILE", help="age key file for configure and decryption (default: REPO/age.key)")
    parser.add_argument("-e", "--extra-vars", action="append", default=[], metavar="KEY=VALUE", help="passed to configure")
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    parser.add_argument("--keep-going", action="store_true", help="compare even when makejinja or configure failed (exit 2)")
    return parser.parse_args(argv)


def report(comparison: Comparison, failures: list[str], as_json: bool) -> None:
    if as_json:
        print(json.dumps({**comparison.as_dict(), "failures": failures}, indent=2))
        return
    print(comparison.summary())
    for line in comparison.lines():
        print("  " + line)


def check(args: argparse.Namespace, repo: Path, work: Path) -> int:
    a, b = work / "a", work / "b"
    copy_repository(repo, a)
    copy_repository(repo, b)
    key = age_key_file(args, b)
    failures: list[str] = []
    for side in (lambda: run_makejinja(args, a), lambda: run_configure(args, b, key)):
        try:
            side()
        except SideFailed as exc:
            if not args.keep_going:
                raise
            failures.append(str(exc))
            print(f"parity: {exc}", file=sys.stderr)
    comparison = compare_trees(a, b, sops_decryptor(find_sops(), age_env(key)), original=repo)
    report(comparison, failures, args.json)
    if failures or not comparison.complete:
        return 2
    return 0 if comparison.same else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repo = Path(args.repo).expanduser().resolve()
    if not repo.is_dir():
        print(f"parity: {args.repo}: no such directory (pass the cluster repository's working tree)", file=sys.stderr)
        return 2
    try:
        with private_workspace() as work:
            return check(args, repo, work)
    except ParityError as exc:
        print(f"parity: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"parity: interrupted ({exc}); the temporary copies were removed", file=sys.stderr)
        return 128 + exc.signum


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `parity.py REPO | head`: the reader has gone; the temporary folder is already removed
        sys.stderr.close()
        sys.exit(1)
