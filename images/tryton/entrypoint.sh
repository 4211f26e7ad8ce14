#!/bin/sh
# As the official images do: when no database address is configured, it is made from the
# DB_USER, DB_PASSWORD, DB_HOSTNAME and DB_PORT variables; then the command runs.
set -e
if [ -z "${TRYTOND_DATABASE__URI:-}" ] && [ -n "${DB_HOSTNAME:-}" ]; then
    TRYTOND_DATABASE__URI="postgresql://${DB_USER:-postgres}:${DB_PASSWORD:-}@${DB_HOSTNAME}:${DB_PORT:-5432}/"
    export TRYTOND_DATABASE__URI
fi
exec "$@"
