"""Build hooks: the analytics' C speed-up, and the repository's ``rules/`` and ``deploy/kafka/``
inside the package.

The metadata is in pyproject.toml. ``streamer.analytics._fastcount`` is an optional extension:
where no C compiler is found the build goes on without it and the analytics count in Python
(the same results, at a higher cost per record; the worker's start-up log says which).

The other hook adds one step to ``build_py``: copy the
top-level folders named in ``streamer.resources.SOURCES`` into ``streamer/_data/`` of the build,
so that a wheel (built from the checkout or from the sdist, which carries both folders through
MANIFEST.in) holds the default rules and the local broker's files. The repository keeps a single
copy; editable installs and checkouts read the folders in place (streamer/resources.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

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


FASTCOUNT = Extension(
    "streamer.analytics._fastcount",
    sources=["streamer/analytics/_fastcount.c"],
    optional=True,  # no compiler: a warning, and the pure-Python path
)

setup(cmdclass={"build_py": BuildWithShippedFiles}, ext_modules=[FASTCOUNT])
