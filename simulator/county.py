"""The simulated county cold chain: a county cold store, two trucks on village routes and
a transfer station, each with the devices its gateway reads, and scripted events that
break the chain. ``County.start()`` brings up real servers and pty pairs and writes one
gateway config per site or truck.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from simulator.broker import free_port
from simulator.devices import (
    LineWriter,
    ModbusServer,
    ModbusUnit,
    PtyPair,
    ascii_probe_line,
)
from simulator.link import Uplink
from simulator.route import Route, nmea_sentences
from simulator.thermal import Space

log = logging.getLogger("coldchain.sim")

COUNTY_STORE = (35.6012, 103.2105)  # a county seat in the Gansu–Qinghai uplands


@dataclass
class ScriptedEvent:
    at_min: float
    for_min: float
    what: str  # door_open | compressor_failure | signal_loss
    target: str
    active: bool = False


DEFAULT_SCRIPT = [
    ScriptedEvent(30, 25, "door_open", "cr2"),
    ScriptedEvent(40, 45, "signal_loss", "truck-02"),
    ScriptedEvent(90, 120, "compressor_failure", "cr1"),
]


def _reefer(space: Space) -> dict[str, float | bool]:
    return {
        "setpoint": space.setpoint_c,
        "air": space.temp_c,
        "evap": space.evap_c,
        "run": space.run_h,
        "compressor": space.compressor_on,
        "defrost": space.defrost_on,
        "door": space.door_open,
    }


def _th(space: Space) -> dict[str, float | bool]:
    return {
        "temp": space.temp_c,
        "rh": space.rh_pct,
        "door": space.door_open,
        "core": space.temp_c + 0.4,
    }


@dataclass
class GatewayPlan:
    """What one gateway reads: its TOML buses section and its MQTT endpoint."""

    id: str
    site: str
    buses: list[str] = field(default_factory=list)
    uplink: Uplink | None = None


class County:
    SITES = ("county-store", "county-fleet", "transfer-station")

    def __init__(
        self,
        *,
        mqtt_host: str = "127.0.0.1",
        mqtt_port: int = 1883,
        accel: float = 60.0,
        workdir: Path,
        interval_s: float = 5.0,
        scripted: bool = True,
    ) -> None:
        self.mqtt = (mqtt_host, mqtt_port)
        self.accel = accel
        self.workdir = workdir
        self.interval_s = interval_s
        self.script = (
            [ScriptedEvent(e.at_min, e.for_min, e.what, e.target) for e in DEFAULT_SCRIPT]
            if scripted
            else []
        )
        self.spaces = {
            "cr1": Space("cold room 1 (frozen beef, mutton, yak)", -20.0, -20.0),
            "cr2": Space("cold room 2 (chilled meat, chicken)", 2.0, 2.0, cooling_c_per_min=0.5),
            "pc": Space("pre-cooling room (raspberries, apples)", 1.0, 6.0, cooling_c_per_min=0.6),
            "ct": Space(
                "constant-temperature room (walnuts, honey)",
                15.0,
                15.0,
                cooling_c_per_min=0.3,
                differential_c=3.0,
                rh_pct=55.0,
                rh_target_pct=55.0,  # dry goods: honey, dried yak meat
            ),
            "truck-01.front": Space("truck 01 front (frozen)", -20.0, -20.0, ambient_c=12.0),
            "truck-01.rear": Space(
                "truck 01 rear (chilled)", 2.0, 2.0, ambient_c=12.0, cooling_c_per_min=0.5
            ),
            "truck-02.front": Space("truck 02 front (frozen)", -20.0, -20.0, ambient_c=12.0),
            "truck-02.rear": Space(
                "truck 02 rear (chilled)", 3.0, 3.0, ambient_c=12.0, cooling_c_per_min=0.5
            ),
            "ts.chilled": Space("transfer station chilled store", 2.0, 2.0, cooling_c_per_min=0.5),
            "ts.frozen": Space("transfer station frozen store", -20.0, -20.0),
        }
        self.routes = {
            "truck-01": Route(
                "county store – Majiazhuang – Hanjiaji loop",
                [
                    ("county cold store", *COUNTY_STORE),
                    ("Majiazhuang", 35.7521, 103.0118),
                    ("Hanjiaji", 35.8402, 103.1836),
                    ("Baijiachuan", 35.7014, 103.3990),
                    ("county cold store", *COUNTY_STORE),
                ],
            ),
            "truck-02": Route(
                "county store – Yangwa – Shangzhuang loop",
                [
                    ("county cold store", *COUNTY_STORE),
                    ("Yangwa", 35.4410, 103.3120),
                    ("Shangzhuang", 35.3121, 103.1042),
                    ("Xiacun", 35.4630, 102.9811),
                    ("county cold store", *COUNTY_STORE),
                ],
            ),
        }
        self.servers: list[ModbusServer] = []
        self.writers: list[LineWriter] = []
        self.ptys: list[PtyPair] = []
        self.uplinks: dict[str, Uplink] = {}
        #: the port of each truck gateway's cab view
        self.cab_ports: dict[str, int] = {}
        self.gateways: list[GatewayPlan] = []
        self.units: dict[str, ModbusUnit] = {}
        self.sim_min = 0.0
        self._ports: set[int] = set()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ building
    def _pty(self, name: str) -> PtyPair:
        pair = PtyPair(name, self.workdir / "pty")
        self.ptys.append(pair)
        return pair

    def _unit(
        self,
        key: str,
        unit: int,
        profile: str,
        values: dict[str, float | bool] | None = None,
        space: str | None = None,
        kind: str = "th",
    ) -> ModbusUnit:
        sp = self.spaces[space or key]
        fn = (lambda: _reefer(sp)) if kind == "reefer" else (lambda: _th(sp))
        del values
        u = ModbusUnit(unit, profile, fn)
        self.units[key] = u
        return u

    def _tcp_bus(self, name: str, units: list[ModbusUnit], device_ids: list[str]) -> str:
        port = free_port()
        while port in self._ports:
            port = free_port()
        self._ports.add(port)
        self.servers.append(ModbusServer(units, tcp_port=port))
        devices = "".join(
            f'[[buses.devices]]\nid = "{d}"\nprofile = "{u.profile_name}"\nunit = {u.unit}\n'
            for d, u in zip(device_ids, units, strict=True)
        )
        return (
            f'[[buses]]\nkind = "modbus_tcp"\nname = "{name}"\nhost = "127.0.0.1"\n'
            f"port = {port}\ninterval_s = {self.interval_s}\ntimeout_s = 1.0\n{devices}"
        )

    def _rtu_bus(self, name: str, units: list[ModbusUnit], device_ids: list[str]) -> str:
        pty = self._pty(name)
        self.servers.append(ModbusServer(units, pty=pty, baudrate=9600))
        devices = "".join(
            f'[[buses.devices]]\nid = "{d}"\nprofile = "{u.profile_name}"\nunit = {u.unit}\n'
            for d, u in zip(device_ids, units, strict=True)
        )
        return (
            f'[[buses]]\nkind = "modbus_rtu"\nname = "{name}"\nport = "{pty.host}"\n'
            f"baudrate = 9600\ninterval_s = {self.interval_s}\ntimeout_s = 0.5\n{devices}"
        )

    def _ascii_bus(self, name: str, device_id: str, space: str) -> str:
        pty = self._pty(name)
        sp = self.spaces[space]
        writer = LineWriter(pty, 5.0, lambda: [ascii_probe_line(sp.temp_c)])
        self.writers.append(writer)
        self.units[device_id] = writer  # type: ignore[assignment]
        return (
            f'[[buses]]\nkind = "serial_ascii"\nname = "{name}"\nport = "{pty.host}"\n'
            f'[[buses.devices]]\nid = "{device_id}"\nprofile = "ascii_temp_probe"\n'
        )

    def _gps_bus(self, name: str, device_id: str, truck: str) -> str:
        pty = self._pty(name)
        route = self.routes[truck]
        writer = LineWriter(pty, 1.0, lambda: nmea_sentences(route.at(self.sim_min)))
        self.writers.append(writer)
        return (
            f'[[buses]]\nkind = "nmea_gps"\nname = "{name}"\nport = "{pty.host}"\n'
            f'[[buses.devices]]\nid = "{device_id}"\nprofile = "nmea_gps"\n'
        )

    def build(self) -> None:
        store = GatewayPlan("store-gw", self.SITES[0])
        store.buses += [
            self._tcp_bus(
                "cr1-ctrl",
                [self._unit("cr1-ctrl", 1, "reefer_controller", space="cr1", kind="reefer")],
                ["cr1-ctrl"],
            ),
            self._tcp_bus(
                "cr2-ctrl",
                [self._unit("cr2-ctrl", 1, "reefer_controller", space="cr2", kind="reefer")],
                ["cr2-ctrl"],
            ),
            self._tcp_bus(
                "pc-ctrl",
                [self._unit("pc-ctrl", 1, "reefer_controller", space="pc", kind="reefer")],
                ["pc-ctrl"],
            ),
            self._tcp_bus(
                "ct-th", [self._unit("ct-th", 1, "th_transmitter_float32", space="ct")], ["ct-th"]
            ),
            self._rtu_bus(
                "store-485",
                [
                    self._unit("cr1-th", 1, "th_transmitter_int16", space="cr1"),
                    self._unit("cr2-th", 2, "th_transmitter_int16", space="cr2"),
                    self._unit("pc-th", 3, "th_transmitter_int16", space="pc"),
                ],
                ["cr1-th", "cr2-th", "pc-th"],
            ),
            self._ascii_bus("ct-probe", "ct-probe", "ct"),
        ]
        self.gateways.append(store)
        for truck in ("truck-01", "truck-02"):
            plan = GatewayPlan(truck, self.SITES[1])
            plan.buses += [
                self._rtu_bus(
                    f"{truck}-485",
                    [
                        self._unit(
                            f"{truck}-reefer",
                            1,
                            "reefer_controller",
                            space=f"{truck}.front",
                            kind="reefer",
                        ),
                        self._unit(
                            f"{truck}-rear", 2, "th_transmitter_int16", space=f"{truck}.rear"
                        ),
                    ],
                    [f"{truck}-reefer", f"{truck}-rear"],
                ),
                self._gps_bus(f"{truck}-gps", f"{truck}-gps", truck),
            ]
            plan.uplink = Uplink(truck, *self.mqtt)
            self.uplinks[truck] = plan.uplink
            self.gateways.append(plan)
        station = GatewayPlan("ts-gw", self.SITES[2])
        station.buses += [
            self._tcp_bus(
                "ts-th",
                [self._unit("ts-th", 1, "th_transmitter_int16", space="ts.chilled")],
                ["ts-th"],
            ),
            self._ascii_bus("ts-probe", "ts-probe", "ts.frozen"),
        ]
        self.gateways.append(station)

    # ------------------------------------------------------------------ running
    async def start(self) -> list[Path]:
        """Start every device; returns the gateway config files written."""
        self.build()
        for server in self.servers:
            await server.start()
        for uplink in self.uplinks.values():
            await uplink.start()
        for writer in self.writers:
            self._tasks.append(asyncio.ensure_future(writer.run()))
        self._tasks.append(asyncio.ensure_future(self._tick()))
        return self.write_configs()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self.servers:
            await server.stop()
        for uplink in self.uplinks.values():
            await uplink.stop()
        for pty in self.ptys:
            pty.close()

    def write_configs(self) -> list[Path]:
        directory = self.workdir / "gateways"
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for gw in self.gateways:
            host, port = self.mqtt
            if gw.uplink is not None:
                host, port = "127.0.0.1", gw.uplink.listen_port
            cab = ""
            if gw.uplink is not None:  # a truck: its gateway serves the cab view
                if gw.id not in self.cab_ports:
                    self.cab_ports[gw.id] = free_port()
                cab = (
                    f"[cab]\nport = {self.cab_ports[gw.id]}\n"
                    f'labels = {{ "{gw.id}-reefer" = "Front (frozen) 前厢冷冻", '
                    f'"{gw.id}-rear" = "Rear (chilled) 后厢冷藏" }}\n\n'
                )
            text = (
                f'# written by "coldchain simulate"\n[gateway]\nid = "{gw.id}"\n'
                f'site = "{gw.site}"\n\n[mqtt]\nhost = "{host}"\nport = {port}\n\n'
                f'[outbox]\npath = "{(self.workdir / "outbox" / f"{gw.id}.sqlite")}"\n\n'
                + cab
                + "\n".join(gw.buses)
            )
            path = directory / f"{gw.id}.toml"
            path.write_text(text, encoding="utf-8")
            paths.append(path)
        return paths

    def describe(self) -> list[str]:
        lines = []
        for server in self.servers:
            units = ", ".join(f"unit {u.unit} {u.profile.model}" for u in server.units.values())
            lines.append(f"  modbus {server.address}  ({units})")
        for writer in self.writers:
            lines.append(f"  serial {writer.pty.host}")
        for name, uplink in self.uplinks.items():
            lines.append(
                f"  uplink {name}: 127.0.0.1:{uplink.listen_port} -> {self.mqtt[0]}:{self.mqtt[1]}"
            )
        for name, cab_port in self.cab_ports.items():
            lines.append(f"  cab view {name} (served by its gateway): http://127.0.0.1:{cab_port}/")
        return lines

    async def _tick(self) -> None:
        step_s = 1.0
        while True:
            await asyncio.sleep(step_s)
            dt_min = step_s * self.accel / 60
            self.sim_min += dt_min
            self._apply_script()
            for truck, route in self.routes.items():
                pos = route.at(self.sim_min)
                rear = self.spaces[f"{truck}.rear"]
                rear.door_open = pos.stopped_at is not None and pos.stopped_at != route.stops[0][0]
            for space in self.spaces.values():
                space.step(dt_min)
            for server in self.servers:
                await server.refresh()

    def _apply_script(self) -> None:
        for ev in self.script:
            should = ev.at_min <= self.sim_min < ev.at_min + ev.for_min
            if should == ev.active:
                continue
            ev.active = should
            log.info(
                "scripted event %s %s: %s at sim minute %.0f",
                ev.what,
                ev.target,
                "begins" if should else "ends",
                self.sim_min,
            )
            if ev.what == "door_open":
                self.spaces[ev.target].door_open = should
            elif ev.what == "compressor_failure":
                self.spaces[ev.target].compressor_failed = should
            elif ev.what == "signal_loss":
                uplink = self.uplinks[ev.target]
                uplink.down() if should else uplink.up()
