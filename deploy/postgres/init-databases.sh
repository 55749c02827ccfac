#!/bin/sh
# Run once by the postgres image on an empty data volume (docker-entrypoint-initdb.d): one role and
# one database per service, each database owned by its service's role and closed to the others.
# The passwords come from the environment (.env); changing them later needs `ALTER ROLE ... PASSWORD`,
# or `make down` + `docker volume rm fastmicro_postgres-data` to start from scratch.
set -eu

create_service_database() {  # <name> <password>
    psql --no-psqlrc -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
        --set=name="$1" --set=password="$2" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
    echo "init-databases: created role and database $1"
}

create_service_database users "${USERS_DB_PASSWORD:?}"
create_service_database orders "${ORDERS_DB_PASSWORD:?}"
create_service_database notifications "${NOTIFICATIONS_DB_PASSWORD:?}"
