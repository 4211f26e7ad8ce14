#!/bin/sh
# Prints the pip requirements of a Tryton series, one per line:
#   requirements.sh SERIES MODULE...
# The server, the listed modules and `proteus` of that series, its PostgreSQL driver, and the
# pins the series needs to work at all.
set -eu
series="$1"
shift
echo "trytond==${series}.*"
for module in "$@"; do
    echo "trytond-${module}==${series}.*"
done
echo "proteus==${series}.*"
case "$series" in
    # 8.x speaks psycopg 3 only; 7.x psycopg2 only.
    7.*) echo "psycopg2-binary==2.9.*" ;;
    *) echo "psycopg[binary,pool]==3.*" ;;
esac
case "$series" in
    # python-sql 1.8 makes 7.2's `trytond-admin --all` fail with an SQL syntax error, even on a
    # fresh database; 1.5 is what 7.2 was released with.
    7.2) echo "python-sql==1.5.*" ;;
esac
