"""The production deployment, checked here without a Docker engine: the compose file
validates, the compose Mosquitto config runs for real with accounts made by
`coldchain broker` (ACLs, passwords, TLS), the gateway's systemd unit verifies, Grafana
provisioning talks to a real HTTP server and its queries match the stores' names."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import text

from alerts.db import Base, make_engine, upgrade
from api.settings import ApiSettings
from coldchain.mqtt import Consumer, Delivery, SessionSpec, make_client
from coldchain.mqtt import connect as mqtt_connect
from coldchain.settings import PLACEHOLDER, MqttConfig
from coldchain.wire import Quantity
from ops import grafana
from simulator.broker import LocalBroker, free_ports

ROOT = Path(__file__).resolve().parent.parent
CERTS = ROOT / "tests" / "certs"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


# ---------------------------------------------------------------------- compose
def test_compose_file_validates_and_every_service_has_a_health_check_and_restart_policy(
    tmp_path: Path,
) -> None:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is missing (apt-get install docker-compose)"
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    quiet = subprocess.run(
        [tool, "config", "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert quiet.returncode == 0, quiet.stderr
    full = subprocess.run(
        [tool, "config"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True
    )
    services = yaml.safe_load(full.stdout)["services"]
    assert {
        "mosquitto",
        "influxdb",
        "postgres",
        "collector-1",
        "collector-2",
        "alerts",
        "api",
        "grafana",
    } <= set(services)
    one_off = {"check-env", "setup"}
    for name, service in services.items():
        if name in one_off:
            assert service.get("restart") == "no", name
            continue
        assert service.get("restart") == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), name
    # the admin secrets are checked before the servers that take them start
    for name in ("influxdb", "postgres"):
        waits = services[name]["depends_on"]["check-env"]
        assert waits["condition"] == "service_completed_successfully", name
    assert services["check-env"]["command"] == ["deploy", "check-env"]
    # two collectors, one shared subscription, distinct sessions
    assert "collector-1.toml" in services["collector-1"]["command"][-1]
    assert "collector-2.toml" in services["collector-2"]["command"][-1]


def test_each_compose_service_is_handed_only_its_own_secrets(tmp_path: Path) -> None:
    """No env_file: a secret reaches only the services that use it, and the admin
    secrets only the servers they are for, check-env and the one-off set-up."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "env_file" not in json.dumps(compose)
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is missing (apt-get install docker-compose)"
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    full = subprocess.run(
        [tool, "config"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True
    )
    services = yaml.safe_load(full.stdout)["services"]

    values = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )

    def holders(variable: str) -> set[str]:
        """The services whose environment holds the variable's value, by any name."""
        return {
            name
            for name, service in services.items()
            if any(values[variable] in str(v) for v in service.get("environment", {}).values())
        }

    assert holders("INFLUXDB_ADMIN_TOKEN") == {"influxdb", "check-env", "setup"}
    assert holders("GRAFANA_ADMIN_PASSWORD") == {"grafana", "check-env"}
    assert holders("MQTT_COLLECTOR_2_PASSWORD") == {"collector-2"}
    for variable, users in (
        ("INFLUXDB_COLLECTOR_TOKEN", {"collector-1", "collector-2"}),
        ("INFLUXDB_ALERTS_TOKEN", {"alerts"}),
        ("INFLUXDB_API_TOKEN", {"api"}),
        ("INFLUXDB_GRAFANA_TOKEN", {"grafana"}),
    ):  # their placeholders are alike: by name
        assert {n for n, sv in services.items() if variable in sv.get("environment", {})} == users
    assert holders("MQTT_COLLECTOR_1_PASSWORD") == {"collector-1"}
    assert holders("MQTT_API_PASSWORD") == {"api"}
    assert holders("COLDCHAIN_SMTP_PASSWORD") == {"alerts"}
    assert holders("COLDCHAIN_LINK_SECRET") == {"alerts", "api"}
    # the database owner's password: PostgreSQL, the services that own the schema and
    # the set-up; Grafana signs in as its read-only role
    owner = {"postgres", "alerts", "api", "setup", "check-env"}
    assert holders("POSTGRES_PASSWORD") == owner
    assert services["grafana"]["environment"]["GRAFANA_DB_USER"] == "grafana_reader"


