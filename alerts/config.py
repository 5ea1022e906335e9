"""The alert service's configuration file (TOML): strict, secrets from the environment.

```toml
[alerts]
id = "alerts-1"                 # MQTT client id = persistent session; one per instance
sites = ["+"]
db_url_env = "COLDCHAIN_DB_URL" # e.g. postgresql+psycopg://coldchain:…@db/coldchain

[mqtt]                          # as for the gateway and the collector
host = "broker"

[escalation]
repeat_min = 30
quiet_start = "22:00"           # warnings wait; critical alarms never do
quiet_end = "06:00"
[[escalation.steps]]
after_min = 0
notify = ["duty-operator"]
[[escalation.steps]]
after_min = 15
notify = ["shift-lead"]

[site_escalation.county-fleet]  # a site's own policy (same fields as [escalation])
repeat_min = 20
[[site_escalation.county-fleet.steps]]
after_min = 0
notify = ["fleet-dispatcher"]

[[routes]]
recipient = "duty-operator"
channel = "email"
address = "duty@county.example"
lang = "zh"                     # the language of what they are sent (zh or en)

[links]                         # each notification links to its alarm's page
public_url = "https://coldchain.county.example"
secret_env = "COLDCHAIN_LINK_SECRET"   # the API holds the same secret
valid_h = 24

[store]                         # optional: where the collectors write the readings
kind = "influxdb"
url = "http://influxdb:8086"

[channels.email]
kind = "email"
host = "smtp.county.example"
port = 587
sender = "coldchain@county.example"
starttls = true
username = "coldchain"
password_env = "COLDCHAIN_SMTP_PASSWORD"

[[routes]]                      # an SMS, and a call for critical alarms nobody answers
recipient = "shift-lead"
channel = "sms"
address = "13900000002"
[[routes]]
recipient = "shift-lead"
channel = "call"
address = "13900000002"
levels = ["critical"]

[channels.sms]                  # Aliyun SMS (or kind = "tencent_sms": sdk_app_id, template_id)
kind = "aliyun_sms"
access_key_id_env = "ALIYUN_ACCESS_KEY_ID"
access_key_secret_env = "ALIYUN_ACCESS_KEY_SECRET"
sign_name = "县冷链中心"
template_code = "SMS_4512345"   # approved: ${place}${event}，${time}，${value}，批次${batches}
params = ["place", "event", "time", "value", "batches"]

[channels.call]                 # Aliyun voice (or kind = "tencent_voice")
kind = "aliyun_voice"
access_key_id_env = "ALIYUN_ACCESS_KEY_ID"
access_key_secret_env = "ALIYUN_ACCESS_KEY_SECRET"
tts_code = "TTS_10001"
params = ["place", "event", "time"]
```
"""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from alerts.china import Aliyun, AliyunSms, AliyunVoice, Tencent, TencentSms, TencentVoice
from alerts.escalation import Route
from alerts.lifecycle import Policy, Step
from alerts.links import Links
from alerts.notify import AppriseChannel, Channel, Email, Webhook
from coldchain.settings import ConfigError, MqttConfig, Strict, secret
from coldchain.wire import ID_PATTERN
from collector.config import InfluxStoreConfig, SqliteStoreConfig


class AlertsSection(Strict):
    id: Annotated[str, Field(pattern=ID_PATTERN)] = "alerts-1"
    sites: tuple[str, ...] = ("+",)
    db_url_env: str = "COLDCHAIN_DB_URL"

    def db_url(self) -> str:
        return secret(self.db_url_env, "alerts.db_url_env")


class StepConfig(Strict):
    after_min: Annotated[float, Field(ge=0)]
    notify: Annotated[tuple[str, ...], Field(min_length=1)]


class EscalationConfig(Strict):
    steps: Annotated[tuple[StepConfig, ...], Field(min_length=1)]
    repeat_min: Annotated[float, Field(gt=0)] | None = 30.0
    quiet_start: time | None = None
    quiet_end: time | None = None
    utc_offset_h: float = 8.0

    def policy(self) -> Policy:
        return Policy(
            steps=tuple(Step(s.after_min, s.notify) for s in self.steps),
            repeat_min=self.repeat_min,
            quiet_start=self.quiet_start,
            quiet_end=self.quiet_end,
            utc_offset_h=self.utc_offset_h,
        )


