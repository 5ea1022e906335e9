"""A lumped thermal model of a cold room or a truck compartment.

dT/dt = leak·(1 + door_factor·door_open)·(T_ambient − T) − cooling·compressor_on
        + heater·defrost_on

The compressor follows a thermostat with a differential around the setpoint; defrost
runs on a schedule and stops the compressor; a failed compressor never starts.
Minutes here are simulated minutes (the caller applies the time-acceleration factor).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Space:
    name: str
    setpoint_c: float
    temp_c: float
    ambient_c: float = 22.0
    #: fraction of the temperature difference to ambient gained per minute
    leak_per_min: float = 0.008
    #: cooling power in °C per minute while the compressor runs
    cooling_c_per_min: float = 0.9
    differential_c: float = 2.0
    door_factor: float = 10.0
    defrost_every_min: float = 480.0
    defrost_for_min: float = 20.0
    heater_c_per_min: float = 0.25
    rh_pct: float = 85.0
    rh_target_pct: float = 88.0

    door_open: bool = False
    compressor_failed: bool = False
    compressor_on: bool = False
    defrost_on: bool = False
    evap_c: float = 0.0
    clock_min: float = 0.0
    run_h: float = 0.0

    def step(self, dt_min: float) -> None:
        remaining = dt_min
        while remaining > 1e-9:
            dt = min(0.25, remaining)
            self._substep(dt)
            remaining -= dt

    def _substep(self, dt: float) -> None:
        self.clock_min += dt
        phase = self.clock_min % self.defrost_every_min
        self.defrost_on = phase < self.defrost_for_min and self.clock_min > self.defrost_for_min
        half = self.differential_c / 2
        if self.compressor_failed or self.defrost_on:
            self.compressor_on = False
        elif self.temp_c > self.setpoint_c + half:
            self.compressor_on = True
        elif self.temp_c < self.setpoint_c - half:
            self.compressor_on = False
        leak = self.leak_per_min * (1 + self.door_factor * self.door_open)
        d_temp = leak * (self.ambient_c - self.temp_c)
        d_temp -= self.cooling_c_per_min * self.compressor_on
        d_temp += self.heater_c_per_min * self.defrost_on
        self.temp_c += d_temp * dt
        if self.compressor_on:
            self.run_h += dt / 60
            self.evap_c = self.temp_c - 8.0
        else:
            self.evap_c += ((self.temp_c + (6.0 if self.defrost_on else 0.5)) - self.evap_c) * 0.2
        target_rh = 55.0 if self.door_open else self.rh_target_pct
        self.rh_pct += (target_rh - self.rh_pct) * min(1.0, 0.05 * dt)