def test_the_shipped_service_configs_are_valid() -> None:
    from alerts.config import AlertsConfig
    from coldchain.settings import load_toml
    from collector.config import CollectorConfig, load_collector_config

    configs = ROOT / "deploy" / "config"
    ids = {load_collector_config(configs / f"collector-{n}.toml").collector.id for n in (1, 2)}
    assert ids == {"collector-1", "collector-2"}  # one group, two sessions
    assert load_toml(configs / "api-store.toml", CollectorConfig).store.kind == "influxdb"
    alerts = load_toml(configs / "alerts.toml", AlertsConfig)
    assert alerts.store is not None and alerts.escalation is not None
    assert "county-fleet" in alerts.site_escalation
    from ops.watchdog import WatchdogConfig

    watchdog = load_toml(configs / "watchdog.toml", WatchdogConfig)
    watched = {(s.kind, s.id) for s in watchdog.watchdog.services}
    assert {("alerts", alerts.alerts.id), ("collector", "collector-1")} <= watched


def test_the_example_env_file_holds_placeholders_for_every_secret() -> None:
    values = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    secrets = [k for k in values if re.search(r"PASSWORD|TOKEN|SECRET", k)]
    assert len(secrets) >= 8
    assert all(PLACEHOLDER.search(values[k]) for k in secrets), secrets


def test_a_service_refuses_to_start_with_a_placeholder_secret(tmp_path: Path) -> None:
    refused = cli(
        "collector",
        "run",
        "--config",
        str(ROOT / "deploy" / "config" / "collector-1.toml"),
        env={
            "MQTT_COLLECTOR_1_PASSWORD": "CHANGE_ME_collector_password",
            "INFLUXDB_ORG": "county",
            "INFLUXDB_BUCKET": "coldchain",
            "INFLUXDB_COLLECTOR_TOKEN": "a-real-token",
        },
    )
    assert refused.returncode == 2
    assert "MQTT_COLLECTOR_1_PASSWORD" in refused.stderr and "placeholder" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("program", ["alerts", "api"])
def test_the_alert_service_and_the_api_check_their_influx_token_at_start(
    program: str, tmp_path: Path
) -> None:
    """They open the readings store only when they first need it; a placeholder token
    must stop them at start, not at the first history a quality manager asks for."""
    configs = ROOT / "deploy" / "config"
    env = {
        "COLDCHAIN_DB_URL": f"sqlite:///{tmp_path / 'alerts.sqlite'}",
        "MQTT_ALERTS_PASSWORD": "alerts pass 1",
        "COLDCHAIN_WEBHOOK_SECRET": "webhook secret 1",
        "COLDCHAIN_SMTP_PASSWORD": "smtp pass 1",
        "COLDCHAIN_LINK_SECRET": "a link secret of at least 32 characters",
        "INFLUXDB_ORG": "county",
        "INFLUXDB_BUCKET": "coldchain",
        "INFLUXDB_ALERTS_TOKEN": "CHANGE_ME_influx_token",
        "INFLUXDB_API_TOKEN": "CHANGE_ME_influx_token",
        "COLDCHAIN_STORE_CONFIG": str(configs / "api-store.toml"),
        "COLDCHAIN_PUBLIC_URL": "https://trace.county.example",
    }
    if program == "alerts":
        args = ["alerts", "run", "--config", str(configs / "alerts.toml")]
    else:
        args = ["api", "--port", str(free_ports(1)[0])]
    refused = cli(*args, env=env)
    assert refused.returncode == 2, refused.stderr
    variable = f"INFLUXDB_{program.upper()}_TOKEN"
    assert variable in refused.stderr and "placeholder" in refused.stderr
    assert "Traceback" not in refused.stderr


# ---------------------------------------------------------------------- the broker
class ProductionBroker(LocalBroker):
    """deploy/mosquitto/mosquitto.conf as compose runs it; only the listeners' ports and
    the files' paths are rewritten to this test's."""

    def __init__(self, workdir: Path, plain: int, tls: int) -> None:
        super().__init__(workdir, port=plain)
        self.tls_port = tls
        conf = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
        conf = (
            conf.replace("/mosquitto/config/", f"{workdir}/")
            .replace("/mosquitto/data/", f"{workdir}/data/")
            .replace("/mosquitto/certs/", f"{CERTS}/")
            .replace("listener 1883", f"listener {plain} 127.0.0.1")
            .replace("listener 8883", f"listener {tls} 127.0.0.1")
            .replace("log_dest stdout", f"log_dest file {workdir}/mosquitto.log")
        )
        if os.geteuid() == 0:
            conf += "\nuser root\n"
        self.config.write_text(conf)


