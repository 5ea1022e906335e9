"""The SQLite readings store's schema, as its migrations: the file's ``PRAGMA
user_version`` says how many have run (collector.sqlite_store)."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: readings, events, sequence watermark, quarantine
    """
    CREATE TABLE readings (
        gateway     TEXT    NOT NULL,
        sensor      TEXT    NOT NULL,
        ts_ms       INTEGER NOT NULL,
        site        TEXT    NOT NULL,
        quantity    TEXT    NOT NULL,
        value       REAL,
        q           TEXT    NOT NULL,
        fault       TEXT,
        lat_deg     REAL,
        lon_deg     REAL,
        speed_kmh   REAL,
        received_ms INTEGER NOT NULL,
        PRIMARY KEY (gateway, sensor, ts_ms)
    ) WITHOUT ROWID;
    -- the catalogue of series: one row per sensor, with the time span it covers (a
    -- sensor over a time range is a primary-key range scan of readings, a site over a
    -- time range the same scan for each of its sensors, merged in time order)
    CREATE TABLE sensors (
        gateway     TEXT    NOT NULL,
        sensor      TEXT    NOT NULL,
        site        TEXT    NOT NULL,
        quantity    TEXT    NOT NULL,
        first_ts_ms INTEGER NOT NULL,
        last_ts_ms  INTEGER NOT NULL,
        PRIMARY KEY (gateway, sensor)
    ) WITHOUT ROWID;
    CREATE INDEX sensors_site ON sensors (site);
    CREATE INDEX sensors_sensor ON sensors (sensor);
    CREATE TABLE events (
        gateway     TEXT    NOT NULL,
        epoch       INTEGER NOT NULL,
        seq         INTEGER NOT NULL,
        idx         INTEGER NOT NULL,
        site        TEXT    NOT NULL,
        ts_ms       INTEGER NOT NULL,
        kind        TEXT    NOT NULL,
        source      TEXT    NOT NULL,
        state       TEXT    NOT NULL,
        detail      TEXT,
        count       INTEGER,
        received_ms INTEGER NOT NULL,
        PRIMARY KEY (gateway, epoch, seq, idx)
    ) WITHOUT ROWID;
    CREATE INDEX events_site_ts ON events (site, ts_ms);
    CREATE TABLE seq_watermark (
        gateway TEXT    NOT NULL,
        stream  TEXT    NOT NULL,
        epoch   INTEGER NOT NULL,
        upto    INTEGER NOT NULL,
        PRIMARY KEY (gateway, stream, epoch)
    ) WITHOUT ROWID;
    CREATE TABLE seq_seen (
        gateway TEXT    NOT NULL,
        stream  TEXT    NOT NULL,
        epoch   INTEGER NOT NULL,
        seq     INTEGER NOT NULL,
        PRIMARY KEY (gateway, stream, epoch, seq)
    ) WITHOUT ROWID;
    CREATE TABLE quarantine (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        received_ms INTEGER NOT NULL,
        topic       TEXT    NOT NULL,
        payload     BLOB    NOT NULL,
        reason      TEXT    NOT NULL
    );
    """,
    # 2: a different reading that shares a sensor's time with a stored one (a gateway
    # clock set back) is kept beside it, numbered by ``dup``; a copy of a message is
    # still dropped by its (gateway, epoch, seq)
    """
    CREATE TABLE readings_v2 (
        gateway     TEXT    NOT NULL,
        sensor      TEXT    NOT NULL,
        ts_ms       INTEGER NOT NULL,
        dup         INTEGER NOT NULL DEFAULT 0,
        site        TEXT    NOT NULL,
        quantity    TEXT    NOT NULL,
        value       REAL,
        q           TEXT    NOT NULL,
        fault       TEXT,
        lat_deg     REAL,
        lon_deg     REAL,
        speed_kmh   REAL,
        received_ms INTEGER NOT NULL,
        PRIMARY KEY (gateway, sensor, ts_ms, dup)
    ) WITHOUT ROWID;
    INSERT INTO readings_v2 (gateway, sensor, ts_ms, site, quantity, value, q, fault,
        lat_deg, lon_deg, speed_kmh, received_ms)
    SELECT gateway, sensor, ts_ms, site, quantity, value, q, fault, lat_deg, lon_deg,
        speed_kmh, received_ms FROM readings;
    DROP TABLE readings;
    ALTER TABLE readings_v2 RENAME TO readings
    """,
    # 3: hourly roll-ups of settled hours, for the charts' long ranges: a cache of the
    # readings, made by the first query that needs an hour, dropped for an hour that a
    # late reading changes (collector.buckets)
    """
    CREATE TABLE rollup_1h (
        gateway TEXT    NOT NULL,
        sensor  TEXT    NOT NULL,
        hour_ms INTEGER NOT NULL,
        n       INTEGER NOT NULL,
        lo      REAL,
        hi      REAL,
        total   REAL,
        bad     INTEGER NOT NULL,
        PRIMARY KEY (gateway, sensor, hour_ms)
    ) WITHOUT ROWID
    """,
    # 4: the compact store (collector.compaction): a sensor's settled day in one row, its
    # readings as compressed columns (NULL past keep_raw_days) and its 1-minute
    # roll-ups; a rowid table, as a row of a few kilobytes wants
    """
    CREATE TABLE chunks (
        id       INTEGER PRIMARY KEY,
        gateway  TEXT    NOT NULL,
        sensor   TEXT    NOT NULL,
        day_ms   INTEGER NOT NULL,
        n        INTEGER NOT NULL,
        first_ts INTEGER NOT NULL,
        last_ts  INTEGER NOT NULL,
        raw      BLOB,
        minutes  BLOB    NOT NULL,
        UNIQUE (gateway, sensor, day_ms)
    )
    """,
    # 5: a position's course and its fix quality (satellites used, HDOP), as the
    # gateway sends them: kept, not dropped
    """
    ALTER TABLE readings ADD COLUMN course_deg REAL;
    ALTER TABLE readings ADD COLUMN sats INTEGER;
    ALTER TABLE readings ADD COLUMN hdop REAL
    """,
]
