"""The alarm history: every alarm, filtered by site, location, batch, level, kind, state
and time, newest first, paged, as CSV; on SQLite and PostgreSQL through the real API."""

from __future__ import annotations

import csv
import io

import pytest

from alerts.repo.users import Role
from coldchain.judging.breach import Kind, Level
from tests.api_server import Api, an_alarm

MIN = 60_000
HOUR = 60 * MIN

pytestmark = pytest.mark.e2e


def some_alarms(api: Api) -> dict[str, int]:
    """Five alarms of different places, kinds, levels, states and times."""
    ids = {
        "cr2-critical": an_alarm(api, "cr2-ctrl.air"),
        "cr2-warning-cleared": an_alarm(
            api, "cr2-th.temp", level=Level.WARNING, ended=True, start_ms=api.t0_ms + HOUR
        ),
        "cr1-low": an_alarm(api, "cr1-ctrl.air", kind=Kind.LOW, start_ms=api.t0_ms - 3 * HOUR),
        "cr1-door-closed": an_alarm(
            api, "cr1-ctrl.door", kind=Kind.DOOR_OPEN, ended=True, start_ms=api.t0_ms - 2 * HOUR
        ),
        "ts": an_alarm(api, "ts-probe.temp", gateway="ts-gw", start_ms=api.t0_ms - HOUR),
    }
    with api.client(Role.OPERATOR) as operator:
        closed = operator.post(
            f"/api/alarms/{ids['cr1-door-closed']}/ack", json={"comment": "door shut"}
        )
        assert closed.json()["state"] == "closed", closed.text
    return ids


def test_the_alarm_history_filters_pages_and_exports(api: Api) -> None:
    ids = some_alarms(api)
    with api.client(Role.VIEWER) as viewer:

        def found(**params: object) -> list[int]:
            reply = viewer.get("/api/alarms", params={"scope": "all", "order": "newest", **params})
            assert reply.status_code == 200, reply.text
            return [a["id"] for a in reply.json()]

        order = ("cr2-warning-cleared", "cr2-critical", "ts", "cr1-door-closed", "cr1-low")
        newest_first = [ids[k] for k in order]
        assert found() == newest_first
        assert found(location="cr1") == [ids["cr1-door-closed"], ids["cr1-low"]]
        assert found(site="transfer-station") == [ids["ts"]]
        assert found(level="warning") == [ids["cr2-warning-cleared"]]
        assert found(kind="door_open") == [ids["cr1-door-closed"]]
        assert found(state="closed") == [ids["cr1-door-closed"]]
        assert found(state="cleared") == [ids["cr2-warning-cleared"]]
        every = viewer.get("/api/alarms", params={"scope": "all", "order": "newest"}).json()
        with_yak = [a["id"] for a in every if "B-YAK-0412" in a["batches"]]
        assert ids["cr1-low"] in with_yak and ids["cr2-critical"] not in with_yak
        assert found(batch="B-YAK-0412") == with_yak
        # a batch id is matched as it is: % and _ are not wildcards
        assert found(batch="%") == [] and found(batch="B-YAK-04_2") == []
        # the time raised, from (inclusive) to (exclusive)
        assert found(from_ms=api.t0_ms - HOUR, to_ms=api.t0_ms + HOUR) == [
            ids["cr2-critical"],
            ids["ts"],
        ]
        # pages: two at a time, in the same order, nothing twice, nothing left out
        pages = [found(limit=2, offset=n) for n in (0, 2, 4, 6)]
        assert [i for p in pages for i in p] == newest_first and pages[-1] == []
        refused = viewer.get("/api/alarms", params={"level": "shouting"})
        assert refused.status_code == 422
        exported = viewer.get("/api/alarms/export.csv", params={"location": "cr1"})
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [int(r["id"]) for r in rows] == [ids["cr1-door-closed"], ids["cr1-low"]]
    assert rows[0]["ack_comment"] == "door shut" and rows[0]["state"] == "closed"
    assert rows[1]["batches"] == " ".join(
        next(a for a in every if a["id"] == ids["cr1-low"])["batches"]
    )
    assert rows[0]["raised_utc"].endswith("Z")
    assert rows[0]["raised_local"].endswith("(UTC+08:00)")
