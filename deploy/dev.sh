#!/usr/bin/env bash
# One entry point for a fresh clone: builds the virtualenv (only when pyproject.toml changed),
# installs the system packages the tests use (deploy/setup-system.sh: Prometheus, Chromium, Redis, Lua),
# then runs the demo (the main job against the embedded local Kafka) or the whole test suite.
#   deploy/dev.sh demo      set up, start the local broker if needed, run a worker on sample data
#   deploy/dev.sh test      set up, lint and type-check, build the docs, run every test
#   deploy/dev.sh docs      serve the documentation site on http://127.0.0.1:8000 (live reload)
#   deploy/dev.sh <cmd...>  run any `streamer` sub-command inside the environment
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${STREAMER_VENV:-$root/.venv}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3

# The native record path builds with rustup's cargo (Debian's rustc is too old for pyo3).
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
# The stamp covers what the install builds: the metadata and the native crate (its sources and
# the locked versions of its dependencies).
stamp="$venv/.installed-$(cat pyproject.toml setup.py native/Cargo.toml native/Cargo.lock \
    $(find native/src -name '*.rs' | LC_ALL=C sort) | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "==> preparing $venv" >&2
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev]" >&2
    rm -f "$venv"/.installed-* && touch "$stamp"
fi
export PATH="$venv/bin:$PATH"

# Prometheus, Chromium, Redis and Lua (Debian packages) for the tests that use them.
case "${1:-demo}" in
    demo|test) bash "$root/deploy/setup-system.sh" ;;
esac

case "${1:-demo}" in
    demo) shift || true; exec streamer demo "$@" ;;
    test)
        shift
        # Static checks first: a lint or type error fails the run before the (longer) tests.
        ruff check streamer tests
        ruff format --check streamer tests
        mypy
        # The native crate's format, tests and lints (rustfmt and clippy: rustup's default profile).
        cargo fmt --check --manifest-path native/Cargo.toml
        cargo test -q --manifest-path native/Cargo.toml
        cargo clippy -q --manifest-path native/Cargo.toml --all-targets -- -D warnings
        # The documentation site: a broken link or anchor, a missing include, a page left out
        # of the navigation or a reference that no longer renders fails the run. (Not --quiet: it
        # hides the warnings, and --strict then counts none.)
        NO_MKDOCS_2_WARNING=1 mkdocs build --strict
        # Three processes (pytest-xdist) on CI's 2 cores: the broker tests mostly wait (two
        # processes kept the cores ~62% busy). Dealt one test at a time, the long ones first;
        # each starts a session broker of its own at its first broker test (tests/conftest.py).
        # `-n 0` after it runs everything in one process, on one broker.
        exec python -m pytest -n "${STREAMER_TEST_PROCESSES:-3}" --dist loadgroup "$@" ;;
    docs) shift; NO_MKDOCS_2_WARNING=1 exec mkdocs serve --dev-addr 127.0.0.1:8000 "$@" ;;
    *) exec streamer "$@" ;;
esac
