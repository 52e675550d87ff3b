"""Exit statuses of ``streamer worker`` and of every command that talks to Kafka, as the
supervisor and any process manager read them. docs/operations/exit-statuses.md lists them for
operators.

- 0: stopped when asked (SIGTERM/SIGINT), after draining and committing.
- ``CRASH_EXIT`` (1): a crash (a fatal error, a hung client call): restart it, but a crash
  loop needs a human.
- ``CONFIG_ERROR_EXIT`` (2): a configuration or rules error: restarting cannot help.
- ``LOGIN_REFUSED_EXIT`` (67, sysexits' ``EX_NOUSER``: a remote login refused): Kafka refused
  the SASL login (wrong user or password, a mechanism the listener does not offer).
- ``TEMPFAIL_EXIT`` (75, sysexits' ``EX_TEMPFAIL``): a passing condition, no fault of the
  worker: Kafka did not answer at start (nothing listening, no answer in time, a broker
  restarting), or the group rebalanced under an exactly-once transaction. Restart it (with
  back-off) for as long as it takes.
- ``TLS_MISMATCH_EXIT`` (76, ``EX_PROTOCOL``): the TLS handshake cannot succeed (a certificate
  that does not verify: unknown CA, another host name; a plaintext client on a TLS listener or
  the reverse).
- ``NOT_AUTHORIZED_EXIT`` (77, ``EX_NOPERM``): logged in, but the principal's ACLs do not let it
  use its topics or its group.

Each Kafka status belongs to one failure class of ``streamer.kafka.probe``.
"""

CRASH_EXIT = 1
CONFIG_ERROR_EXIT = 2
LOGIN_REFUSED_EXIT = 67
TEMPFAIL_EXIT = 75
TLS_MISMATCH_EXIT = 76
NOT_AUTHORIZED_EXIT = 77

#: Exits that no restart cures, with what they mean: the supervisor stops every child and
#: exits with the same status instead of restarting (waiting cannot fix a configuration).
PERMANENT_EXITS: dict[int, str] = {
    CONFIG_ERROR_EXIT: "a configuration error",
    LOGIN_REFUSED_EXIT: "Kafka refused the login",
    TLS_MISMATCH_EXIT: "the TLS settings do not match Kafka",
    NOT_AUTHORIZED_EXIT: "the principal's ACLs do not allow it",
}
