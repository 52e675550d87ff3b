"""Build hooks: the native record path (Rust) and the repository's
``rules/`` and ``deploy/kafka/`` inside the package.

The metadata is in pyproject.toml. ``streamer._native`` is the Rust crate in ``native/``, built
by setuptools-rust with the ``cargo`` on PATH (rustc 1.85 or newer: pyo3's minimum). It is
optional: without cargo the build goes on without it and the Python path runs every record (the
same results, slower; a WARNING at start, ``/status`` and ``streamer_native_path`` say so;
``STREAMER_REQUIRE_NATIVE=1`` makes its absence an error, as CI sets).
setuptools-rust rather than maturin: maturin as the build backend would replace this setup.py
and its ``build_py`` hook below; setuptools-rust adds the crate beside them.

The other hook adds one step to ``build_py``: copy the
top-level folders named in ``streamer.resources.SOURCES`` into ``streamer/_data/`` of the build,
so that a wheel (built from the checkout or from the sdist, which carries both folders through
MANIFEST.in) holds the default rules and the local broker's files. The repository keeps a single
copy; editable installs and checkouts read the folders in place (streamer/resources.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools_rust import Binding, RustExtension

HERE = Path(__file__).resolve().parent
# Mirrors streamer.resources.SOURCES (not imported: the build must not import the package).
SHIPPED = {"rules": "rules", "kafka": "deploy/kafka"}
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


class BuildWithShippedFiles(build_py):  # type: ignore[misc]
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the repository's folders directly
        for name, source in SHIPPED.items():
            src = HERE / source
            if not src.is_dir() or not any(src.iterdir()):
                raise SystemExit(f"{src}: missing; the package must ship it as streamer/_data/{name}")
            dest = Path(self.build_lib) / "streamer" / "_data" / name
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(src, dest, ignore=SKIP)


NATIVE = RustExtension(
    "streamer._native",
    path="native/Cargo.toml",
    binding=Binding.PyO3,
    py_limited_api="auto",  # abi3-py311, from the crate's pyo3 features
    debug=False,  # editable installs too: the debug build is many times slower
    optional=True,  # no cargo: a warning, and the Python path
)

setup(
    cmdclass={"build_py": BuildWithShippedFiles},
    rust_extensions=[NATIVE],
)
