"""The API's settings, from ``COLDCHAIN_*`` environment variables (pydantic-settings).

Outside demo mode the database URL must be given: there is no silent default that
would write a production system's users into a file in the working directory.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from coldchain.settings import PLACEHOLDER, MqttConfig


def proxy_networks(text: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """ "10.0.0.5, 172.18.0.0/16" as networks; ValueError naming what is neither."""
    found = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            try:
                found.append(ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
    return tuple(found)


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="COLDCHAIN_", env_nested_delimiter="__", extra="ignore"
    )

    #: the alert service's database (users, batches, alarms, audit)
    db_url: str = ""
    #: the readings store: an SQLite file, or a collector config naming the store
    readings_db: Path | None = None
    store_config: Path | None = None
    #: the alert service's config file: its escalation policies are shown read-only
    alerts_config: Path | None = None
    #: the broker for the live updates, as every service names it (host, port, username,
    #: password_env, tls, ca_file, keepalive_s): ``COLDCHAIN_MQTT__HOST`` and so on
    mqtt: MqttConfig = MqttConfig()
    #: sites the live hub follows (MQTT topic level, "+" for all)
    sites: tuple[str, ...] = ("+",)
    #: demo mode: permissive defaults, never in production
    demo: bool = False
    #: send the session cookie only over HTTPS (on behind a TLS proxy in production)
    secure_cookies: bool = False
    #: the address printed in QR codes (e.g. https://trace.county.example): required
    #: outside demo mode, so that a request's Host header never decides what a label says
    public_url: str | None = None
    #: the county's time zone: the pages show every time in it, with the date
    timezone: str = "Asia/Shanghai"
    #: the age after which a reading is shown as stale on the pages
    stale_after_s: Annotated[float, Field(gt=0)] = 900.0
    #: the file of signed checkpoints of the audit trail's head (the alert service writes
    #: it): verify then also finds rows taken off the trail's end
    audit_anchor: Path | None = None
    #: the secret in the address the SMS providers push delivery reports to
    #: (COLDCHAIN_RECEIPTS_KEY; without it, that route is off)
    receipts_key: SecretStr | None = None
    #: the secret the alert service signs notifications' links to alarms with
    #: (COLDCHAIN_LINK_SECRET; without it, such links are refused)
    link_secret: SecretStr | None = None
    #: the reverse proxies in front of the API, addresses or networks separated by commas
    #: (e.g. "10.0.0.5, 172.18.0.0/16"): only their X-Forwarded-For is believed
    trusted_proxies: str = ""
    #: the map's tiles: the county's own tile server as a URL template
    #: (COLDCHAIN_MAP_TILES, e.g. https://tiles.county.example/{z}/{x}/{y}.png); none: the
    #: tracks and markers on a plain background, which needs no internet
    map_tiles: str | None = None
    map_attribution: str = ""
    #: where Debian's libjs-dygraphs and libjs-leaflet put the charts' and the map's
    #: libraries (served by the app under /static/vendor/)
    js_dir: Path = Path("/usr/share/javascript")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone (e.g. Asia/Shanghai)") from None
        return value

    @field_validator("map_tiles")
    @classmethod
    def _tile_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("https://", "http://")) or not all(
            part in value for part in ("{z}", "{x}", "{y}")
        ):
            raise ValueError(
                f"{value!r} is not a tile URL template (https://tiles.example/{{z}}/{{x}}/{{y}}.png)"
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        proxy_networks(value)  # refuses what is not an address or a network
        return value

    @property
    def proxies(self) -> tuple[IPv4Network | IPv6Network, ...]:
        return proxy_networks(self.trusted_proxies)

    @model_validator(mode="after")
    def _safe_outside_demo(self) -> ApiSettings:
        if not self.db_url:
            if not self.demo:
                raise ValueError(
                    "COLDCHAIN_DB_URL is not set (e.g. postgresql+psycopg://coldchain:…@db/"
                    "coldchain); only demo mode has a default"
                )
            self.db_url = "sqlite:///var/demo/alerts.sqlite"
        if not self.public_url and not self.demo:
            raise ValueError(
                "COLDCHAIN_PUBLIC_URL is not set: the address printed in QR codes "
                "(e.g. https://trace.county.example)"
            )
        if self.receipts_key is not None and not self.receipts_key.get_secret_value():
            self.receipts_key = None  # set but empty (compose's default): the route is off
        if self.receipts_key is not None and len(self.receipts_key.get_secret_value()) < 32:
            raise ValueError("COLDCHAIN_RECEIPTS_KEY is shorter than 32 characters")
        if self.link_secret is not None:
            link = self.link_secret.get_secret_value()
            if PLACEHOLDER.search(link) or len(link) < 32:
                raise ValueError(
                    "COLDCHAIN_LINK_SECRET is a placeholder or shorter than 32 characters"
                )
        if PLACEHOLDER.search(self.db_url):
            raise ValueError("COLDCHAIN_DB_URL still holds a placeholder; set the real password")
        if self.readings_db is None and self.store_config is None:
            self.readings_db = Path(
                "var/demo/coldchain.sqlite" if self.demo else "var/coldchain.sqlite"
            )
        return self

    def trace_base(self, request_base: str) -> str:
        """Where a QR code leads: the public address (in demo mode, where none is set,
        the address the page was asked at)."""
        return (self.public_url or request_base).rstrip("/")
