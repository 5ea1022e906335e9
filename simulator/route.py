"""Village delivery routes and the NMEA 0183 sentences a truck's GPS would print."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import UTC, datetime

EARTH_RADIUS_KM = 6371.0


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def bearing_deg(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    y = math.sin(lon2 - lon1) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    return (math.degrees(math.atan2(y, x)) + 360) % 360


@dataclass
class Position:
    lat_deg: float
    lon_deg: float
    speed_kmh: float
    course_deg: float
    stopped_at: str | None  # the village the truck is unloading at, if any


@dataclass
class Route:
    """A round trip from the county cold store through villages and back."""

    name: str
    #: (name, lat, lon); the first and last stops are the county cold store
    stops: list[tuple[str, float, float]]
    speed_kmh: float = 32.0
    stop_min: float = 12.0

    @property
    def length_km(self) -> float:
        pts = [(lat, lon) for _, lat, lon in self.stops]
        return sum(haversine_km(a, b) for a, b in itertools.pairwise(pts))

    @property
    def period_min(self) -> float:
        return self.length_km / self.speed_kmh * 60 + self.stop_min * (len(self.stops) - 1)

    def at(self, minute: float) -> Position:
        t = minute % self.period_min
        for (name_a, lat_a, lon_a), (_, lat_b, lon_b) in itertools.pairwise(self.stops):
            if t < self.stop_min:
                return Position(lat_a, lon_a, 0.0, 0.0, name_a)
            t -= self.stop_min
            leg_min = haversine_km((lat_a, lon_a), (lat_b, lon_b)) / self.speed_kmh * 60
            if t < leg_min:
                f = t / leg_min
                return Position(
                    lat_a + (lat_b - lat_a) * f,
                    lon_a + (lon_b - lon_a) * f,
                    self.speed_kmh,
                    bearing_deg((lat_a, lon_a), (lat_b, lon_b)),
                    None,
                )
            t -= leg_min
        name, lat, lon = self.stops[-1]
        return Position(lat, lon, 0.0, 0.0, name)


def _checksum(body: str) -> str:
    value = 0
    for ch in body.encode("ascii"):
        value ^= ch
    return f"{value:02X}"


def _lat(lat: float) -> tuple[str, str]:
    d = int(abs(lat))
    return f"{d:02d}{(abs(lat) - d) * 60:07.4f}", "N" if lat >= 0 else "S"


def _lon(lon: float) -> tuple[str, str]:
    d = int(abs(lon))
    return f"{d:03d}{(abs(lon) - d) * 60:07.4f}", "E" if lon >= 0 else "W"


def nmea_sentences(pos: Position, when: datetime | None = None) -> list[bytes]:
    when = when or datetime.now(UTC)
    hms = when.strftime("%H%M%S.00")
    lat, ns = _lat(pos.lat_deg)
    lon, ew = _lon(pos.lon_deg)
    knots = pos.speed_kmh / 1.852
    rmc = (
        f"GPRMC,{hms},A,{lat},{ns},{lon},{ew},{knots:.1f},{pos.course_deg:.1f},"
        f"{when.strftime('%d%m%y')},,,A"
    )
    gga = f"GPGGA,{hms},{lat},{ns},{lon},{ew},1,09,0.9,1850.0,M,-30.0,M,,"
    return [f"${s}*{_checksum(s)}\r\n".encode("ascii") for s in (rmc, gga)]
