"""Benchmarks: each measures against a baseline run alongside it (see ``streamer bench``)."""
