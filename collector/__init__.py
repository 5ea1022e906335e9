"""Collector: subscribes to the gateways' readings and events and stores them exactly
once (embedded SQLite or InfluxDB). Built in the next issue; the contract it consumes is
``coldchain.wire``."""
