"""The system programs some tests need (Debian's ``prometheus`` and ``chromium``, installed by
deploy/setup-system.sh): skip naming what to install when one is missing, except on CI
(``CI=true``), where a missing program fails the test instead of hiding it."""

from __future__ import annotations

import os
import shutil

import pytest


def require(*programs: str, package: str) -> None:
    """Skip (fail with CI=true) unless every one of ``programs`` is on PATH."""
    missing = [p for p in programs if shutil.which(p) is None]
    if not missing:
        return
    message = (
        f"{', '.join(missing)} not found: install Debian's `{package}` package "
        f"(deploy/setup-system.sh does it as root: apt-get install {package})"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run this test: {message}", pytrace=False)
    pytest.skip(message)
