# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Credential age end to end: configure records when each secret value changed (.credential-dates.yaml), a data-key
rotation keeps those dates, and doctor reports every credential older than the policy; real ansible-playbook, sops, age."""

from __future__ import annotations

import datetime
import hashlib
import json
import re

import yaml

from tests.conftest import recap_changed
from tests.day_two import INFRA_SECRETS, encrypt_in_place, git, sops_run
from tests.integration.test_configure import set_values, shows
from tests.integration.test_doctor import finding

DATES = ".credential-dates.yaml"
APP = "kubernetes/apps/default/echo/app/secret.sops.yaml"
HAND = "kubernetes/apps/default/hand/secret.sops.yaml"  # a secret no template renders: edited with sops only
NEW_PASSWORD = "rotated-SENTINEL-password"  # a test value, searched for in every output
HAND_VALUES = {"A": "alpha-SENTINEL-value", "B": "beta-SENTINEL-value"}
NEW_HAND_VALUE = "beta-SENTINEL-changed"


def recorded(repo) -> dict[str, dict[str, str]]:
    """file -> key path -> the day its value last changed, as the committed file says."""
    data = yaml.safe_load((repo.root / DATES).read_text())
    return {path: {key: entry["changed"] for key, entry in item["values"].items()} for path, item in data["files"].items()}


def backdate(repo, days: int) -> None:
    path = repo.root / DATES

    def earlier(match: re.Match[str]) -> str:
        return f"changed: '{datetime.date.fromisoformat(match[1]) - datetime.timedelta(days=days)}'"

    path.write_text(re.sub(r"changed: '(\d{4}-\d\d-\d\d)'", earlier, path.read_text()))


def doctor_result(output: str) -> dict:
    """The doctor task's result, as `-v` prints it."""
    section = output.split("TASK [cluster.secrets.doctor : Check the repository]", 1)[1].split("\nTASK [", 1)[0]
    return json.loads(section[section.index("=> ") + 3:].strip())


def test_credential_age_survives_a_data_key_rotation_and_a_changed_value_is_new(make_repo):
    repo = make_repo()
    cluster = yaml.safe_load((repo.root / "cluster.yaml").read_text())
    repo.playbook("init")
    repo.write(HAND, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: hand\nstringData:\n"
               + "".join(f"  {k}: {v}\n" for k, v in HAND_VALUES.items()))
    encrypt_in_place(repo, HAND)
    first = repo.playbook("configure")
    assert "created: .credential-dates.yaml" in first.stdout
    assert (repo.root / DATES).stat().st_mode & 0o777 == 0o644
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "cluster")
    today = datetime.datetime.now(datetime.UTC).date()
    assert set(recorded(repo)) == {INFRA_SECRETS, APP, HAND}

    # time passes: every value is 200 days old; then one changes in cluster.yaml, one with sops by hand
    backdate(repo, 200)
    old = str(today - datetime.timedelta(days=200))
    set_values(repo, tfstate_password=NEW_PASSWORD)
    changed = sops_run(repo, "set", HAND, '["stringData"]["B"]', json.dumps(NEW_HAND_VALUE))
    assert changed.returncode == 0, changed.stderr
    configured = repo.playbook("configure", "-v", "--diff")
    assert "credential dates: 2 secret value(s) new or changed since the last run" in configured.stdout
    assert '"credentials_changed": 2' in configured.stdout
    dates = recorded(repo)
    assert dates[INFRA_SECRETS].pop("tfstate_password") == str(today)  # changed in cluster.yaml: today
    assert dates[HAND].pop("stringData.B") == str(today)  # changed by hand: as old as sops' last write, today
    assert {day for values in dates.values() for day in values.values()} == {old}

    # a data-key rotation rewrites every file and no value: every date stays, the content hashes follow
    before = recorded(repo)
    rotated = repo.playbook("rotate", "-v", "-e", "rotate_mode=data_keys")
    assert "3 file(s) were given a new data key" in rotated.stdout
    assert f"{DATES} follows the rotation (every date kept)" in rotated.stdout
    assert recorded(repo) == before
    data = yaml.safe_load((repo.root / DATES).read_text())
    for path, item in data["files"].items():
        assert item["content"] == hashlib.sha256((repo.root / path).read_bytes()).hexdigest(), path

    # doctor: every old credential, oldest first, but not the two that changed
    doctor = repo.playbook("doctor", "-v")
    assert "0 error(s)" in doctor.stdout
    stale = [(INFRA_SECRETS, k) for k in ("cf_account_id", "proxmox_api_token_id", "proxmox_api_token_secret",
                                          "tfstate_username")]
    stale += [(APP, "stringData.CLOUDFLARE_TOKEN"), (APP, "stringData.DOMAIN"), (HAND, "stringData.A")]
    for path, key in stale:
        assert finding(doctor.stdout, "WARNING", "credential age", f"{path}: {key}"), (path, key)
    assert f"unchanged for 200 days (since {old}; policy 90)" in doctor.stdout
    for path, key in ((INFRA_SECRETS, "tfstate_password"), (HAND, "stringData.B")):
        assert not finding(doctor.stdout, "WARNING", "credential age", f"{path}: {key}")
    result = doctor_result(doctor.stdout)
    assert sorted((c["file"], c["key"]) for c in result["credentials"]) == sorted(stale)
    assert {(c["days"], c["changed"], c["source"]) for c in result["credentials"]} == {(200, old, "recorded")}
    assert not finding(doctor.stdout, "WARNING", "rotation", INFRA_SECRETS)  # the data keys are new

    # the next configure agrees with the rotated repository: nothing to write, twice
    snapshot = repo.snapshot()
    for attempt in ("after the rotation", "remembered"):
        again = repo.playbook("configure")
        assert recap_changed(again.stdout) == 0, attempt
        assert repo.snapshot() == snapshot, attempt

    # no value anywhere: not in any output, not in the dates file
    values = [NEW_PASSWORD, NEW_HAND_VALUE, *HAND_VALUES.values(), cluster["cloudflare_token"], cluster["cf_account_id"],
              cluster["proxmox_api_token_secret"], cluster["tfstate_password"]]
    dates_text = (repo.root / DATES).read_text()
    for value in values:
        assert value not in dates_text, value
        for out in (first, configured, rotated, doctor, again):
            assert not shows(value, out.stdout), value
