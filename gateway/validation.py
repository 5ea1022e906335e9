"""Turn pydantic validation errors into lines a person can act on."""

from __future__ import annotations

from pydantic import ValidationError


def problems_of(exc: ValidationError, drop_prefix: int = 0) -> list[str]:
    """One line per problem: ``field.path: what was wrong (got X)``.

    ``drop_prefix`` removes wrapper levels (and discriminator tags) that are ours, not
    the user's.
    """
    lines = []
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err["loc"][drop_prefix:]]
        # a discriminated union adds the tag value as a path element; it is noise
        if loc and loc[0] in {
            "modbus",
            "ascii",
            "nmea",
            "modbus_tcp",
            "modbus_rtu",
            "serial_ascii",
            "nmea_gps",
        }:
            loc = loc[1:]
        loc = [p for p in loc if p not in {"modbus_tcp", "modbus_rtu", "serial_ascii", "nmea_gps"}]
        field = ".".join(loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (not expected here)"
        elif err["type"] == "missing":
            msg = "missing (required)"
        got = err.get("input")
        suffix = "" if err["type"] in {"missing"} or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{field}: {msg}{suffix}")
    return lines
