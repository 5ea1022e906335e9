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
```
"""

from __future__ import annotations

from datetime import time
from typing import Annotated, Literal

from pydantic import Field, model_validator

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


class AppriseConfig(Strict):
    kind: Literal["apprise"]
    #: the environment variable holding the Apprise URLs (they carry tokens), space-separated
    urls_env: str


ChannelConfig = Annotated[WebhookConfig | EmailConfig | AppriseConfig, Field(discriminator="kind")]


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
            routes.setdefault(r.recipient, []).append(Route(r.channel, r.address, r.lang))
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
            else:
                urls = tuple(secret(c.urls_env, f"channels.{name}.urls_env").split())
                out[name] = AppriseChannel(urls, name=name)
        return out


class AlertsConfig(Notifying):
    alerts: AlertsSection = AlertsSection()
    mqtt: MqttConfig = MqttConfig()
    escalation: EscalationConfig | None = None
    links: LinksConfig | None = None
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
