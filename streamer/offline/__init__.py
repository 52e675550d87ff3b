"""``streamer classify`` over files: re-labelling KumoMTA log history offline, on every core.

The work is split in three parts, one module each: :mod:`streamer.offline.chunks` reads the
inputs into chunks of whole lines, :mod:`streamer.offline.labeller` turns one chunk into its
JSONL output, skipped lines and summary counts (the work a worker process does), and
:mod:`streamer.offline.pool` runs the labeller in this process or in a pool of processes,
handing results back in input order. :mod:`streamer.offline.summary` counts a run for
``--summary``.
"""