class RouteConfig(Strict):
    recipient: str
    channel: str
    address: str
    #: the language of what they are sent
    lang: Literal["zh", "en"] = "zh"
    #: the alarm levels this route is used for (a voice call: ["critical"])
    levels: Annotated[tuple[Literal["warning", "critical"], ...], Field(min_length=1)] = (
        "warning",
        "critical",
    )


class AuditConfig(Strict):
    """Where the service keeps signed checkpoints of the audit trail's head, every
    minute: a file on a volume the database's owner does not hold."""

    anchor_file: Path


class LinksConfig(Strict):
    """Each notification carries a signed link to its alarm's page on the API
    (docs/design-alerts.md, "Acknowledge from the phone")."""

    #: the API's address as a phone reaches it (the same as the API's COLDCHAIN_PUBLIC_URL)
    public_url: Annotated[str, Field(pattern=r"^https?://[^\s/]+")]
    #: the environment variable holding the secret the API also holds
    secret_env: str = "COLDCHAIN_LINK_SECRET"
    valid_h: Annotated[float, Field(gt=0, le=24 * 14)] = 24.0

    def links(self) -> Links:
        secret_value = secret(self.secret_env, "links.secret_env")
        if len(secret_value) < 32:
            raise ConfigError(
                "config", [f"links.secret_env: {self.secret_env} is shorter than 32 characters"]
            )
        return Links(self.public_url, secret_value, int(self.valid_h * 3_600_000))


class WebhookConfig(Strict):
    kind: Literal["webhook"]
    url: str
    secret_env: str


