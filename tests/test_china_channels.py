"""SMS and voice calls in China through the providers' official SDKs, pointed at a real
local HTTP server that records what each provider would receive (Aliyun SMS and voice,
Tencent Cloud SMS and voice): the approved template's variables in Chinese with the
site's local time, each recipient at their own number, voice for critical alarms only,
the provider's receipt recorded, a refusal retried."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from alerts.config import AlertsConfig
from alerts.db import make_engine, transaction, upgrade
from alerts.escalation import escalate
from alerts.models import Site
from alerts.notify import NotificationRow, deliver_due
from alerts.repo import sync_alarm, upsert_breach
from coldchain.judging.breach import Breach, Kind, Level
from coldchain.settings import load_toml
from tests.api_server import an_alarm, serve
from tests.harness import Broker

MIN = 60_000
T0 = 1_795_392_000_000  # 2026-11-23 00:00 UTC, 08:00 in the county


class Provider:
    """Answers as Aliyun (``x-acs-action``) and Tencent Cloud (``X-TC-Action``) do, and
    records each request; ``refuse``: answer the next SMS with a refusal."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, object]]] = []
        self.refuse = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                aliyun = self.headers.get("x-acs-action")
                if aliyun:
                    query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                    outer.calls.append((f"aliyun {aliyun}", dict(query)))
                    code = "isv.BUSINESS_LIMIT_CONTROL" if outer.refuse else "OK"
                    answer: dict[str, object] = {"Code": code, "Message": code, "RequestId": "r"}
                    answer |= {"BizId": "900619^0"} if aliyun == "SendSms" else {"CallId": "116^1"}
                else:
                    action = self.headers.get("X-TC-Action", "")
                    outer.calls.append((f"tencent {action}", json.loads(body)))
                    if action == "SendSms":
                        status = [
                            {
                                "SerialNo": "5000:104",
                                "PhoneNumber": n,
                                "Code": "Ok",
                                "Message": "ok",
                            }
                            for n in json.loads(body)["PhoneNumberSet"]
                        ]
                        answer = {"Response": {"SendStatusSet": status, "RequestId": "r"}}
                    else:
                        answer = {
                            "Response": {"SendStatus": {"CallId": "call-7"}, "RequestId": "r"}
                        }
                out = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *_: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def provider() -> Iterator[Provider]:
    found = Provider()
    yield found
    found.close()


CONFIG = """
[escalation]
repeat_min = 60
[[escalation.steps]]
after_min = 0
notify = ["duty-operator", "shift-lead"]

[[routes]]
recipient = "duty-operator"
channel = "aliyun-sms"
address = "13900000001"
[[routes]]
recipient = "duty-operator"
channel = "aliyun-call"
address = "13900000001"
levels = ["critical"]
[[routes]]
recipient = "shift-lead"
channel = "tencent-sms"
address = "+8613900000002"
lang = "en"
[[routes]]
recipient = "shift-lead"
channel = "tencent-call"
address = "+8613900000002"
levels = ["critical"]

[channels.aliyun-sms]
kind = "aliyun_sms"
access_key_id_env = "ALIYUN_AK_ID"
access_key_secret_env = "ALIYUN_AK_SECRET"
endpoint = "{url}"
sign_name = "县冷链中心"
template_code = "SMS_4512345"
params = ["place", "event", "time", "value", "batches"]

[channels.aliyun-call]
kind = "aliyun_voice"
access_key_id_env = "ALIYUN_AK_ID"
access_key_secret_env = "ALIYUN_AK_SECRET"
endpoint = "{url}"
tts_code = "TTS_10001"
params = ["place", "event", "time"]

[channels.tencent-sms]
kind = "tencent_sms"
secret_id_env = "TENCENT_ID"
secret_key_env = "TENCENT_KEY"
endpoint = "{url}"
sdk_app_id = "1400006666"
sign_name = "县冷链中心"
template_id = "449739"
params = ["place", "event", "time", "value"]

[channels.tencent-call]
kind = "tencent_voice"
secret_id_env = "TENCENT_ID"
secret_key_env = "TENCENT_KEY"
endpoint = "{url}"
voice_sdk_app_id = "1400011111"
template_id = "1001"
params = ["place", "event"]
"""


