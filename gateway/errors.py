"""Errors of the gateway package.

- :class:`ConfigError`: a config or device profile file is invalid; the message names
  the file, the field and what was expected. Raised at start-up only.
- :class:`DeviceError`: one request to a device failed. Its two subclasses are kept
  apart on purpose, because they call for different handling:

  - :class:`NoResponse`: nobody answered (timeout, connection refused or lost, I/O
    error). The device or the line is unreachable: back off before asking again.
  - :class:`ExceptionResponse`: the device answered "no" with a Modbus exception code.
    The line works; the request or the device state is wrong.

  - :class:`BadResponse`: the device answered, but not what was asked (fewer registers,
    an odd byte count, another function code). The line works; the device or a
    converter on the line is broken. Its values are faults, never decoded.

- :class:`GarbledLine`: a serial line that does not match the device's line format or
  fails its checksum. It is kept aside, never decoded into a value.
- :class:`TaskFailed`: a task of the running gateway (a bus, the publisher and its
  helpers, the heartbeat) died of an error no retry mends: the gateway stops, and its
  command exits non-zero so that its unit restarts it.

Library exceptions (pymodbus, pyserial) are translated into these at the bus drivers;
nothing above the drivers sees a library exception.
"""

from __future__ import annotations

from coldchain.settings import ConfigError

__all__ = [
    "BadResponse",
    "ConfigError",
    "DeviceError",
    "ExceptionResponse",
    "GarbledLine",
    "NoResponse",
    "TaskFailed",
]


class GatewayError(Exception):
    """Base of every error this package raises on purpose."""


class DeviceError(GatewayError):
    """A request to a device failed."""

    state: str = "error"

    def __init__(self, device: str, detail: str) -> None:
        self.device = device
        self.detail = detail
        super().__init__(f"{device}: {detail}")


class NoResponse(DeviceError):
    state = "no_response"


class ExceptionResponse(DeviceError):
    state = "exception"

    def __init__(self, device: str, code: int, detail: str) -> None:
        self.code = code
        super().__init__(device, detail)


class BadResponse(DeviceError):
    state = "garbled"


class GarbledLine(DeviceError):
    state = "garbled"

    def __init__(self, device: str, detail: str, raw: bytes) -> None:
        self.raw = raw
        super().__init__(device, detail)


class TaskFailed(GatewayError):
    """A gateway task died; the gateway stopped because of it."""