class EmailConfig(Strict):
    kind: Literal["email"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 25
    sender: str
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None


#: the facts a provider's template may use (alerts/wording.py, AlarmFacts.fields)
TemplateField = Literal["place", "event", "time", "value", "batches", "alarm", "link"]


class AppriseConfig(Strict):
    kind: Literal["apprise"]
    #: the environment variable holding the Apprise URLs (they carry tokens), space-separated
    urls_env: str


class AliyunConfig(Strict):
    """An Aliyun account: its AccessKey from the environment."""

    access_key_id_env: str
    access_key_secret_env: str
    #: another address (e.g. "http://127.0.0.1:8089" for a test); default: Aliyun's own
    endpoint: str | None = None
    #: the template's variables, each one of the facts: place, event, time, value,
    #: batches, alarm, link (its approved text names them)
    params: Annotated[tuple[TemplateField, ...], Field(min_length=1)]


class AliyunSmsConfig(AliyunConfig):
    kind: Literal["aliyun_sms"]
    sign_name: str
    template_code: str


class AliyunVoiceConfig(AliyunConfig):
    kind: Literal["aliyun_voice"]
    tts_code: str
    show_number: str | None = None
    play_times: Annotated[int, Field(ge=1, le=3)] = 2


class TencentConfig(Strict):
    """A Tencent Cloud account: its SecretId and SecretKey from the environment."""

    secret_id_env: str
    secret_key_env: str
    region: str = "ap-guangzhou"
    endpoint: str | None = None
    #: the template's variables {1}, {2} … in order, each one of the facts
    params: Annotated[tuple[TemplateField, ...], Field(min_length=1)]


class TencentSmsConfig(TencentConfig):
    kind: Literal["tencent_sms"]
    sdk_app_id: str
    sign_name: str
    template_id: str


class TencentVoiceConfig(TencentConfig):
    kind: Literal["tencent_voice"]
    voice_sdk_app_id: str
    template_id: str
    play_times: Annotated[int, Field(ge=1, le=3)] = 2


ChannelConfig = Annotated[
    WebhookConfig
    | EmailConfig
    | AppriseConfig
    | AliyunSmsConfig
    | AliyunVoiceConfig
    | TencentSmsConfig
    | TencentVoiceConfig,
    Field(discriminator="kind"),
]


def _china_channel(name: str, c: object) -> Channel:
    """An SMS or voice channel of a Chinese provider (alerts/china.py)."""
    if isinstance(c, AliyunConfig):
        secret(c.access_key_id_env, f"channels.{name}.access_key_id_env")
        secret(c.access_key_secret_env, f"channels.{name}.access_key_secret_env")
        account = Aliyun(c.access_key_id_env, c.access_key_secret_env, c.endpoint)
        if isinstance(c, AliyunSmsConfig):
            return AliyunSms(account, c.sign_name, c.template_code, c.params, name=name)
        assert isinstance(c, AliyunVoiceConfig)
        return AliyunVoice(account, c.tts_code, c.params, c.show_number, c.play_times, name=name)
    assert isinstance(c, TencentConfig)
    secret(c.secret_id_env, f"channels.{name}.secret_id_env")
    secret(c.secret_key_env, f"channels.{name}.secret_key_env")
    tencent = Tencent(c.secret_id_env, c.secret_key_env, c.region, c.endpoint)
    if isinstance(c, TencentSmsConfig):
        return TencentSms(tencent, c.sdk_app_id, c.sign_name, c.template_id, c.params, name=name)
    assert isinstance(c, TencentVoiceConfig)
    return TencentVoice(
        tencent, c.voice_sdk_app_id, c.template_id, c.params, c.play_times, name=name
    )


class Notifying(Strict):
    """Who is reached how: recipients' routes and the configured channels (the alert
    service's escalations, the watchdog's notices)."""

    routes: tuple[RouteConfig, ...] = ()
    channels: Annotated[dict[str, ChannelConfig], Field(default_factory=dict)]

    def route_map(self) -> dict[str, tuple[Route, ...]]:
        routes: dict[str, list[Route]] = {}
        for r in self.routes:
            if r.channel not in self.channels:
                raise ConfigError(
                    "config",
                    [
                        f"routes: channel {r.channel!r} of recipient "
                        f"{r.recipient!r} is not under [channels]"
                    ],
                )
            routes.setdefault(r.recipient, []).append(Route(r.channel, r.address, r.lang, r.levels))
        return {k: tuple(v) for k, v in routes.items()}

    def channel_map(self) -> dict[str, Channel]:
        out: dict[str, Channel] = {}
        for name, c in self.channels.items():
            if isinstance(c, WebhookConfig):
                secret(c.secret_env, f"channels.{name}.secret_env")  # refuse to start without
                out[name] = Webhook(c.url, c.secret_env, name=name)
            elif isinstance(c, EmailConfig):
                if c.password_env is not None:
                    secret(c.password_env, f"channels.{name}.password_env")
                out[name] = Email(
                    c.host, c.port, c.sender, c.starttls, c.username, c.password_env, name=name
                )
            elif isinstance(c, AppriseConfig):
                urls = tuple(secret(c.urls_env, f"channels.{name}.urls_env").split())
                out[name] = AppriseChannel(urls, name=name)
            else:
                out[name] = _china_channel(name, c)
        return out


class AlertsConfig(Notifying):
    alerts: AlertsSection = AlertsSection()
    mqtt: MqttConfig = MqttConfig()
    escalation: EscalationConfig | None = None
    links: LinksConfig | None = None
    audit: AuditConfig | None = None
    #: per-site policies by site id; other sites follow [escalation]
    site_escalation: Annotated[dict[str, EscalationConfig], Field(default_factory=dict)]
    #: the readings store (as the collectors write it): after a restart each sensor is
    #: judged again from its last 48 h, so a delay under way keeps counting
    store: Annotated[SqliteStoreConfig | InfluxStoreConfig, Field(discriminator="kind")] | None = (
        None
    )

    @model_validator(mode="after")
    def _site_policies_need_a_default(self) -> AlertsConfig:
        if self.site_escalation and self.escalation is None:
            raise ValueError("site_escalation needs a default [escalation] policy")
        named = {r.recipient for r in self.routes}
        policies = ([self.escalation] if self.escalation else []) + list(
            self.site_escalation.values()
        )
        for policy in policies:
            for step in policy.steps:
                missing = [n for n in step.notify if n not in named]
                if missing:
                    raise ValueError(
                        f"escalation step notifies {missing}, who have no [[routes]] entry"
                    )
        return self

    def site_policies(self) -> dict[str, Policy]:
        return {site: e.policy() for site, e in self.site_escalation.items()}
