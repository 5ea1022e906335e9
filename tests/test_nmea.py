"""NMEA 0183 as receivers send it (issue 17): only real fixes count, a sentence is found
after leading junk, speed and course go only with the fix of their own epoch, any talker
is read. Table-driven, sentence in, what it says out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.nmea import nmea_checksum, read_sentence, sentence_in


def nmea(body: str) -> bytes:
    return f"${body}*{nmea_checksum(body.encode()):02X}".encode()


RMC = "{t}RMC,061530.00,{status},3536.1200,N,10349.8000,E,21.6,87.5,071226,,,{mode}"
GGA = "{t}GGA,061530.00,3536.1200,N,10349.8000,E,{quality},09,0.9,1850.0,M,-30.0,M,,"


@pytest.mark.parametrize(
    ("sentence", "real"),
    [
        (RMC.format(t="GP", status="A", mode="A"), True),
        (RMC.format(t="GN", status="A", mode="D"), True),
        (RMC.format(t="BD", status="A", mode="A"), True),
        (RMC.format(t="GB", status="A", mode="A"), True),
        (RMC.format(t="GL", status="A", mode="A"), True),
        (RMC.format(t="GA", status="A", mode="A"), True),
        (RMC.format(t="GP", status="V", mode="N"), False),  # no fix
        (RMC.format(t="GP", status="A", mode="E"), False),  # dead reckoning
        (RMC.format(t="GP", status="A", mode="M"), False),  # typed in by hand
        (RMC.format(t="GP", status="A", mode="S"), False),  # a simulator
        (RMC.format(t="GP", status="A", mode="").rstrip(","), True),  # NMEA 2.2: no mode
        (GGA.format(t="GP", quality="1"), True),
        (GGA.format(t="GN", quality="2"), True),
        (GGA.format(t="BD", quality="4"), True),
        (GGA.format(t="GP", quality="5"), True),
        (GGA.format(t="GP", quality="0"), False),
        (GGA.format(t="GP", quality="3"), False),
        (GGA.format(t="GP", quality="6"), False),  # dead reckoning
        (GGA.format(t="GP", quality="7"), False),  # manual
        (GGA.format(t="GP", quality="8"), False),  # simulator
    ],
)
def test_only_a_real_fix_is_a_position(sentence: str, real: bool) -> None:
    read = read_sentence(nmea(sentence))
    assert read is not None and read.real is real
    if real:
        assert (read.lat_deg, read.lon_deg) == (35.602, 103.83)


def test_dead_reckoning_counts_where_the_profile_accepts_estimated_fixes() -> None:
    assert read_sentence(nmea(GGA.format(t="GP", quality="6")), accept_estimated=True).real  # type: ignore[union-attr]
    manual = read_sentence(nmea(GGA.format(t="GP", quality="7")), accept_estimated=True)
    assert manual is not None and not manual.real


@pytest.mark.parametrize(
    "junk",
    [b"", b"\x00\xff\x13", b"GPGGA,0615", b"$GPGSV,3,1,12", b"\r garbage $"],
)
def test_a_sentence_after_leading_junk_is_found(junk: bytes) -> None:
    line = junk + nmea(RMC.format(t="GP", status="A", mode="A"))
    read = read_sentence(sentence_in(line))
    assert read is not None and read.kind == "RMC" and read.real


def test_the_rmc_gives_speed_course_and_the_receiver_s_utc() -> None:
    read = read_sentence(nmea(RMC.format(t="GN", status="A", mode="A")))
    assert read is not None
    assert (read.speed_kmh, read.course_deg) == (40.0, 87.5)  # 21.6 knots
    assert read.utc_ms == int(datetime(2026, 12, 7, 6, 15, 30, tzinfo=UTC).timestamp() * 1000)
    assert read.epoch == "061530.00"


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"$GPRMC,061530.00,A*00", "checksum"),
        (b"GPRMC no dollar", "checksum"),
        (nmea("GPRMC,061530.00,A,35x6.12,N,10349.8,E,1,2,071226,,,A"), "malformed RMC"),
        (nmea("GPGGA,061530.00,3536.12,N"), "malformed GGA"),
    ],
)
def test_a_garbled_sentence_says_what_is_wrong(line: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        read_sentence(line)


def test_other_sentences_are_valid_and_unused() -> None:
    assert read_sentence(nmea("GPGSV,3,1,12,01,40,083,46")) is None
