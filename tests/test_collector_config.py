"""Collector configuration, the InfluxDB line mapping and the Flux query it reads with."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldchain.settings import ConfigError
from coldchain.wire import Event, EventsBatch, Quality, Quantity, Reading, ReadingsBatch
from collector.app import subscriptions
from collector.config import InfluxStoreConfig, load_collector_config
from collector.influx_store import flux_readings, points_of
from collector.store import Incoming


def test_relative_store_path_is_next_to_the_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[store]\nkind = "sqlite"\npath = "data/cc.sqlite"\n')
    assert load_collector_config(path).store.path == tmp_path / "data/cc.sqlite"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        ('[collector]\ngroup = "a/b"\n', "collector.group", "pattern"),
        ('[collector]\nsites = ["County Store"]\n', "collector.sites.0", "pattern"),
        (
            "[collector]\nreceive_maximum = 0\n",
            "collector.receive_maximum",
            "greater than or equal",
        ),
        ('[store]\nkind = "mongodb"\n', "store", "sqlite"),
        ('[store]\nkind = "influxdb"\n', "store.url", "missing"),
        ("[collector]\nbatch = 5\n", "collector.batch", "unknown field"),
    ],
)
def test_config_error_names_file_field_and_expectation(
    tmp_path: Path, text: str, field: str, expected: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_collector_config(path)
    assert str(path) in str(info.value)
    assert field in str(info.value), str(info.value)
    assert expected in str(info.value), str(info.value)


def test_influx_secrets_come_from_the_environment_and_missing_ones_are_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = InfluxStoreConfig(kind="influxdb", url="http://influxdb:8086")
    monkeypatch.setenv("COLDCHAIN_INFLUX_ORG", "county")
    monkeypatch.delenv("COLDCHAIN_INFLUX_BUCKET", raising=False)
    monkeypatch.setenv("COLDCHAIN_INFLUX_TOKEN", "")
    with pytest.raises(ConfigError) as info:
        store.secrets()
    message = str(info.value)
    assert "COLDCHAIN_INFLUX_BUCKET" in message and "COLDCHAIN_INFLUX_TOKEN" in message
    assert "COLDCHAIN_INFLUX_ORG" not in message
    monkeypatch.setenv("COLDCHAIN_INFLUX_BUCKET", "coldchain")
    monkeypatch.setenv("COLDCHAIN_INFLUX_TOKEN", "s3cret")
    assert store.secrets() == ("county", "coldchain", "s3cret")


def test_shared_subscriptions_per_site() -> None:
    assert subscriptions("collectors", ("+",)) == [
        "$share/collectors/coldchain/v1/+/+/readings",
        "$share/collectors/coldchain/v1/+/+/events",
    ]
    assert subscriptions("", ("county-store",)) == [
        "coldchain/v1/county-store/+/readings",
        "coldchain/v1/county-store/+/events",
    ]


READINGS = ReadingsBatch(
    v=1,
    gateway="truck-02",
    site="county-fleet",
    epoch=1,
    seq=7,
    readings=[
        Reading(sensor="truck-02-reefer.air", ts_ms=1_795_437_005_000, q=Quality.OK, temp_c=-17.8),
        Reading(sensor="truck-02-rear.door", ts_ms=1_795_437_005_003, q=Quality.OK, door_open=True),
        Reading(
            sensor="truck-02-rear.temp",
            ts_ms=1_795_437_005_003,
            q=Quality.FAULT,
            fault="sentinel",
            quantity=Quantity.TEMP_C,
        ),
        Reading(
            sensor="truck-02-gps.pos",
            ts_ms=1_795_437_000_000,
            q=Quality.OK,
            lat_deg=35.441,
            lon_deg=103.312,
            speed_kmh=32.0,
        ),
    ],
)
EVENTS = EventsBatch(
    v=1,
    gateway="truck-02",
    site="county-fleet",
    epoch=1,
    seq=3,
    events=[
        Event(
            ts_ms=1_795_437_800_000,
            kind="outbox",
            source="truck-02",
            state="overflow",
            count=1200,
            detail="dropped",
        ),
    ],
)


def test_readings_and_events_map_to_line_protocol_with_series_identity() -> None:
    # times in ns: the edge ms, then the nudge naming the message (seq 7 or 3, epoch 1)
    points, readings, events = points_of([Incoming(READINGS, 0), Incoming(EVENTS, 0)])
    lines = [p.to_line_protocol() for p in points]
    assert (readings, events) == (4, 1)
    assert lines == [
        "temp_c,gateway=truck-02,sensor=truck-02-reefer.air,site=county-fleet "
        'q="ok",q_code=0i,value=-17.8 1795437005000007001',
        "door_open,gateway=truck-02,sensor=truck-02-rear.door,site=county-fleet "
        'q="ok",q_code=0i,value=true 1795437005003007001',
        "temp_c,gateway=truck-02,sensor=truck-02-rear.temp,site=county-fleet "
        'fault="sentinel",q="fault",q_code=1i 1795437005003007001',
        "position,gateway=truck-02,sensor=truck-02-gps.pos,site=county-fleet "
        'lat_deg=35.441,lon_deg=103.312,q="ok",q_code=0i,speed_kmh=32 1795437000000007001',
        "event,gateway=truck-02,kind=outbox,site=county-fleet,source=truck-02 "
        'count=1200i,detail="dropped",state="overflow" 1795437800000003001',
    ]


def test_flux_query_filters_by_series_and_escapes_values() -> None:
    query = flux_readings("coldchain", 1000, 2000, sensor='cr1"x', site=None, gateway="gw")
    assert 'from(bucket: "coldchain")' in query
    assert "range(start: time(v: 1000000000), stop: time(v: 2000000000))" in query
    assert 'r.sensor == "cr1\\"x"' in query and 'r.gateway == "gw"' in query
    assert "r.site" not in query
    assert "pivot(" in query
