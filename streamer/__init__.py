"""streamer: classify MTA delivery-failure events with KumoMTA bounce-classifier semantics."""

from typing import Any


def __getattr__(name: str) -> Any:
    # ``__version__`` on first use: importlib.metadata costs ~45 ms at every start-up, and only
    # ``streamer --version`` needs it.
    if name != "__version__":
        raise AttributeError(f"module 'streamer' has no attribute {name!r}")
    from importlib import metadata

    try:
        #: The installed distribution's version (pyproject.toml's ``version`` when built from it).
        version = metadata.version("streamer")
    except metadata.PackageNotFoundError:  # a plain checkout on PYTHONPATH, never installed
        version = "0.1.0"
    globals()["__version__"] = version
    return version
