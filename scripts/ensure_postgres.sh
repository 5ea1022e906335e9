#!/usr/bin/env bash
# The tests need a PostgreSQL on 127.0.0.1:5432 that the user postgres reaches without a
# password (as on the development and CI machines). If none listens there, start the
# local cluster, or install one; on a machine of its own a test server only.
set -euo pipefail

listening() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

listening && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "PostgreSQL is not listening on 127.0.0.1:5432 and I am not root to start it" >&2
    exit 1
fi
if ! ls -d /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "installing postgresql (apt-get) for the tests" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    version="$(ls /etc/postgresql | sort -V | tail -1)"
    # a fresh test server: the postgres user may connect over 127.0.0.1 without a password
    sed -i '1i host all postgres 127.0.0.1/32 trust  # coldchain tests' \
        "/etc/postgresql/$version/main/pg_hba.conf"
fi
version="$(ls /etc/postgresql | sort -V | tail -1)"
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
for _ in $(seq 1 30); do
    listening && exit 0
    sleep 1
done
echo "PostgreSQL did not start on 127.0.0.1:5432" >&2
exit 1
