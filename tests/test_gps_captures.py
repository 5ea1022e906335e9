"""GPS and BeiDou receivers as they talk (issue 17): bursts recorded as a GN receiver
(ATGM336H, NMEA 4.1: GGA before RMC, GSA/GSV/VTG/ZDA between) and a BD receiver (RMC
before GGA) send them, checksums as sent, fed line by line to the gateway's GPS device.
A position goes out once both sentences of its epoch are read, with that epoch's speed,
course, satellites and HDOP; every GGA fix quality is told apart."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coldchain.wire import Event, Reading
from gateway.config import NmeaGpsBus
from gateway.health import Health
from gateway.nmea import read_sentence
from gateway.outbox import Outbox
from gateway.outbox_file import AsyncOutbox
from gateway.serial_bus import GpsDevice
from gateway.sink import Sink

# ATGM336H, one fix a second, GPS + BeiDou, near Lanzhou
GN_BURST = [
    b"$GNGGA,021530.000,3603.4521,N,10349.8873,E,1,14,0.8,1521.3,M,-31.2,M,,*5C",
    b"$GNGLL,3603.4521,N,10349.8873,E,021530.000,A,A*4D",
    b"$GNGSA,A,3,05,13,15,18,20,29,,,,,,,1.5,0.8,1.2,1*3D",
    b"$GNGSA,A,3,201,203,206,209,213,216,223,,,,,,1.5,0.8,1.2,4*00",
    b"$GPGSV,3,1,10,05,62,317,38,13,48,045,41,15,36,106,40,18,28,162,35,0*61",
    b"$BDGSV,2,1,07,201,37,145,42,203,48,198,39,206,61,012,44,209,55,228,40,0*71",
    b"$GNRMC,021530.000,A,3603.4521,N,10349.8873,E,28.43,91.27,071226,,,A,V*00",
    b"$GNVTG,91.27,T,,M,28.43,N,52.65,K,A*17",
    b"$GNZDA,021530.000,07,12,2026,00,00*4F",
    b"$GNGGA,021531.000,3603.4524,N,10349.9049,E,1,14,0.8,1521.1,M,-31.2,M,,*5A",
    b"$GNRMC,021531.000,A,3603.4524,N,10349.9049,E,28.51,91.30,071226,,,A,V*01",
]
# a BeiDou-only receiver parked near Chengdu: RMC first
BD_BURST = [
    b"$BDRMC,083012.00,A,3036.2050,N,10404.1732,E,0.02,,071226,,,A*5C",
    b"$BDGGA,083012.00,3036.2050,N,10404.1732,E,1,08,1.3,512.8,M,-41.6,M,,*58",
]
# (GGA as recorded, a real fix, satellites, HDOP)
QUALITIES = [
    (b"$GNGGA,040001.000,3603.4521,N,10349.8873,E,0,00,99.9,,M,,M,,*40", False, None, None),
    (GN_BURST[0], True, 14, 0.8),
    (b"$GNGGA,040003.000,3603.4600,N,10349.9100,E,2,12,0.9,1521.0,M,-31.2,M,1.0,0000*7A",
     True, 12, 0.9),
    (b"$GNGGA,040006.000,3603.4600,N,10349.9100,E,3,12,0.9,1521.0,M,-31.2,M,,*51",
     False, None, None),
    (b"$GNGGA,040004.000,3603.4600,N,10349.9100,E,4,22,0.5,1521.0,M,-31.2,M,1.0,0000*74",
     True, 22, 0.5),
    (b"$GNGGA,040005.000,3603.4600,N,10349.9100,E,5,21,0.6,1521.0,M,-31.2,M,1.0,0000*74",
     True, 21, 0.6),
    (b"$GNGGA,040002.000,3603.4600,N,10349.9100,E,6,00,99.9,1521.0,M,-31.2,M,,*63",
     False, None, None),
    (b"$GNGGA,040007.000,3603.4600,N,10349.9100,E,7,00,,1521.0,M,-31.2,M,,*70", False, None, None),
    (b"$GNGGA,040008.000,3603.4600,N,10349.9100,E,8,12,1.0,1521.0,M,-31.2,M,,*5C",
     False, None, None),
]  # fmt: skip


@pytest.mark.parametrize(("line", "real", "sats", "hdop"), QUALITIES)
def test_every_gga_fix_quality_as_recorded(
    line: bytes, real: bool, sats: int | None, hdop: float | None
) -> None:
    sentence = read_sentence(line)
    assert sentence is not None and sentence.real is real
    assert (sentence.sats, sentence.hdop) == (sats, hdop)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[GpsDevice, list[Event]]]:
    yield from make_receiver(tmp_path, '["RMC", "GGA"]')


def make_receiver(tmp_path: Path, sentences: str) -> Iterator[tuple[GpsDevice, list[Event]]]:
    profile = tmp_path / "truck-gps.toml"  # the shipped ATGM336H profile, every fix published
    shipped = Path(__file__).parents[1] / "firmware_configs/serial/beidou_atgm336h.toml"
    text = shipped.read_text().replace("interval_s = 30", "interval_s = 0.000001")
    profile.write_text(text.replace('sentences = ["RMC", "GGA"]', f"sentences = {sentences}"))
    config = NmeaGpsBus.model_validate(
        {
            "kind": "nmea_gps",
            "name": "gps",
            "port": "/dev/null",
            "devices": [{"id": "truck-02-gps", "profile": str(profile)}],
        }
    )
    outbox = AsyncOutbox(
        Outbox(tmp_path / "o.sqlite", gateway="g", site="s", max_rows=9, max_age_h=1)
    )
    events: list[Event] = []
    try:
        yield GpsDevice(config, Sink(outbox, lambda: None), Health(emit=events.append)), events
    finally:
        outbox.close()


def feed(device: GpsDevice, lines: list[bytes], ts0: int = 1_796_000_000_000) -> list[Reading]:
    return [r for n, line in enumerate(lines) for r in device.parse(line, ts0 + n)]


def test_a_gn_receiver_s_position_carries_its_own_epoch_s_speed_and_quality(
    receiver: tuple[GpsDevice, list[Event]],
) -> None:
    device, events = receiver
    times: list[int] = []
    device.on_time = times.append
    first, second = feed(device, GN_BURST)
    assert (first.lat_deg, first.lon_deg) == (36.057535, 103.831455)
    assert (first.speed_kmh, first.course_deg, first.sats, first.hdop) == (52.65, 91.27, 14, 0.8)
    assert first.ts_ms == 1_796_000_000_006  # when the epoch's RMC was read
    assert (second.speed_kmh, second.course_deg, second.lon_deg) == (52.8, 91.3, 103.831748)
    # the receiver's UTC, offered as the gateway's clock reference
    at = datetime(2026, 12, 7, 2, 15, 30, tzinfo=UTC).timestamp() * 1000
    assert times == [at, at + 1000]
    assert [(e.kind, e.state) for e in events] == [("gps", "fix")]


def test_a_bd_receiver_sending_rmc_first_is_read_the_same(
    receiver: tuple[GpsDevice, list[Event]],
) -> None:
    device, _ = receiver
    (fix,) = feed(device, BD_BURST)
    assert (fix.lat_deg, fix.lon_deg, fix.speed_kmh, fix.sats, fix.hdop) == (
        30.603417,
        104.069553,
        0.04,
        8,
        1.3,
    )


def test_an_epoch_whose_pair_never_comes_goes_alone_at_the_next(
    receiver: tuple[GpsDevice, list[Event]],
) -> None:
    """A receiver set to send GGA only, under a profile that reads both: each fix is
    published when the next epoch starts, with its quality and no speed."""
    device, _ = receiver
    ggas = [GN_BURST[0], GN_BURST[9], QUALITIES[2][0]]
    published = feed(device, ggas)
    assert [(r.sats, r.speed_kmh) for r in published] == [(14, None), (14, None)]


def test_a_gga_only_profile_publishes_each_fix_at_once(tmp_path: Path) -> None:
    for device, _ in make_receiver(tmp_path, '["GGA"]'):
        (fix,) = feed(device, [b"\x00\xff\x13$GN" + GN_BURST[0][3:]])  # junk before the '$'
        assert (fix.sats, fix.hdop, fix.speed_kmh) == (14, 0.8, None)
