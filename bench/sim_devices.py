"""Simulated Modbus TCP devices for the benchmarks, in a process of their own.

Usage: python bench/sim_devices.py PROFILE PORT [PORT ...]
Prints "ready", then the number of requests received so far on each SIGUSR1;
stops on SIGTERM. Each channel's temperature takes a random walk of ±0.1 °C a second
(a real cold room's probes are never constant: compression is measured on real-looking
values, not on a repeated one).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys

from simulator.devices import ModbusServer, ModbusUnit


async def main(profile: str, ports: list[int]) -> None:
    requests = 0
    devices: list[dict[str, float | bool]] = []
    servers = []
    for n, port in enumerate(ports):
        values: dict[str, float | bool] = {f"ch{i}": -18.0 - i / 10 - n for i in range(1, 11)}
        devices.append(values)
        server = ModbusServer(
            [ModbusUnit(1, profile, lambda values=values: values)],  # type: ignore[misc]
            tcp_port=port,
        )
        passthrough = server.server.trace_packet

        def count(sending: bool, packet: bytes, passthrough=passthrough) -> bytes:  # type: ignore[no-untyped-def]
            nonlocal requests
            if not sending:
                requests += 1
            return passthrough(sending, packet)  # type: ignore[no-any-return]

        server.server.trace_packet = count
        await server.start()
        servers.append(server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: print(requests, flush=True))
    print("ready", flush=True)
    walk = random.Random(17)
    while not stop.is_set():
        for values in devices:
            for name in values:
                values[name] = round(float(values[name]) + walk.choice((-0.1, 0.0, 0.1)), 1)
        for server in servers:
            await server.refresh()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    for server in servers:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], [int(p) for p in sys.argv[2:]]))
