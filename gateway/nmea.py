"""NMEA 0183, as GPS and BeiDou receivers speak it: checksums, and the RMC and GGA
sentences read into what a position needs (docs/design-gateway.md). Only real fixes
count by default: RMC status A with a mode that is not estimated, manual or simulated;
GGA quality 1, 2, 4 or 5. Any talker (GP, GN, BD, GB, GL, GA …)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


def nmea_checksum(body: bytes) -> int:
    """XOR of the bytes between '$' and '*'."""
    value = 0
    for byte in body:
        value ^= byte
    return value


def check_nmea_checksum(line: bytes) -> bool:
    if not line.startswith(b"$") or b"*" not in line:
        return False
    body, _, given = line[1:].rpartition(b"*")
    try:
        return nmea_checksum(body) == int(given[:2], 16)
    except ValueError:
        return False


def nmea_coord(value: str, hemisphere: str, degree_digits: int) -> float:
    degrees = int(value[:degree_digits])
    minutes = float(value[degree_digits:])
    coord = degrees + minutes / 60
    return -coord if hemisphere in ("S", "W") else coord


def rmc_utc_ms(hhmmss: str, ddmmyy: str) -> int | None:
    """The UTC of an RMC fix (time ``hhmmss.ss``, date ``ddmmyy``); None if absent."""
    if len(hhmmss) < 6 or len(ddmmyy) != 6:
        return None
    try:
        ms = round(float(hhmmss[6:]) * 1000) if hhmmss[6:7] == "." else 0
        when = datetime(
            2000 + int(ddmmyy[4:]),
            int(ddmmyy[2:4]),
            int(ddmmyy[:2]),
            int(hhmmss[:2]),
            int(hhmmss[2:4]),
            int(hhmmss[4:6]),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    return int(when.timestamp()) * 1000 + ms


#: GGA fix qualities that are a position measured now: 1 GPS, 2 DGPS, 4 RTK fixed,
#: 5 RTK float (not 0 invalid, 3 PPS, 6 dead reckoning, 7 manual, 8 simulator)
REAL_GGA_QUALITY = frozenset({"1", "2", "4", "5"})
#: RMC mode indicators (NMEA 2.3 and later) that are not one: estimated (dead
#: reckoning), manual, simulator, not valid
NOT_REAL_RMC_MODE = frozenset({"E", "M", "S", "N"})


@dataclass(frozen=True, slots=True)
class Sentence:
    """One RMC or GGA sentence, read: ``epoch`` is its UTC time of day (hhmmss.ss), the
    key that pairs an RMC with the GGA of the same fix."""

    kind: str
    epoch: str
    real: bool
    lat_deg: float | None = None
    lon_deg: float | None = None
    speed_kmh: float | None = None
    course_deg: float | None = None
    utc_ms: int | None = None
    #: GGA's fix quality: satellites in use and horizontal dilution of precision
    sats: int | None = None
    hdop: float | None = None


def sentence_in(line: bytes) -> bytes:
    """The sentence itself: from its last '$' (a line may start with the junk of a
    reconnection or a half-sent sentence)."""
    start = line.rfind(b"$")
    return line[start:] if start > 0 else line


def read_sentence(line: bytes, accept_estimated: bool = False) -> Sentence | None:
    """An RMC or GGA sentence (any talker: GP, GN, BD, GB, GL, GA …); None for other
    sentences; ValueError (with what is wrong) for a garbled or malformed one."""
    if not check_nmea_checksum(line):
        raise ValueError("NMEA checksum mismatch or no checksum")
    try:
        f = line[1 : line.rindex(b"*")].decode("ascii").split(",")
    except UnicodeDecodeError:
        raise ValueError("not ASCII") from None
    kind = f[0][2:] if len(f[0]) == 5 else ""
    try:
        if kind == "RMC":
            mode = f[12][:1] if len(f) > 12 else ""
            if f[2] != "A" or (mode in NOT_REAL_RMC_MODE and not accept_estimated):
                return Sentence(kind, f[1], False)
            speed = round(float(f[7]) * 1.852, 2) if f[7] else None
            course = float(f[8]) if f[8] else None
            return Sentence(
                kind, f[1], True, *_position(f, 3), speed, course, rmc_utc_ms(f[1], f[9])
            )
        if kind == "GGA":
            if f[6] not in REAL_GGA_QUALITY and not (accept_estimated and f[6] == "6"):
                return Sentence(kind, f[1], False)
            sats = int(f[7]) if f[7] else None
            hdop = float(f[8]) if f[8] else None
            return Sentence(kind, f[1], True, *_position(f, 2), sats=sats, hdop=hdop)
    except (ValueError, IndexError):
        raise ValueError(f"malformed {kind} sentence") from None
    return None


def _position(f: list[str], at: int) -> tuple[float, float]:
    """Latitude and longitude from the four fields from ``at`` (value, N/S, value, E/W)."""
    return round(nmea_coord(f[at], f[at + 1], 2), 6), round(nmea_coord(f[at + 2], f[at + 3], 3), 6)
