"""Grafana as code: the data sources and the dashboards, built from the names the
InfluxDB writer uses (measurement per quantity, tags ``site``/``gateway``/``sensor``,
fields ``value``, ``lat_deg``, ``lon_deg``, ``speed_kmh``) and the alert service's tables.

``provision()`` creates or updates them through grafana-client, by uid, so running it
twice changes nothing; ``dashboards()`` is also written to files for Grafana's own
file provisioning in docker-compose (a test keeps the two equal).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerts.profiles import ProductProfile, load_profiles

INFLUX_UID = "coldchain-influxdb"
POSTGRES_UID = "coldchain-postgres"
FOLDER_UID = "coldchain"
INFLUX = {"type": "influxdb", "uid": INFLUX_UID}
POSTGRES = {"type": "grafana-postgresql-datasource", "uid": POSTGRES_UID}

#: what the InfluxDB writer stores (collector/influx_store.py), checked by a test
MEASUREMENTS = ("temp_c", "rh_pct", "setpoint_c", "door_open", "position")
FIELDS = ("value", "lat_deg", "lon_deg", "speed_kmh")
#: the alert service's tables the SQL panels read, checked against its models by a test
TABLES = ("alarms", "breaches", "locations", "sensor_assignments", "sites")

Json = dict[str, Any]


@dataclass(frozen=True)
class DataSources:
    influx_url: str
    influx_org: str
    influx_bucket: str
    influx_token: str
    postgres_host: str
    postgres_db: str
    postgres_user: str
    postgres_password: str

    def influx(self) -> Json:
        return {
            "uid": INFLUX_UID,
            "name": "coldchain InfluxDB",
            "type": "influxdb",
            "access": "proxy",
            "url": self.influx_url,
            "jsonData": {
                "version": "Flux",
                "organization": self.influx_org,
                "defaultBucket": self.influx_bucket,
            },
            "secureJsonData": {"token": self.influx_token},
        }

    def postgres(self) -> Json:
        return {
            "uid": POSTGRES_UID,
            "name": "coldchain PostgreSQL",
            "type": "grafana-postgresql-datasource",
            "access": "proxy",
            "url": self.postgres_host,
            "user": self.postgres_user,
            "jsonData": {"database": self.postgres_db, "sslmode": "disable"},
            "secureJsonData": {"password": self.postgres_password},
        }


def _flux(measurement: str, field: str, extra: str = "") -> str:
    return (
        'from(bucket: "${bucket}")\n'
        "  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n"
        f'  |> filter(fn: (r) => r._measurement == "{measurement}" and r._field == "{field}")\n'
        "  |> filter(fn: (r) => r.site =~ /^${site:regex}$/)\n"
        f"{extra}"
        "  |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: true)\n"
        "  |> map(fn: (r) => ({r with _field: r.sensor}))\n"
    )


def _variables(bucket: str, with_sensors_of: list[ProductProfile] | None = None) -> Json:
    variables: list[Json] = [
        {
            "name": "bucket",
            "type": "constant",
            "query": bucket,
            "hide": 2,
        },
        {
            "name": "site",
            "type": "query",
            "datasource": INFLUX,
            "query": 'import "influxdata/influxdb/schema"\n'
            'schema.tagValues(bucket: "${bucket}", tag: "site")',
            "includeAll": True,
            "multi": True,
            "refresh": 1,
        },
    ]
    for profile in with_sensors_of or []:
        variables.append(
            {
                "name": _var(profile),
                "type": "query",
                "datasource": POSTGRES,
                "query": (
                    "SELECT a.sensor FROM sensor_assignments a JOIN locations l "
                    "ON l.id = a.location_id "
                    f"WHERE l.profile_id = '{profile.id}' AND a.until_ms IS NULL "
                    "AND a.role IN ('air', 'product')"
                ),
                "includeAll": True,
                "multi": True,
                "hide": 2,
                "refresh": 1,
            }
        )
    return {"list": variables}


def _var(profile: ProductProfile) -> str:
    return "sensors_" + profile.id.replace("-", "_")


def _thresholds(profile: ProductProfile) -> Json:
    """Limit bands: red beyond critical, amber beyond warning, green in the keep range."""
    steps: list[Json] = []
    low_crit, low_warn = profile.critical.low_c, profile.warning.low_c
    high_warn, high_crit = profile.warning.high_c, profile.critical.high_c
    steps.append({"color": "red" if low_crit is not None else "green", "value": None})
    if low_crit is not None:
        steps.append({"color": "orange", "value": low_crit})
    if low_warn is not None:
        steps.append({"color": "green", "value": low_warn})
    if high_warn is not None:
        steps.append({"color": "orange", "value": high_warn})
    if high_crit is not None:
        steps.append({"color": "red", "value": high_crit})
    return {"mode": "absolute", "steps": steps}


def _timeseries(
    panel_id: int, title: str, targets: list[Json], y: int, unit: str = "celsius", **field: Any
) -> Json:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "datasource": INFLUX,
        "gridPos": {"h": 9, "w": 24, "x": 0, "y": y},
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {"spanNulls": False, "lineWidth": 1},  # gaps stay gaps
                **field,
            },
            "overrides": [],
        },
        "targets": targets,
    }


def _dashboard(uid: str, title: str, panels: list[Json], variables: Json) -> Json:
    return {
        "uid": uid,
        "title": title,
        "tags": ["coldchain"],
        "timezone": "browser",
        "schemaVersion": 39,
        "time": {"from": "now-24h", "to": "now"},
        "refresh": "30s",
        "templating": variables,
        "panels": panels,
    }


def dashboards(bucket: str = "coldchain") -> dict[str, Json]:
    """uid: dashboard JSON (``bucket``: the InfluxDB bucket the collectors write)."""
    profiles = list(load_profiles().values())
    overview = _dashboard(
        "coldchain-overview",
        "coldchain · site overview",
        [
            {
                "id": 1,
                "type": "stat",
                "title": "Latest temperature per sensor",
                "datasource": INFLUX,
                "gridPos": {"h": 8, "w": 24, "x": 0, "y": 0},
                "options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"},
                "fieldConfig": {"defaults": {"unit": "celsius", "decimals": 1}, "overrides": []},
                "targets": [{"refId": "A", "query": _flux("temp_c", "value")}],
            },
            _timeseries(
                2,
                "Relative humidity",
                [{"refId": "A", "query": _flux("rh_pct", "value")}],
                8,
                unit="percent",
            ),
            _timeseries(
                3,
                "Doors open (1 = open)",
                [{"refId": "A", "query": _flux("door_open", "value")}],
                17,
                unit="none",
            ),
        ],
        _variables(bucket),
    )
    rooms = _dashboard(
        "coldchain-rooms",
        "coldchain · rooms and compartments",
        [
            _timeseries(
                i + 1,
                f"{p.name} ({p.id}): temperature with limit bands",
                [
                    {
                        "refId": "A",
                        "query": _flux(
                            "temp_c",
                            "value",
                            f"  |> filter(fn: (r) => contains(value: r.sensor, "
                            f"set: ${{{_var(p)}:json}}))\n",
                        ),
                    },
                    {"refId": "B", "query": _flux("setpoint_c", "value")},
                ],
                9 * i,
                thresholds=_thresholds(p),
                custom={
                    "spanNulls": False,
                    "lineWidth": 1,
                    "thresholdsStyle": {"mode": "line+area"},
                },
            )
            for i, p in enumerate(profiles)
        ],
        _variables(bucket, profiles),
    )
    trucks = _dashboard(
        "coldchain-trucks",
        "coldchain · truck routes",
        [
            {
                "id": 1,
                "type": "geomap",
                "title": "Trucks on their routes",
                "datasource": INFLUX,
                "gridPos": {"h": 16, "w": 24, "x": 0, "y": 0},
                "options": {
                    "view": {"id": "coords", "lat": 35.6, "lon": 103.2, "zoom": 9},
                    "layers": [
                        {
                            "type": "route",
                            "name": "routes",
                            "location": {
                                "mode": "coords",
                                "latitude": "lat_deg",
                                "longitude": "lon_deg",
                            },
                        }
                    ],
                },
                "targets": [
                    {
                        "refId": "A",
                        "query": (
                            'from(bucket: "${bucket}")\n'
                            "  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n"
                            '  |> filter(fn: (r) => r._measurement == "position" and '
                            '(r._field == "lat_deg" or r._field == "lon_deg" or '
                            'r._field == "speed_kmh"))\n'
                            '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], '
                            'valueColumn: "_value")\n'
                        ),
                    }
                ],
            }
        ],
        _variables(bucket),
    )
    alarms = _dashboard(
        "coldchain-alarms",
        "coldchain · alarms",
        [
            {
                "id": 1,
                "type": "barchart",
                "title": "Alarms raised per day and level",
                "datasource": POSTGRES,
                "gridPos": {"h": 9, "w": 24, "x": 0, "y": 0},
                "targets": [
                    {
                        "refId": "A",
                        "format": "table",
                        "rawSql": (
                            "SELECT to_char(to_timestamp(raised_ms / 1000), 'YYYY-MM-DD') "
                            "AS day, level, count(*) AS alarms FROM alarms "
                            "WHERE raised_ms BETWEEN $__from AND $__to GROUP BY 1, 2 ORDER BY 1"
                        ),
                    }
                ],
            },
            {
                "id": 2,
                "type": "table",
                "title": "Open alarms",
                "datasource": POSTGRES,
                "gridPos": {"h": 10, "w": 24, "x": 0, "y": 9},
                "targets": [
                    {
                        "refId": "A",
                        "format": "table",
                        "rawSql": (
                            "SELECT a.id, a.level, a.state, b.kind, l.name AS location, "
                            "s.name AS site, to_timestamp(b.start_ms / 1000) AS since, "
                            "b.batches, a.acknowledged_by FROM alarms a "
                            "JOIN breaches b ON b.id = a.breach_id "
                            "LEFT JOIN locations l ON l.id = b.location_id "
                            "LEFT JOIN sites s ON s.id = b.site_id "
                            "WHERE a.state IN ('active', 'acknowledged') "
                            "ORDER BY a.level, a.raised_ms"
                        ),
                    }
                ],
            },
        ],
        {"list": []},
    )
    return {d["uid"]: d for d in (overview, rooms, trucks, alarms)}


def export(directory: Path) -> list[Path]:
    """The dashboards as files for Grafana's file provisioning."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for uid, dashboard in dashboards().items():
        path = directory / f"{uid}.json"
        path.write_text(json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n")
        written.append(path)
    return written


def provision(api: Any, sources: DataSources) -> list[str]:
    """Create or update the data sources, the folder and the dashboards through a
    ``grafana_client.GrafanaApi``; returns what was done, one line each."""
    from grafana_client.client import GrafanaClientError

    done = []
    for source in (sources.influx(), sources.postgres()):
        try:
            api.datasource.get_datasource_by_uid(source["uid"])
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            api.datasource.create_datasource(source)
            done.append(f"data source {source['uid']} created")
        else:
            api.datasource.update_datasource_by_uid(source["uid"], source)
            done.append(f"data source {source['uid']} updated")
    try:
        api.folder.get_folder(FOLDER_UID)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.folder.create_folder("coldchain", uid=FOLDER_UID)
        done.append(f"folder {FOLDER_UID} created")
    for uid, dashboard in dashboards(sources.influx_bucket).items():
        api.dashboard.update_dashboard(
            {"dashboard": dashboard, "folderUid": FOLDER_UID, "overwrite": True}
        )
        done.append(f"dashboard {uid} provisioned")
    return done
