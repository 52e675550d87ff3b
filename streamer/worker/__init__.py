"""The stream worker: Kafka in, classified records out, offsets committed only when safe.

One module per part, each testable on its own:

- ``processing``: a batch through the pipeline to the producer, slice by slice;
- ``checkpoint`` (with ``offsets``): which offsets may be committed, in the at-least-once or
  the exactly-once mode;
- ``flow``: back-pressure (pause fetching while too much is in flight);
- ``reload``: rules hot reload (SIGHUP, file watch);
- ``assignment``: what a consumer-group rebalance does;
- ``stream``: the parts wired together around the Kafka clients;
- ``runloop``: the Faust app running it (agent, tasks, timer, signals, ``/status``).
"""

from streamer.worker.runloop import run_worker
from streamer.worker.stream import StreamWorker, default_worker_id

__all__ = ["StreamWorker", "default_worker_id", "run_worker"]
