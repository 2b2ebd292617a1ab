# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The adversarial suite: hostile input, generated values, kills at every write, two writers.

Real sops, real age keys, configure's own code path (lock, plan, apply, the action's scrubbed
failure message) in process or in a child process that the test kills.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.cluster.secrets.plugins.plugin_utils._action import failure, user_error_types
from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_key_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._lock import repository_lock
from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import ConfigureOptions, apply, plan
from ansible_collections.cluster.secrets.plugins.plugin_utils._secret_plan import parse_plaintext
from tests.conftest import sops_binary
from tests.integration.adversarial_support import CANARIES, all_cases, demo_repo

CASES = all_cases()


def environ(home: Path) -> dict[str, str]:
    return {"HOME": str(home), "PATH": os.environ.get("PATH", ""), "XDG_CACHE_HOME": str(home / ".cache")}


def configure(root: Path, env: dict[str, str], cache: bool = False, overwrite: bool = False) -> tuple[str | None, str]:
    """(error message or None, warnings): exactly what the render action reports; anything else raises."""
    options = ConfigureOptions(root=root, environ=env, cache=cache, allow_secret_overwrite=overwrite)
    try:
        with repository_lock(root, "configure", 5, environ=env):
            planned = plan(options)
            apply(planned)
    except user_error_types() as exc:
        return failure({}, exc, options)["msg"], ""
    return None, "\n".join(planned.warnings)


def snapshot(root: Path) -> dict[str, object]:
    """Every entry's bytes (regular files) or kind (anything else, never opened)."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            out[str(path.relative_to(root))] = path.read_bytes() if stat.S_ISREG(info.st_mode) else stat.S_IFMT(info.st_mode)
    return out


def decrypt(path: Path, key_file: Path) -> str:
    env = {"SOPS_AGE_KEY_FILE": str(key_file), "PATH": os.environ.get("PATH", "")}
    return subprocess.run([sops_binary(), "decrypt", str(path)], env=env, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, Path]:
    """The demo cluster with canary secrets, configured once (so secret files exist), and its key."""
    work = tmp_path_factory.mktemp("adversarial")
    key = work / "key.txt"
    generate_key_file(key)
    root = demo_repo(work / "base", key)
    error, _warnings = configure(root, environ(work / "home"))
    assert error is None, error
    return root, key


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 80 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_is_refused_clearly_and_changes_nothing(case, base, tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(base[0], root, symlinks=True)
    case.mutate(root)
    before = snapshot(root)
    error, warnings = configure(root, environ(tmp_path / "home"))
    said = (error or "") + warnings
    for canary in CANARIES.values():
        assert canary not in said
        assert canary[:12] not in said
    assert "Traceback" not in said
    if case.expect:
        assert error is not None, f"{case.name}: configure accepted it"
        for words in case.expect:
            assert words in error, f"{case.name}: {words!r} not in {error!r}"
        assert snapshot(root) == before
    elif error is None:  # accepted: then no canary may sit in a plain file
        for path in root.rglob("*"):
            if path.is_file() and ".sops." not in path.name and path.name not in ("cluster.yaml", "age.key"):
                assert not any(c.encode() in path.read_bytes() for c in CANARIES.values()), path


VALUE_KEYS = [f"hyp_secret_{i}" for i in range(10)]
VALUES = st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)


@pytest.fixture(scope="module")
def value_repo(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    work = tmp_path_factory.mktemp("values")
    key = work / "key.txt"
    generate_key_file(key)
    root = demo_repo(work / "repo", key)
    template = "---\n" + "".join(f"{k}: #{{ {k} | yaml_quote }}#\n" for k in VALUE_KEYS)
    (root / "templates/values").mkdir(parents=True)
    (root / "templates/values/values.sops.yaml.j2").write_text(template)
    return root, key, environ(work / "home")


@settings(max_examples=int(os.environ.get("ADVERSARIAL_EXAMPLES", "32")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(VALUES, min_size=10, max_size=10))
def test_generated_values_round_trip_byte_exact(value_repo, values):
    root, key, env = value_repo
    cluster = root / "cluster.yaml"
    text = cluster.read_text().split("# generated\n")[0]
    cluster.write_text(text + "# generated\n" + "".join(f"{k}: {_yaml_literal(v)}\n" for k, v in zip(VALUE_KEYS, values, strict=True)))
    # Each example replaces the last one's values: a real value becoming whitespace is the guard's to stop (tested on
    # its own), not this round trip's.
    error, _warnings = configure(root, env, overwrite=True)
    assert error is None, error
    # sops writes a value `=` unquoted (YAML 1.1's value tag): read it as the text it is, as configure does.
    [decrypted] = parse_plaintext(decrypt(root / "values/values.sops.yaml", key), "yaml")
    assert [decrypted[k] for k in VALUE_KEYS] == values
    # And the rerun with the same values writes nothing.
    before = snapshot(root)
    assert configure(root, env, overwrite=True)[0] is None and snapshot(root) == before


def _yaml_literal(value: str) -> str:
    return yaml.safe_dump(value, allow_unicode=False, default_style='"', width=1_000_000).rstrip("\n").removesuffix("\n...")


KILL_DRIVER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from ansible_collections.cluster.secrets.plugins.plugin_utils import _fileio
    from ansible_collections.cluster.secrets.plugins.plugin_utils._lock import repository_lock
    from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import ConfigureOptions, apply, plan
    point, at = sys.argv[2], int(sys.argv[3])
    counter = {"n": 0}
    real = getattr(_fileio.os, point)
    def deadly(*args, **kwargs):
        counter["n"] += 1
        if counter["n"] == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    setattr(_fileio.os, point, deadly)   # injected by the test: the product has no hook
    root = Path(sys.argv[1])
    with repository_lock(root, "configure", 30):
        apply(plan(ConfigureOptions(root=root, cache=False)))
    print("finished", counter["n"])
""")


