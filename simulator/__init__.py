"""The simulated county cold chain (real Modbus servers, serial ptys, trucks on routes)
and the demo that runs the whole system on it."""
