"""streamer: classify MTA delivery-failure events with KumoMTA bounce-classifier semantics."""

from importlib import metadata as _metadata

try:
    #: The installed distribution's version (pyproject.toml's ``version`` when built from it).
    __version__ = _metadata.version("streamer")
except _metadata.PackageNotFoundError:  # a plain checkout on PYTHONPATH, never installed
    __version__ = "0.1.0"
