"""streamer: classify MTA delivery-failure events with KumoMTA bounce-classifier semantics."""

__version__ = "0.1.0"
