#!/usr/bin/env bash
# System packages the tests and the demo use besides Python's: a real Prometheus server (the
# dashboards' proof test), headless Chromium (the HTML report's browser test), Redis (the
# suppression mirror KumoMTA reads: `streamer suppressions sync`) and Lua 5.4 (`luac -p` on the
# KumoMTA policy files in deploy/kumomta), all from Debian's packages. Idempotent and quick:
# nothing happens when every binary exists.
#
# Not root, or no apt-get (not Debian/Ubuntu): prints one line and exits 0; the tests that need
# the missing program then skip naming it (with CI=true they fail instead).
set -uo pipefail

missing=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# a font with it, or headless pages render without text on a bare machine
command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-dejavu-core)
command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || missing+=(redis-server)
command -v luac5.4 >/dev/null 2>&1 || missing+=(lua5.4)
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "==> not installing ${missing[*]} (needs root and apt-get): install them to run the Prometheus, browser, Redis and Lua tests" >&2
    exit 0
fi

echo "==> installing ${missing[*]} (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq >&2 \
    || ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
    echo "==> could not install ${missing[*]}: the Prometheus, browser, Redis and Lua tests will skip (or fail with CI=true)" >&2
fi
exit 0
