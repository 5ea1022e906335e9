"""The collector's configuration file (TOML), typed and strict; secrets from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from coldchain.settings import ConfigError, MqttConfig, Strict, load_toml, secret
from coldchain.wire import ID_PATTERN


class CollectorSection(Strict):
    #: MQTT client id and persistent session name of this collector
    id: Annotated[str, Field(pattern=ID_PATTERN)] = "collector-1"
    #: shared subscription group; collectors in one group split the messages
    group: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]*$")] = "collectors"
    #: sites to collect (topic level), "+" for every site
    sites: Annotated[
        tuple[Annotated[str, Field(pattern=r"^(\+|" + ID_PATTERN[1:-1] + r")$")], ...],
        Field(min_length=1),
    ] = ("+",)
    #: how long the broker keeps the session (and queues messages) while we are away
    session_expiry_s: Annotated[int, Field(ge=0)] = 7 * 24 * 3600
    #: messages the broker may send before we acknowledge (MQTT 5 Receive Maximum)
    receive_maximum: Annotated[int, Field(ge=1, le=65535)] = 1000
    #: messages written in one store transaction at most
    batch_max_messages: Annotated[int, Field(ge=1)] = 500
    #: wait this long for more messages before writing a batch
    linger_ms: Annotated[int, Field(ge=0)] = 100
    #: readings stamped later than now + this are quarantined
    future_tolerance_s: Annotated[float, Field(ge=0)] = 300.0
    #: backoff while the store is unavailable
    retry_min_s: Annotated[float, Field(gt=0)] = 0.5
    retry_max_s: Annotated[float, Field(gt=0)] = 30.0


class SqliteStoreConfig(Strict):
    kind: Literal["sqlite"]
    path: Path = Path("var/coldchain.sqlite")
    #: readings are kept as they came for this many days (EN 12830 asks a year at
    #: least), then as their 1-minute and hourly roll-ups (docs/design-history.md)
    keep_raw_days: Annotated[int, Field(ge=1)] = 400
    #: the roll-ups are kept this long; the day goes after that
    keep_rollups_days: Annotated[int, Field(ge=1)] = 3650
    #: the collector compacts settled days and applies the retention this often
    compact_every_s: Annotated[float, Field(gt=0)] = 3600.0

    @model_validator(mode="after")
    def _rollups_outlive_readings(self) -> SqliteStoreConfig:
        if self.keep_rollups_days < self.keep_raw_days:
            raise ValueError(
                f"keep_rollups_days ({self.keep_rollups_days}) must be at least "
                f"keep_raw_days ({self.keep_raw_days}): the roll-ups are what stays"
            )
        return self


class InfluxStoreConfig(Strict):
    kind: Literal["influxdb"]
    url: str
    org_env: str = "COLDCHAIN_INFLUX_ORG"
    bucket_env: str = "COLDCHAIN_INFLUX_BUCKET"
    token_env: str = "COLDCHAIN_INFLUX_TOKEN"
    #: raw payloads of quarantined messages are kept here, on the collector's disk
    quarantine_path: Path = Path("var/quarantine.sqlite")

    def secrets(self) -> tuple[str, str, str]:
        """(org, bucket, token) from the environment; a missing one is a config error."""
        values = []
        problems = []
        for field in ("org_env", "bucket_env", "token_env"):
            try:
                values.append(secret(getattr(self, field), f"store.{field}"))
            except ConfigError as exc:
                problems += exc.problems
        if problems:
            raise ConfigError("environment", problems)
        return values[0], values[1], values[2]


class CollectorConfig(Strict):
    collector: CollectorSection = CollectorSection()
    mqtt: MqttConfig = MqttConfig()
    store: Annotated[SqliteStoreConfig | InfluxStoreConfig, Field(discriminator="kind")] = (
        SqliteStoreConfig(kind="sqlite")
    )


def load_collector_config(path: Path | str) -> CollectorConfig:
    path = Path(path)
    config = load_toml(path, CollectorConfig)
    store = config.store
    if isinstance(store, SqliteStoreConfig) and not store.path.is_absolute():
        store = store.model_copy(update={"path": path.parent / store.path})
    elif isinstance(store, InfluxStoreConfig) and not store.quarantine_path.is_absolute():
        store = store.model_copy(update={"quarantine_path": path.parent / store.quarantine_path})
    return config.model_copy(update={"store": store})
