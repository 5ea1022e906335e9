"""Set-up steps of a county server that hand out least privilege (docs/design-security.md).

- :func:`check_env`: the secrets no coldchain service reads itself (the admin passwords
  and tokens of PostgreSQL, InfluxDB and Grafana) are refused empty, as placeholders
  or shorter than :data:`MIN_SECRET`: compose runs it before those servers start.
- :func:`grant_grafana_reader`: a PostgreSQL role that can SELECT the tables the
  dashboards read, and nothing else (never users, sessions, sign-in failures or the
  notification addresses).
- :func:`make_influx_tokens`: one InfluxDB token per service, write-only on the bucket
  for the collectors, read-only for the alert service, the API and Grafana.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine

from coldchain.settings import ConfigError, secret

MIN_SECRET = 16
#: keys that must be longer (the audit key is an HMAC key: alerts/seals.py)
LONGER = {"COLDCHAIN_AUDIT_KEY": 32}

#: checked by ``coldchain deploy check-env`` (compose's ``check-env`` service)
ADMIN_SECRETS = (
    "POSTGRES_PASSWORD",
    "INFLUXDB_ADMIN_PASSWORD",
    "INFLUXDB_ADMIN_TOKEN",
    "GRAFANA_ADMIN_PASSWORD",
    "GRAFANA_DB_PASSWORD",
    "COLDCHAIN_AUDIT_KEY",
)

#: what Grafana's PostgreSQL data source may read (the dashboards' tables and the
#: places, batches and calibrations one would chart next)
GRAFANA_TABLES = (
    "sites",
    "gateways",
    "locations",
    "sensor_assignments",
    "profiles",
    "batches",
    "stays",
    "calibrations",
    "breaches",
    "alarms",
)


def check_env(variables: Iterable[str] = ADMIN_SECRETS) -> list[str]:
    """The problems with the variables' values (empty: all good)."""
    problems: list[str] = []
    for variable in variables:
        try:
            value = secret(variable, variable)
        except ConfigError as exc:
            problems += exc.problems
            continue
        least = LONGER.get(variable, MIN_SECRET)
        if len(value) < least:
            problems.append(f"{variable}: {len(value)} characters, at least {least} wanted")
    return problems


def grant_grafana_reader(engine: Engine, role: str, password: str) -> list[str]:
    """Create (or update) ``role`` as a login that can only read GRAFANA_TABLES, on
    PostgreSQL; run as the database's owner. Running it again changes nothing but the
    password. The lines say what was done."""
    from psycopg import sql

    if engine.dialect.name != "postgresql":
        raise ConfigError("--db-url", ["a read-only role needs PostgreSQL"])
    done: list[str] = []
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        verb = "ALTER" if cur.fetchone() else "CREATE"
        cur.execute(
            sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        done.append(f"{'created' if verb == 'CREATE' else 'altered'} role {role}")
        # even a table granted later by mistake cannot be written through this role
        cur.execute(
            sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(
                sql.Identifier(role)
            )
        )
        cur.execute("SELECT current_database(), current_schema()")
        row = cur.fetchone()
        assert row is not None
        database, schema = row
        ident = sql.Identifier
        cur.execute(
            sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(
                ident(schema), ident(role)
            )
        )
        cur.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(ident(database), ident(role))
        )
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident(schema), ident(role)))
        tables = sql.SQL(", ").join(ident(schema, t) for t in GRAFANA_TABLES)
        cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(tables, ident(role)))
        raw.commit()
    finally:
        raw.close()
    done.append(f"{role} may SELECT {', '.join(GRAFANA_TABLES)}; nothing else")
    return done


@dataclass(frozen=True)
class TokenSpec:
    variable: str
    description: str
    write: bool


#: the tokens ``coldchain deploy influx-tokens`` makes, as the .env variables compose
#: hands to each service
INFLUX_TOKENS = (
    TokenSpec("INFLUXDB_COLLECTOR_TOKEN", "coldchain collectors (write)", write=True),
    TokenSpec("INFLUXDB_ALERTS_TOKEN", "coldchain alert service (read)", write=False),
    TokenSpec("INFLUXDB_API_TOKEN", "coldchain API (read)", write=False),
    TokenSpec("INFLUXDB_GRAFANA_TOKEN", "coldchain Grafana (read)", write=False),
)


def make_influx_tokens(url: str, admin_token: str, org: str, bucket: str) -> dict[str, str]:
    """One token per service, scoped to the bucket: variable -> token."""
    from influxdb_client.client.influxdb_client import InfluxDBClient
    from influxdb_client.domain.authorization import Authorization
    from influxdb_client.domain.permission import Permission
    from influxdb_client.domain.permission_resource import PermissionResource

    with InfluxDBClient(url=url, token=admin_token, org=org) as client:
        found = client.buckets_api().find_bucket_by_name(bucket)
        if found is None:
            raise ConfigError("INFLUXDB_BUCKET", [f"no bucket {bucket!r} in org {org!r}"])
        resource = PermissionResource(type="buckets", id=found.id, org_id=found.org_id)
        tokens: dict[str, str] = {}
        for spec in INFLUX_TOKENS:
            action = "write" if spec.write else "read"
            wanted = Authorization(
                org_id=found.org_id,
                permissions=[Permission(action=action, resource=resource)],
                description=spec.description,
            )
            made = client.authorizations_api().create_authorization(authorization=wanted)
            tokens[spec.variable] = made.token
    return tokens
