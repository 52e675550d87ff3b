"""The parts some tests need that an install may lack: system programs (Debian's ``prometheus``
and ``chromium``, installed by deploy/setup-system.sh) and the native record path (optional:
built where cargo is found). When one is missing the test skips naming what to install,
except on CI (``CI=true``), where it fails instead of hiding the gap."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import NoReturn

import pytest


def require(*programs: str, package: str) -> None:
    """Skip (fail with CI=true) unless every one of ``programs`` is on PATH."""
    missing = [p for p in programs if shutil.which(p) is None]
    if not missing:
        return
    lacking(
        f"{', '.join(missing)} not found: install Debian's `{package}` package "
        f"(deploy/setup-system.sh does it as root: apt-get install {package})"
    )


def lacking(message: str) -> NoReturn:
    """A part the test needs is missing: skip saying so, or fail on CI (``CI=true``)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run this test: {message}", pytrace=False)
    pytest.skip(message)


def chromium(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Headless Chromium (Debian's ``chromium``) with ``args``: no sandbox (root in CI), no GPU,
    no first-run pages or extensions. Callers add the proxy flags that keep a page offline."""
    return subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
