"""Tools to try and measure streamer: the local broker, sample data, the demo and benchmarks.

Nothing in the runtime (the classifier core, the pipeline, the worker, the Kafka clients)
imports from here; these tools import the runtime like any other user of it. Only the command
line wires the two together (``streamer demo``, ``streamer bench``, ``streamer kafka start``,
and the embedded local broker that ``streamer worker`` starts when no bootstrap is set).
"""