def _change_everything(root: Path, generation: int) -> None:
    cluster = root / "cluster.yaml"
    text = cluster.read_text()
    for key in CANARIES:
        text = "\n".join(line if not line.startswith(f"{key}:") else f'{key}: "{CANARIES[key]}-gen{generation}"'
                         for line in text.splitlines()) + "\n"
    cluster.write_text(text.replace("hello from cluster.yaml", f"hello, generation {generation}"))


def _kill_run(root: Path, key: Path, point: str, at: int) -> subprocess.CompletedProcess[str]:
    env = {**environ(root.parent / "home"), "SOPS_AGE_KEY_FILE": str(key), "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-c", KILL_DRIVER, str(root), point, str(at)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def _secret_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.sops.*") if p.is_file() and "templates" not in p.parts
            and p.name not in (".sops.yaml", ".sops.yml") and not p.name.endswith(".tmp")]


def _check_consistent(root: Path, key: Path) -> None:
    for path in _secret_files(root):
        decrypt(path, key)  # raises on a half-written or corrupt file
    strays = list(root.rglob("*.tmp"))
    assert strays == [], strays


MANY_FILES = 24


def kill_points(count: int) -> list[tuple[str, int]]:
    """Every rename (the moment a file changes) and every flush (temporaries written, not yet renamed)."""
    return [("replace", n) for n in range(1, count + 1)] + [("fsync", n) for n in range(1, count + 1)]


@pytest.mark.parametrize(("point", "at"), kill_points(int(os.environ.get("ADVERSARIAL_KILLS", "30"))))
def test_a_kill_at_any_write_loses_nothing(base, tmp_path, point, at):
    root = tmp_path / "repo"
    shutil.copytree(base[0], root)
    key = base[1]
    _change_everything(root, 1)
    for index in range(MANY_FILES):  # more files to write, so there are more places to be killed at
        kind = "sops." if index % 2 else ""
        (root / f"templates/many/file-{index:02d}.{kind}yaml.j2").parent.mkdir(exist_ok=True)
        (root / f"templates/many/file-{index:02d}.{kind}yaml.j2").write_text(
            f"n: {index}\ngreeting: #{{ echo_greeting | yaml_quote }}#\n" + ("token: #{ cloudflare_token | yaml_quote }#\n" if kind else ""))
    killed = _kill_run(root, key, point, at)
    if "finished" in killed.stdout:
        pytest.skip(f"this run wrote fewer than {at} times")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    killed_with_temps = bool(list(root.rglob("*.cluster-secrets-*.tmp")))
    for path in _secret_files(root):  # every encrypted file is whole (old or new) even before the rerun
        decrypt(path, key)
    error, warnings = configure(root, environ(tmp_path / "home"))
    assert error is None, error
    _check_consistent(root, key)
    assert "secret.sops.yaml" in str(list(root.rglob("secret.sops.yaml")))
    decrypted = decrypt(root / "kubernetes/apps/default/echo/app/secret.sops.yaml", key)
    assert f"{CANARIES['cloudflare_token']}-gen1" in decrypted
    assert not list(Path(tmp_path).rglob("*.tmp")), "a temporary file survived the next run"
    if killed_with_temps:
        assert "left by an interrupted run" in warnings


TWO_WRITERS = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ansible_collections.cluster.secrets.plugins.plugin_utils._lock import repository_lock
    from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import ConfigureOptions, apply, plan
    root, vars_file, log = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    with repository_lock(root, "configure " + vars_file.name, 120):
        start = time.monotonic_ns()
        apply(plan(ConfigureOptions(root=root, cluster_file=vars_file, cache=False)))
        end = time.monotonic_ns()
    with log.open("a") as handle:
        handle.write(f"{start} {end} {vars_file.name}\\n")
""")


@pytest.mark.parametrize("pair", range(int(os.environ.get("ADVERSARIAL_PAIRS", "3"))))
def test_two_writers_are_serialised(base, tmp_path, pair):
    root = tmp_path / "repo"
    shutil.copytree(base[0], root)
    key = base[1]
    variants = []
    for name in ("a", "b"):
        variant = tmp_path / f"{name}-vars" / "cluster.yaml"
        variant.parent.mkdir()
        shutil.copy(root / "cluster.yaml", variant)
        variant.write_text(variant.read_text().replace(CANARIES["cloudflare_token"], f"{CANARIES['cloudflare_token']}-{name}{pair}")
                           .replace(CANARIES["tfstate_password"], f"{CANARIES['tfstate_password']}-{name}{pair}"))
        variants.append(variant)
    log = tmp_path / "log"
    env = {**environ(tmp_path / "home"), "SOPS_AGE_KEY_FILE": str(key), "PYTHONPATH": os.pathsep.join(sys.path)}
    runs = [subprocess.Popen([sys.executable, "-c", TWO_WRITERS, str(root), str(v), str(log)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for v in variants]
    for run in runs:
        _out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
    spans = sorted(tuple(int(x) for x in line.split()[:2]) for line in log.read_text().splitlines())
    assert len(spans) == 2 and spans[0][1] <= spans[1][0], "the two runs overlapped"
    token = decrypt(root / "kubernetes/apps/default/echo/app/secret.sops.yaml", key)
    infra = decrypt(root / "infrastructure/secrets.sops.yaml", key)
    winner = "a" if f"-a{pair}" in token else "b"
    assert f"{CANARIES['tfstate_password']}-{winner}{pair}" in infra, "files from two different runs were mixed"
