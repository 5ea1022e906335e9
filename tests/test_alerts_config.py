"""The alert service's config file and the `coldchain alerts run` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from alerts.config import AlertsConfig
from alerts.notify import Email, Webhook
from coldchain.settings import ConfigError, load_toml
from tests.harness import Broker, wait_for

GOOD = """
[alerts]
id = "alerts-test"
sites = ["county-store"]

[mqtt]
port = {port}

[escalation]
repeat_min = 30
quiet_start = "22:00"
quiet_end = "06:00"
[[escalation.steps]]
after_min = 0
notify = ["duty-operator"]
[[escalation.steps]]
after_min = 15
notify = ["shift-lead"]

[site_escalation.county-fleet]
repeat_min = 20
[[site_escalation.county-fleet.steps]]
after_min = 0
notify = ["shift-lead"]

[[routes]]
recipient = "duty-operator"
channel = "email"
address = "duty@county.example"
[[routes]]
recipient = "shift-lead"
channel = "hook"
address = "ops-room"

[channels.email]
kind = "email"
host = "127.0.0.1"
port = 2525
sender = "coldchain@county.example"

[channels.hook]
kind = "webhook"
url = "http://127.0.0.1:9/hook"
secret_env = "COLDCHAIN_WEBHOOK_SECRET"
"""


def test_config_builds_policy_routes_and_channels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLDCHAIN_WEBHOOK_SECRET", "s3cret-from-the-vault")
    path = tmp_path / "alerts.toml"
    path.write_text(GOOD.format(port=1883))
    config = load_toml(path, AlertsConfig)
    assert config.escalation is not None
    policy = config.escalation.policy()
    assert [s.after_min for s in policy.steps] == [0, 15]
    assert policy.quiet_start is not None and policy.quiet_start.hour == 22
    fleet = config.site_policies()["county-fleet"]
    assert [s.notify for s in fleet.steps] == [("shift-lead",)] and fleet.repeat_min == 20
    routes = config.route_map()
    assert routes["shift-lead"][0].channel == "hook"
    channels = config.channel_map()
    assert isinstance(channels["email"], Email) and isinstance(channels["hook"], Webhook)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (('kind = "webhook"', 'kind = "pager"'), "channels.hook"),
        (("after_min = 15", "after_min = -1"), "escalation.steps.1.after_min"),
        (('quiet_start = "22:00"', 'quiet_start = "late"'), "escalation.quiet_start"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, change: tuple[str, str], field: str) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(GOOD.format(port=1883).replace(*change))
    with pytest.raises(ConfigError) as info:
        load_toml(path, AlertsConfig)
    assert field in str(info.value), str(info.value)


def test_a_step_naming_someone_without_a_route_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(
        GOOD.format(port=1883).replace(
            'notify = ["shift-lead"]\n\n[[routes]]', 'notify = ["nobody"]\n\n[[routes]]'
        )
    )
    with pytest.raises(ConfigError, match="'nobody'"):
        load_toml(path, AlertsConfig)


@pytest.mark.parametrize("value", ["", "CHANGE_ME", "change-me-please", "<webhook secret>"])
def test_an_empty_or_placeholder_secret_stops_the_start_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("COLDCHAIN_WEBHOOK_SECRET", value)
    path = tmp_path / "alerts.toml"
    path.write_text(GOOD.format(port=1883))
    with pytest.raises(ConfigError, match="COLDCHAIN_WEBHOOK_SECRET") as info:
        load_toml(path, AlertsConfig).channel_map()
    assert "channels.hook.secret_env" in str(info.value)


def test_route_to_an_unknown_channel_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(GOOD.format(port=1883).replace('channel = "hook"', 'channel = "sms"'))
    with pytest.raises(ConfigError, match="'sms' of recipient 'shift-lead'"):
        load_toml(path, AlertsConfig).route_map()


@pytest.mark.e2e
def test_alerts_run_starts_migrates_and_stops_cleanly(
    tmp_path: Path, running_broker: Broker
) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(GOOD.format(port=running_broker.port))
    db = tmp_path / "alerts.sqlite"
    env = {
        **os.environ,
        "COLDCHAIN_DB_URL": f"sqlite:///{db}",
        "COLDCHAIN_WEBHOOK_SECRET": "s3cret-from-the-vault",
        # touched once it runs and is well: its signal handlers are in place by then
        "COLDCHAIN_HEALTH_FILE": str(tmp_path / "alerts.health"),
    }
    missing = subprocess.run(
        [sys.executable, "-m", "ops.cli", "alerts", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in env.items() if k != "COLDCHAIN_DB_URL"},
    )
    assert missing.returncode == 2 and "COLDCHAIN_DB_URL" in missing.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "alerts", "run", "--config", str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(db.exists, 30, "the database created")
        wait_for((tmp_path / "alerts.health").exists, 60, "the service running and well")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    check = subprocess.run(
        [sys.executable, "-m", "ops.cli", "audit", "verify"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert check.returncode == 0, check.stderr
