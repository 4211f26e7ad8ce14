#!/bin/sh
# Installs the `sao` web client of one Tryton series from the npm registry into a directory,
# ready to be served as static files: install-sao.sh SERIES DESTINATION
#
# npm publishes sao for the long-term series only (7.0 and 8.0 at the time of writing). From 8.0
# the package names its libraries as npm dependencies and its page loads them from
# `node_modules/`. Up to 7.x it names them in `bower.json` and loads them from
# `bower_components/`, and its install script runs `bower`, whose registry is retired: the same
# libraries are installed from npm and copied where the page looks for them.
set -eu

series="$1"
destination="$2"
work="$(mktemp -d)"
cd "$work"

npm pack --silent "tryton-sao@${series}" >/dev/null
mkdir -p "$destination"
tar -xzf tryton-sao-*.tgz -C "$destination" --strip-components=1
cd "$destination"

if [ -f bower.json ]; then
    # `name@range` for each bower dependency; a value `package#range` names another package
    # (`Sortable` is `sortablejs` on npm).
    node -e '
        const deps = require("./bower.json").dependencies;
        for (const [name, value] of Object.entries(deps)) {
            const [pkg, range] = value.includes("#") ? value.split("#") : [name, value];
            console.log(`${name} ${pkg}@${range}`);
        }' > "$work/libraries"
    cut -d' ' -f2 "$work/libraries" | xargs npm install --prefix "$work/npm" --omit=dev --ignore-scripts \
        --no-audit --no-fund --no-package-lock --legacy-peer-deps --silent
    mkdir -p bower_components
    while read -r name package; do
        cp -R "$work/npm/node_modules/${package%@*}" "bower_components/$name"
    done < "$work/libraries"
    # c3 0.7 draws with d3 5, which it brings as its dependency; bower's d3 kept its files at the
    # top of the package, npm's in `dist/`.
    mkdir -p bower_components/d3
    cp "$work/npm/node_modules/d3/dist/d3.min.js" bower_components/d3/
else
    # `--legacy-peer-deps`: the libraries' declared peers conflict, though sao works with them.
    npm install --omit=dev --ignore-scripts --no-audit --no-fund --no-package-lock --legacy-peer-deps --silent
fi

# Every file the page loads must be there: a missing library is a blank page in the browser.
missing=0
for file in $(grep -o '\(node_modules\|bower_components\|dist\)/[^"]*\.\(js\|css\)' index.html); do
    [ -f "$file" ] || { echo "sao ${series}: index.html loads ${file}, which is missing" >&2; missing=1; }
done
rm -rf "$work"
exit "$missing"
