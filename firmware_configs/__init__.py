"""Device profiles as data: one TOML file per device model (see gateway/profiles.py)."""
