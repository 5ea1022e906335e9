"""Baseline for the benchmarks: Python with the gateway's libraries imported, idle."""

import asyncio
import sys

import gateway.app  # noqa: F401  (imports paho, pymodbus, pydantic, msgspec, sqlite3)

asyncio.run(asyncio.sleep(float(sys.argv[1])))
