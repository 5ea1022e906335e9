"""Simulated Modbus TCP devices for the benchmarks, in a process of their own.

Usage: python bench/sim_devices.py PROFILE PORT [PORT ...]
Prints "ready", then the number of requests received so far on each SIGUSR1;
stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from simulator.devices import ModbusServer, ModbusUnit


async def main(profile: str, ports: list[int]) -> None:
    requests = 0
    values: dict[str, float | bool] = {f"ch{i}": -18.0 - i / 10 for i in range(1, 11)}
    servers = []
    for port in ports:
        server = ModbusServer([ModbusUnit(1, profile, lambda: values)], tcp_port=port)
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
    await stop.wait()
    for server in servers:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], [int(p) for p in sys.argv[2:]]))