@pytest.fixture
def production_broker(tmp_path: Path) -> Iterator[ProductionBroker]:
    plain, tls = free_ports(2)
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    for listener in ("services", "gateways"):
        shutil.copy(ROOT / "deploy" / "mosquitto" / f"{listener}.acl", workdir / f"{listener}.acl")
    services = [
        "--passwd",
        str(workdir / "services.passwd"),
        "--acl",
        str(workdir / "services.acl"),
    ]
    gateways = [
        "--passwd",
        str(workdir / "gateways.passwd"),
        "--acl",
        str(workdir / "gateways.acl"),
    ]
    env = {"P_COLLECTOR": "collector pass 1", "P_GW": "gateway pass 1", "P_API": "api pass 1"}
    for account, role, variable in (
        ("collector-1", "collector", "P_COLLECTOR"),
        ("collector-2", "collector", "P_COLLECTOR"),
        ("api", "api", "P_API"),
    ):
        made = cli(
            "broker",
            "add-service",
            account,
            "--role",
            role,
            "--password-env",
            variable,
            *services,
            env=env,
        )
        assert made.returncode == 0, made.stderr
    for gw, site in (("truck-01", "county-fleet"), ("truck-02", "county-fleet")):
        made = cli(
            "broker",
            "add-gateway",
            gw,
            "--site",
            site,
            "--password-env",
            "P_GW",
            *gateways,
            env=env,
        )
        assert made.returncode == 0, made.stderr
    printed = cli("broker", "add-gateway", "store-gw", "--site", "county-store", *gateways)
    assert printed.returncode == 0 and "COLDCHAIN_MQTT_PASSWORD=" in printed.stdout
    assert "gateway pass 1" not in (workdir / "gateways.passwd").read_text()  # hashed
    broker = ProductionBroker(workdir, plain, tls)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def connect(
    port: int,
    username: str | None,
    password: str | None,
    tls: bool = False,
    *,
    client_id: str = "",
    clean_start: bool = True,
    on_message: Callable[..., None] | None = None,
) -> tuple[mqtt.Client, ReasonCode]:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    if on_message is not None:
        client.on_message = on_message
    if username is not None:
        client.username_pw_set(username, password)
    if tls:
        client.tls_set(ca_certs=str(CERTS / "ca.crt"))
    result: dict[str, ReasonCode] = {}
    done = threading.Event()

    def on_connect(_c: object, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        result["reason"] = reason
        done.set()

    def on_disconnect(_c: object, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        result.setdefault("reason", reason)
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.connect(
        "127.0.0.1",
        port,
        clean_start=clean_start,
        properties=None if clean_start else _session_for(3600),
    )
    client.loop_start()
    assert done.wait(10), "no CONNACK"
    return client, result["reason"]


def _session_for(expiry_s: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry_s
    return props


def puback(client: mqtt.Client, topic: str, payload: bytes = b"{}") -> int:
    """The PUBACK reason code of one QoS 1 publish (MQTT 5 says when it was refused)."""
    codes: list[int] = []
    done = threading.Event()

    def on_publish(_c: object, _u: object, _mid: int, reason: ReasonCode, _p: Properties) -> None:
        codes.append(reason.value)
        done.set()

    client.on_publish = on_publish
    client.publish(topic, payload, qos=1)
    assert done.wait(10), "no PUBACK"
    return codes[0]


def close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def test_the_production_broker_lets_a_gateway_publish_only_its_own_topics(
    production_broker: ProductionBroker,
) -> None:
    gateway, reason = connect(production_broker.tls_port, "truck-01", "gateway pass 1", tls=True)
    assert not reason.is_failure
    try:
        assert puback(gateway, "coldchain/v1/county-fleet/truck-01/readings") < 0x80
        assert puback(gateway, "coldchain/v1/county-fleet/truck-02/readings") == 135
        assert puback(gateway, "coldchain/v1/county-store/truck-01/readings") == 135
    finally:
        close(gateway)
    collector, reason = connect(production_broker.port, "collector-1", "collector pass 1")
    assert not reason.is_failure
    try:
        assert puback(collector, "coldchain/v1/county-fleet/truck-01/readings") == 135
    finally:
        close(collector)


@pytest.mark.parametrize(
    ("username", "password"),
    [("truck-01", "wrong password"), (None, None), ("nobody", "gateway pass 1")],
)
def test_the_production_broker_refuses_wrong_passwords_and_anonymous_clients(
    production_broker: ProductionBroker, username: str | None, password: str | None
) -> None:
    client, reason = connect(production_broker.port, username, password)
    close(client)
    assert reason.is_failure
    assert reason.value in (134, 135)  # bad user name or password / not authorized


def test_no_account_can_take_over_a_collectors_session(
    production_broker: ProductionBroker,
) -> None:
    """A gateway's account connecting as ``collector-1`` (the id in the shipped config)
    gets a session named after itself: the collector stays connected, and the messages
    queued for it while it is away all arrive (10 of 10)."""
    topic = "coldchain/v1/county-fleet/truck-01/readings"
    got: list[bytes] = []

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        got.append(message.payload)

    collector, reason = connect(
        production_broker.port,
        "collector-1",
        "collector pass 1",
        client_id="collector-1",
        clean_start=False,
        on_message=on_message,
    )
    assert not reason.is_failure
    collector.subscribe(topic, qos=1)
    time.sleep(0.3)
    dropped = threading.Event()
    collector.on_disconnect = lambda *_a: dropped.set()
    thief, reason = connect(
        production_broker.tls_port,
        "truck-01",
        "gateway pass 1",
        tls=True,
        client_id="collector-1",
        clean_start=True,
    )
    assert not reason.is_failure
    assert not dropped.wait(1.5), "the gateway's account took the collector's session"
    collector.disconnect()
    collector.loop_stop()
    # while the collector is away, another take-over with clean start would wipe its queue
    for n in range(10):
        assert puback(thief, topic, b"%d" % n) < 0x80
    close(thief)
    thief, _ = connect(
        production_broker.tls_port,
        "truck-01",
        "gateway pass 1",
        tls=True,
        client_id="collector-1",
        clean_start=True,
    )
    close(thief)
    collector, reason = connect(
        production_broker.port,
        "collector-1",
        "collector pass 1",
        client_id="collector-1",
        clean_start=False,
        on_message=on_message,
    )
    try:
        deadline = time.monotonic() + 10
        while len(got) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(got) == [b"%d" % n for n in range(10)]
    finally:
        close(collector)


@pytest.mark.parametrize(
    ("listener", "username", "password"),
    [("plain", "truck-01", "gateway pass 1"), ("tls", "collector-1", "collector pass 1")],
)
def test_an_account_is_known_only_on_its_own_listener(
    production_broker: ProductionBroker, listener: str, username: str, password: str
) -> None:
    """Gateways come in over TLS, services on the compose network: a gateway's password
    is no key to the plain listener, nor a service's to the TLS one."""
    tls = listener == "tls"
    port = production_broker.tls_port if tls else production_broker.port
    client, reason = connect(port, username, password, tls=tls)
    close(client)
    assert reason.is_failure and reason.value in (134, 135)


def test_the_production_broker_refuses_a_message_larger_than_the_wire_allows(
    production_broker: ProductionBroker,
) -> None:
    from coldchain import wire

    topic = "coldchain/v1/county-fleet/truck-02/readings"
    got: list[int] = []
    listener, _ = connect(
        production_broker.port,
        "collector-2",
        "collector pass 1",
        on_message=lambda _c, _u, m: got.append(len(m.payload)),
    )
    listener.subscribe(topic, qos=1)
    try:
        time.sleep(0.3)
        # Mosquitto drops the connection of a client that sends more (no PUBACK); a
        # gateway never does, its batches are cut under the bound
        gateway, _ = connect(production_broker.tls_port, "truck-02", "gateway pass 1", tls=True)
        refused = threading.Event()
        gateway.on_disconnect = lambda *_a: refused.set()
        gateway.publish(topic, b"x" * (wire.MAX_PAYLOAD_BYTES + 1), qos=1)
        assert refused.wait(10), "the broker took a message past the wire's bound"
        gateway.loop_stop()
        gateway, _ = connect(production_broker.tls_port, "truck-02", "gateway pass 1", tls=True)
        assert puback(gateway, topic, b"x" * wire.MAX_PAYLOAD_BYTES) < 0x80
        close(gateway)
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert got == [wire.MAX_PAYLOAD_BYTES]
    finally:
        close(listener)


def test_the_production_broker_speaks_tls_with_the_shipped_test_certificates(
    production_broker: ProductionBroker,
) -> None:
    gateway, reason = connect(production_broker.tls_port, "truck-02", "gateway pass 1", tls=True)
    try:
        assert not reason.is_failure
        assert puback(gateway, "coldchain/v1/county-fleet/truck-02/status") < 0x80
    finally:
        close(gateway)


def test_the_api_and_a_gateway_reach_the_broker_with_settings_from_their_environment(
    production_broker: ProductionBroker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The API's broker settings are the services' MqttConfig, read from COLDCHAIN_MQTT__*:
    its live hub signs in on the compose network's listener as ``api``. A gateway's
    client, made from the same MqttConfig with TLS and the county's CA, publishes a
    status over the TLS listener, and the hub sees it."""
    monkeypatch.setenv("COLDCHAIN_DB_URL", f"sqlite:///{tmp_path / 'alerts.sqlite'}")
    monkeypatch.setenv("COLDCHAIN_PUBLIC_URL", "https://trace.county.test")
    monkeypatch.setenv("COLDCHAIN_MQTT__PORT", str(production_broker.port))
    monkeypatch.setenv("COLDCHAIN_MQTT__USERNAME", "api")
    monkeypatch.setenv("COLDCHAIN_MQTT__PASSWORD_ENV", "P_API")
    monkeypatch.setenv("P_API", "api pass 1")
    monkeypatch.setenv("P_GW", "gateway pass 1")
    settings = ApiSettings()
    assert settings.mqtt.port == production_broker.port and not settings.mqtt.tls
    seen: list[str] = []

    def handle(batch: Sequence[Delivery]) -> bool:
        seen.extend(item.topic for item in batch)
        return True

    topic = "coldchain/v1/county-fleet/truck-02/status"
    hub = Consumer(settings.mqtt, SessionSpec("api-test"), [(topic, 1)], handle, name="t")
    hub.start()
    over_tls = MqttConfig(
        port=production_broker.tls_port,
        tls=True,
        ca_file=CERTS / "ca.crt",
        username="truck-02",
        password_env="P_GW",
    )
    gateway = make_client(over_tls, SessionSpec("truck-02"))
    connected = threading.Event()
    gateway.on_connect = lambda _c, _u, _f, reason, _p: reason.is_failure or connected.set()
    mqtt_connect(gateway, over_tls, SessionSpec("truck-02"))
    try:
        deadline = time.monotonic() + 10
        while not hub.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hub.connected, "the API's account did not get in"
        assert connected.wait(10), "the gateway's account did not get in over TLS"
        gateway.publish(topic, b"{}", qos=1)
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen == [topic]
    finally:
        close(gateway)
        hub.stop()


# ---------------------------------------------------------------------- the edge box
def test_the_gateway_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The unit as shipped; only ExecStart's program is pointed at this checkout's
    `coldchain` (verify insists that the program exists)."""
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing (apt-get install systemd)"
    here = Path(sys.executable).parent / "coldchain"
    unit = tmp_path / "coldchain-gateway.service"
    unit.write_text(
        (ROOT / "deploy" / "gateway" / "coldchain-gateway.service")
        .read_text()
        .replace("/usr/local/bin/coldchain", str(here))
    )
    verified = subprocess.run(
        [tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr


# ---------------------------------------------------------------------- Grafana
class FakeGrafana(BaseHTTPRequestHandler):
    """Records every call and answers like Grafana's HTTP API for what provisioning uses."""

    calls: ClassVar[list[tuple[str, str, object]]] = []
    datasources: ClassVar[dict[str, object]] = {}
    folders: ClassVar[dict[str, object]] = {}
    dashboards: ClassVar[dict[str, object]] = {}

    def _reply(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> object:
        length = int(self.headers.get("Content-Length", 0))
        return json.loads(self.rfile.read(length)) if length else None

    def _record(self, body: object) -> None:
        assert self.headers.get("Authorization") == "Bearer glsa_test_token"
        self.calls.append((self.command, self.path, body))

    def do_GET(self) -> None:
        self._record(None)
        kind, _, uid = self.path.removeprefix("/api/").partition("/uid/")
        if self.path.startswith("/api/datasources/uid/"):
            found = self.datasources.get(uid)
        elif self.path.startswith("/api/folders/"):
            found = self.folders.get(self.path.rsplit("/", 1)[1])
        else:
            found = None
        self._reply(200, found) if found else self._reply(404, {"message": f"{kind} not found"})

    def do_POST(self) -> None:
        body = self._body()
        self._record(body)
        assert isinstance(body, dict)
        if self.path == "/api/datasources":
            self.datasources[body["uid"]] = body
        elif self.path == "/api/folders":
            self.folders[body["uid"]] = body
        elif self.path == "/api/dashboards/db":
            self.dashboards[body["dashboard"]["uid"]] = body
        self._reply(200, {"status": "success"})

    def do_PUT(self) -> None:
        body = self._body()
        self._record(body)
        self.datasources[self.path.rsplit("/", 1)[1]] = body
        self._reply(200, {"message": "Datasource updated"})

    def log_message(self, *_args: object) -> None:
        pass


def test_grafana_provisioning_is_idempotent_against_a_recording_server() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGrafana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {
        "GRAFANA_TOKEN": "glsa_test_token",
        "INFLUXDB_ORG": "county",
        "INFLUXDB_BUCKET": "coldchain",
        "INFLUXDB_GRAFANA_TOKEN": "influx-token-1",
        "POSTGRES_DB": "coldchain",
        "GRAFANA_DB_USER": "grafana_reader",
        "GRAFANA_DB_PASSWORD": "pg-password-1",
    }
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        first = cli("grafana", "provision", "--url", url, env=env)
        assert first.returncode == 0, first.stderr
        second = cli("grafana", "provision", "--url", url, env=env)
        assert second.returncode == 0, second.stderr
    finally:
        server.shutdown()
        thread.join(10)
    assert "data source coldchain-influxdb created" in first.stdout
    assert "data source coldchain-influxdb updated" in second.stdout
    posts = [(m, p) for m, p, _b in FakeGrafana.calls if m == "POST"]
    # created once each; the second run updates the data sources and overwrites dashboards
    assert posts.count(("POST", "/api/datasources")) == 2
    assert posts.count(("POST", "/api/folders")) == 1
    assert posts.count(("POST", "/api/dashboards/db")) == 8
    assert set(FakeGrafana.dashboards) == {
        "coldchain-overview",
        "coldchain-rooms",
        "coldchain-trucks",
        "coldchain-alarms",
    }
    influx = FakeGrafana.datasources["coldchain-influxdb"]
    assert isinstance(influx, dict) and influx["secureJsonData"] == {"token": "influx-token-1"}
    saved = FakeGrafana.dashboards["coldchain-rooms"]
    assert isinstance(saved, dict) and saved["overwrite"] is True


def _queries() -> Iterator[tuple[str, str]]:
    for dashboard in grafana.dashboards().values():
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                if "query" in target:
                    yield "flux", target["query"]
                if "rawSql" in target:
                    yield "sql", target["rawSql"]
        for variable in dashboard["templating"]["list"]:
            if variable.get("datasource") == grafana.POSTGRES:
                yield "sql", variable["query"]


def test_dashboard_queries_use_the_names_the_stores_write() -> None:
    influx_source = (ROOT / "collector" / "influx_store.py").read_text()
    written_fields = set(re.findall(r'\.field\("(\w+)"', influx_source))
    quantities = {q.value for q in Quantity}
    for kind, query in _queries():
        if kind != "flux":
            continue
        for measurement in re.findall(r'_measurement == "(\w+)"', query):
            assert measurement in quantities, measurement
        for field in re.findall(r'_field == "(\w+)"', query):
            assert field in written_fields, field
        for tag in re.findall(r"r\.(site|sensor|gateway)\b", query):
            assert f'.tag("{tag}"' in influx_source, tag


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_dashboard_sql_runs_against_the_alert_services_schema(db_url: str) -> None:
    """The SQL panels are PostgreSQL's (Grafana reads the production database)."""
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            for kind, query in _queries():
                if kind == "sql":
                    sql = query.replace("$__from", "0").replace("$__to", "9999999999999")
                    conn.execute(text(sql)).all()
    finally:
        engine.dispose()
    assert set(grafana.TABLES) <= set(Base.metadata.tables)


def test_the_provisioning_files_are_the_dashboards_the_code_builds() -> None:
    shipped = {
        path.stem: json.loads(path.read_text())
        for path in (ROOT / "deploy" / "grafana" / "dashboards").glob("*.json")
    }
    assert shipped == grafana.dashboards(), "run `coldchain grafana export` and commit"


def test_the_shipped_broker_config_keeps_what_it_acknowledges() -> None:
    from simulator.broker import BROKER_NEEDS

    lines = {
        line.strip()
        for line in (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    }
    for needed in ("persistence true", "autosave_interval 1", *BROKER_NEEDS):
        assert needed in lines, needed
