#!/bin/sh
# One database and one role per service, each owning its own database only (run once by the
# postgres image when its data folder is new). The passwords come from the environment.
set -eu
prefix="${TUOYU_DB_PREFIX:-tuoyu_}"
for service in registration credit inspection subsidy dashboard; do
  var="TUOYU_DB_PASSWORD_$(echo "$service" | tr '[:lower:]' '[:upper:]')"
  password=$(printenv "$var")
  psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
       -v role="$prefix$service" -v password="$password" -v db="$prefix$service" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
done
