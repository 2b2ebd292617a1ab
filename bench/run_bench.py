# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: configure against the Taskfile baseline, side by side in one run.

It generates a realistic cluster-template style repository (makejinja.toml, #{ }# delimiters,
--apps apps of ten templates each, one of them a SOPS secret) and times, interleaved over
--rounds rounds on fresh copies:

- baseline: `makejinja`, then one `sops --encrypt --in-place` per secret file (what the Taskfile does);
- cold:     `ansible-playbook cluster.secrets.configure` on the same tree, nothing rendered yet;
- rerun:    configure again with nothing changed (it must write 0 files).

It prints the medians, the ratios to the baseline and the number of files each run wrote.
Usage: .venv/bin/python bench/run_bench.py [--apps 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_key_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import default_sops_config, find_sops_binary

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

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


def generate(base: Path, apps: int) -> list[str]:
    """Write the tree; return the secret files' output paths."""
    shutil.copy(ROOT / "examples/demo/nodes.yaml", base / "nodes.yaml")
    cluster = (ROOT / "examples/demo/cluster.yaml").read_text()
    passwords = {f"app{i:02d}": f"pw-{i:02d}-{'x' * 20}" for i in range(apps)}
    cluster += "app_passwords:\n" + "".join(f"  {k}: \"{v}\"\n" for k, v in passwords.items())
    (base / "cluster.yaml").write_text(cluster)
    (base / "makejinja.toml").write_text(MAKEJINJA_TOML)
    recipient = generate_key_file(base / "age.key")
    (base / ".sops.yaml").write_text(default_sops_config([recipient]))
    secrets = []
    for index in range(apps):
        app, namespace = f"app{index:02d}", f"ns{index % 6}"
        for name, body in APP_FILES.items():
            target = base / "templates/config/kubernetes/apps" / namespace / app / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body.format(app=app, ns=namespace))
            if "sops" in name:
                secrets.append(f"kubernetes/apps/{namespace}/{app}/{name[:-3]}")
    return secrets


def snapshot(base: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(base)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in base.rglob("*") if p.is_file() and "templates" not in p.parts}


def written(before: dict[str, tuple[int, bytes]], after: dict[str, tuple[int, bytes]]) -> int:
    return sum(1 for key, value in after.items() if before.get(key) != value)


def env_for(base: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOPS_", "ANSIBLE_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", HOME=str(home), XDG_CACHE_HOME=str(home / "cache"),
               XDG_CONFIG_HOME=str(home / "config"), SOPS_AGE_KEY_FILE=str(base / "age.key"),
               ANSIBLE_LOCALHOST_WARNING="false")
    return env


def run_baseline(base: Path, secrets: list[str], env: dict[str, str], sops: str) -> float:
    start = time.perf_counter()
    subprocess.run([str(BIN / "makejinja")], cwd=base, env=env, check=True, capture_output=True)
    for path in secrets:
        subprocess.run([sops, "--encrypt", "--in-place", path], cwd=base, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def run_configure(base: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([str(BIN / "ansible-playbook"), "cluster.secrets.configure", "-e", f"cluster_root={base}",
                    "-e", "configure_builtin_templates=false"], cwd=base, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=30, help="apps of ten templates, one secret each (default 30)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    sops = find_sops_binary()
    times: dict[str, list[float]] = {"baseline": [], "cold": [], "rerun": []}
    files: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="cluster-secrets-bench-") as tmp:
        template = Path(tmp) / "template"
        template.mkdir()
        secrets = generate(template, args.apps)
        templates = len(list((template / "templates").rglob("*.j2")))
        for round_ in range(args.rounds):
            for kind in ("baseline", "configure"):
                base = Path(tmp) / f"{kind}-{round_}"
                home = Path(tmp) / f"{kind}-{round_}-home"
                shutil.copytree(template, base)
                home.mkdir()
                env = env_for(base, home)
                before = snapshot(base)
                if kind == "baseline":
                    times["baseline"].append(run_baseline(base, secrets, env, sops))
                    files["baseline"] = written(before, snapshot(base))
                else:
                    times["cold"].append(run_configure(base, env))
                    files["cold"] = written(before, snapshot(base))
                    before = snapshot(base)
                    times["rerun"].append(run_configure(base, env))
                    files["rerun"] = written(before, snapshot(base))
    median = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "templates": templates, "secrets": len(secrets), "rounds": args.rounds,
        "seconds": {k: round(v, 3) for k, v in median.items()},
        "ratio_cold": round(median["cold"] / median["baseline"], 2),
        "ratio_rerun": round(median["rerun"] / median["baseline"], 2),
        "files_written": files,
        "targets": {"cold": "<= 1.0", "rerun": "<= 0.5 with 0 files written"},
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"tree: {templates} templates, {len(secrets)} secrets; medians of {args.rounds} rounds")
        print(f"baseline (makejinja + sops --encrypt --in-place per secret): {median['baseline']:.2f}s, "
              f"{files['baseline']} files written")
        print(f"configure, cold:      {median['cold']:.2f}s  ratio {result['ratio_cold']:.2f}x (target <= 1.0x), "
              f"{files['cold']} files written")
        print(f"configure, unchanged: {median['rerun']:.2f}s  ratio {result['ratio_rerun']:.2f}x (target <= 0.5x), "
              f"{files['rerun']} files written (target 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
