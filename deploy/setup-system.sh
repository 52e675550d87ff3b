#!/usr/bin/env bash
# System packages the tests and the demo use besides Python's: a real Prometheus server (the
# dashboards' proof test) and headless Chromium (the HTML report's browser test), both from
# Debian's packages. Idempotent and quick: nothing happens when both binaries exist.
#
# Not root, or no apt-get (not Debian/Ubuntu): prints one line and exits 0; the tests that need
# the missing program then skip naming it (with CI=true they fail instead).
set -uo pipefail

missing=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# a font with it, or headless pages render without text on a bare machine
command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-dejavu-core)
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "==> not installing ${missing[*]} (needs root and apt-get): install them to run the Prometheus and browser tests" >&2
    exit 0
fi

echo "==> installing ${missing[*]} (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq >&2 \
    || ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
    echo "==> could not install ${missing[*]}: the Prometheus and browser tests will skip (or fail with CI=true)" >&2
fi
exit 0