@pytest.fixture
def config(provider: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AlertsConfig:
    for name in ("ALIYUN_AK_ID", "ALIYUN_AK_SECRET", "TENCENT_ID", "TENCENT_KEY"):
        monkeypatch.setenv(name, f"{name.lower()}-value")
    path = tmp_path / "alerts.toml"
    path.write_text(CONFIG.replace("{url}", provider.url), encoding="utf-8")
    return load_toml(path, AlertsConfig)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    upgrade(db_url)
    made = make_engine(db_url)
    with transaction(made) as s:
        s.add(Site(id="county-store", name="County cold store", kind="cold_store"))
    yield made
    made.dispose()


def alarm(engine: Engine, level: Level, sensor: str = "cr1-th.temp") -> int:
    breach = Breach(sensor, Kind.HIGH, level, T0, T0 + 15 * MIN, max_value=-9.46)
    with transaction(engine) as s:
        row = upsert_breach(s, "store-gw", breach)
        row.site_id = "county-store"
        raised, _ = sync_alarm(s, row, now=T0 + 15 * MIN)
        return raised.id


def receipts(engine: Engine) -> dict[str, str | None]:
    with Session(engine) as s:
        rows = s.execute(select(NotificationRow)).scalars()
        return {r.channel: r.receipt for r in rows}


def test_a_critical_alarm_goes_out_as_sms_and_a_call_in_each_recipient_s_language(
    engine: Engine, config: AlertsConfig, provider: Provider
) -> None:
    alarm(engine, Level.CRITICAL)
    routes, channels = config.route_map(), config.channel_map()
    assert escalate(engine, config.escalation.policy(), routes, T0 + 15 * MIN) == 4  # type: ignore[union-attr]
    assert deliver_due(engine, channels, T0 + 15 * MIN) == (4, 0)
    calls = dict(provider.calls)
    sms = calls["aliyun SendSms"]
    assert sms["PhoneNumbers"] == "13900000001" and sms["SignName"] == "县冷链中心"
    assert sms["TemplateCode"] == "SMS_4512345"
    assert json.loads(str(sms["TemplateParam"])) == {
        "place": "cr1-th.temp",
        "event": "温度过高(严重)",
        "time": "11-23 08:00",  # the site's local time (Asia/Shanghai), not UTC
        "value": "最高 -9.5 °C",
        "batches": "无",
    }
    call = calls["aliyun SingleCallByTts"]
    assert call["CalledNumber"] == "13900000001" and call["TtsCode"] == "TTS_10001"
    assert json.loads(str(call["TtsParam"]))["event"] == "温度过高(严重)"
    tencent = calls["tencent SendSms"]
    assert tencent["PhoneNumberSet"] == ["+8613900000002"]
    assert tencent["TemplateParamSet"] == [
        "cr1-th.temp",
        "High(Critical)",
        "11-23 08:00",
        "max -9.5 °C",
    ]
    voice = calls["tencent SendTtsVoice"]
    assert voice["CalledNumber"] == "+8613900000002" and voice["TemplateParamSet"] == [
        "cr1-th.temp",
        "温度过高(严重)",  # the call route's language (zh by default)
    ]
    assert receipts(engine) == {
        "aliyun-sms": "aliyun-sms 900619^0",
        "aliyun-call": "aliyun-voice 116^1",
        "tencent-sms": "tencent-sms 5000:104",
        "tencent-call": "tencent-voice call-7",
    }


def test_a_warning_sends_no_call_and_a_refused_sms_is_retried(
    engine: Engine, config: AlertsConfig, provider: Provider
) -> None:
    alarm(engine, Level.WARNING)
    routes, channels = config.route_map(), config.channel_map()
    assert escalate(engine, config.escalation.policy(), routes, T0 + 15 * MIN) == 2  # type: ignore[union-attr]
    provider.refuse = True
    assert deliver_due(engine, channels, T0 + 15 * MIN) == (1, 1)  # Tencent took its one
    with Session(engine) as s:
        refused = s.execute(
            select(NotificationRow).where(NotificationRow.channel == "aliyun-sms")
        ).scalar_one()
        assert refused.state == "pending" and "BUSINESS_LIMIT_CONTROL" in (refused.last_error or "")
    provider.refuse = False
    assert deliver_due(engine, channels, T0 + 17 * MIN) == (1, 0)  # after its backoff
    assert not any("Tts" in action or "Voice" in action for action, _ in provider.calls)


def test_the_providers_delivery_reports_are_recorded_on_their_notifications(
    config: AlertsConfig, provider: Provider, tmp_path: Path, running_broker: Broker
) -> None:
    """After an SMS is taken, the provider pushes whether it reached the phone: the API
    matches each report to its notification by the message id and records it; a push
    without our key, or that is not a report, changes nothing."""
    key = "a receipts key of at least 32 characters"
    db = f"sqlite:///{tmp_path / 'alerts.sqlite'}"
    with serve(db, tmp_path, running_broker, receipts_key=key) as api:
        an_alarm(api)
        routes, channels = config.route_map(), config.channel_map()
        escalate(api.engine, config.escalation.policy(), routes, api.t0_ms + 3 * 3_600_000)  # type: ignore[union-attr]
        deliver_due(api.engine, channels, api.t0_ms + 3 * 3_600_000)
        tencent = [
            {
                "user_receive_time": "2026-12-07 21:15:02",
                "nationcode": "86",
                "mobile": "13900000002",
                "report_status": "SUCCESS",
                "errmsg": "DELIVRD",
                "description": "用户短信送达成功",
                "sid": "5000:104",
            }
        ]
        aliyun = [
            {
                "phone_number": "13900000001",
                "report_time": "2026-12-07 21:15:09",
                "success": False,
                "err_code": "MK:0001",
                "err_msg": "用户关机",
                "biz_id": "900619^0",
            }
        ]
        with httpx.Client(base_url=api.url, timeout=20) as client:
            assert client.post("/api/receipts/tencent", json=tencent).status_code == 403
            wrong = client.post("/api/receipts/tencent", params={"key": "x" * 40}, json=tencent)
            assert wrong.status_code == 403
            not_one = client.post("/api/receipts/aliyun", params={"key": key}, json={"a": 1})
            assert not_one.status_code == 400
            took = client.post("/api/receipts/tencent", params={"key": key}, json=tencent)
            assert took.json() == {"matched": 1}
            assert client.post("/api/receipts/aliyun", params={"key": key}, json=aliyun).json() == {
                "matched": 1
            }
        with Session(api.engine) as s:
            reported = {
                r.channel: json.loads(r.delivery)
                for r in s.execute(select(NotificationRow)).scalars()
                if r.delivery  # the escalation's repeats were sent too: one has each report
            }
    assert set(reported) == {"tencent-sms", "aliyun-sms"}
    assert reported["tencent-sms"] == [
        {
            "to": "13900000002",
            "delivered": True,
            "at_ms": 1796649302000,  # 21:15:02 in Beijing
            "detail": "DELIVRD 用户短信送达成功",
        }
    ]
    (off,) = reported["aliyun-sms"]
    assert off["delivered"] is False and "用户关机" in off["detail"]
