"""Exit statuses of ``streamer worker``, as the supervisor (and any process manager) reads them.

- 0: stopped when asked (SIGTERM/SIGINT), after draining and committing.
- ``CRASH_EXIT`` (1): a crash (a fatal error, a hung client call): restart it, but a crash
  loop needs a human.
- ``CONFIG_ERROR_EXIT`` (2): a configuration or rules error: restarting cannot help.
- ``TEMPFAIL_EXIT`` (75, sysexits' ``EX_TEMPFAIL``): a passing condition, no fault of the
  worker: Kafka did not answer at start, or the group rebalanced under an exactly-once
  transaction. Restart it (with back-off) for as long as it takes.
"""

CRASH_EXIT = 1
CONFIG_ERROR_EXIT = 2
TEMPFAIL_EXIT = 75
