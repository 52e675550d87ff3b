"""One configuration for every command: defaults < TOML file < environment < CLI flags.

The TOML file may group keys in tables (``[kafka]``, ``[classifier]``, ...) for readability; the
tables are flattened, so ``[classifier] cache_size = 10`` and a top-level ``cache_size = 10`` mean
the same. Every key has an environment variable ``STREAMER_<KEY>`` (upper case); the bootstrap
address also honours the conventional ``KAFKA_BOOTSTRAP``.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from streamer import memory, resources
from streamer.analytics.windows import DIMENSIONS as STATS_DIMENSIONS
from streamer.evidence import (
    DEFAULT_SUPPRESS_EVIDENCE,
    ENHANCED_CODE,
    REPLY_CODE,
    WORDING,
)
from streamer.feedback import CANONICAL_TYPES, DEFAULT_SUPPRESS_FEEDBACK

PROJECT_ROOT = resources.PROJECT_ROOT
#: Where the rule files we ship live; ``load-order.txt`` inside lists them in load order.
#: Package data when installed, the repository's ``rules/`` in a checkout (streamer.resources).
SHIPPED_RULES_DIR = Path(os.environ.get("STREAMER_RULES_DIR") or resources.rules_dir())


#: The config file of the current load_settings() call; falls back to $STREAMER_CONFIG.
_config_file: ContextVar[str | None] = ContextVar("streamer_config_file", default=None)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(Exception):
    """The configuration is invalid; the message names the key and the reason."""


def shipped_rule_files() -> list[Path]:
    """The rule files we ship, in their documented load order (``rules/load-order.txt``)."""
    order = SHIPPED_RULES_DIR / "load-order.txt"
    if not order.exists():
        raise ConfigError(f"{order}: missing (it lists the shipped rule files in load order)")
    names = [ln.split("#", 1)[0].strip() for ln in order.read_text(encoding="utf-8").splitlines()]
    return [SHIPPED_RULES_DIR / n for n in names if n]


def parse_non_classifiable(policy: str, output_topic: str) -> str | None:
    """Where non-classifiable records go: a topic name, or None to drop them."""
    if policy == "pass":
        return output_topic
    if policy == "drop":
        return None
    if policy.startswith("topic:") and len(policy) > len("topic:"):
        return policy[len("topic:") :]
    raise ValueError(f"non_classifiable: {policy!r} is not pass, drop or topic:NAME")


def default_state_dir() -> Path:
    """``<checkout>/var`` in a source checkout; else ``$XDG_STATE_HOME/streamer`` (default
    ``~/.local/state/streamer``), never inside an installed package."""
    if resources.in_source_checkout():
        return PROJECT_ROOT / "var"
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "streamer"


def default_pool_size() -> int:
    return max(1, (os.cpu_count() or 1) // 4)


def suppression_stage_topics(suppressions_topic: str) -> tuple[str, str]:
    """The default names of the suppression stage's events and changelog topics."""
    return f"{suppressions_topic}.events", f"{suppressions_topic}.state"


def rollup_stage_topics(stats_topic: str) -> tuple[str, str]:
    """The default names of the stats rollup stage's partials and changelog topics."""
    return f"{stats_topic}.partials", f"{stats_topic}.state"


def stats_rates_topic(stats_topic: str) -> str:
    """The default name of the complaint rates topic the stats rollup writes."""
    return f"{stats_topic}.rates"


#: Seconds a Delivery vouches for a later OOB about its recipient (``oob_trust_period``): also
#: what the offline report folds with.
DEFAULT_OOB_TRUST_PERIOD_S = 432_000


class Settings(BaseSettings):
    """Every option of streamer. The field descriptions are the configuration reference
    (docs/reference/configuration.md, generated from them by streamer.devkit.reference)."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMER_", extra="forbid", validate_default=True, populate_by_name=True
    )

    # --- Kafka connection -----------------------------------------------------------------
    bootstrap: str | None = Field(
        default=None,
        validation_alias=AliasChoices("bootstrap", "STREAMER_BOOTSTRAP", "KAFKA_BOOTSTRAP"),
        description="Kafka bootstrap servers; unset = the embedded local broker.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every Kafka client streamer opens connects."
    )
    sasl_mechanism: str | None = Field(
        None, description="`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(
        None,
        description="SASL password; never printed (shown as `**********`); better from "
        "`sasl_password_file` or the environment than from a config file.",
    )
    sasl_password_file: Path | None = Field(
        None,
        description="File holding the SASL password (a mounted Secret; one trailing newline "
        "is dropped; relative to a config file that names it); not together with "
        "`sasl_password`.",
    )
    ssl_ca_location: str | None = Field(
        None, description="CA bundle (PEM) that signed the brokers' certificates."
    )
    ssl_certificate_location: str | None = Field(
        None, description="Client certificate for mutual TLS."
    )
    ssl_key_location: str | None = Field(None, description="Client key for mutual TLS.")
    ssl_key_password: SecretStr | None = Field(
        None, description="Password of the client key; never printed."
    )
    ssl_key_password_file: Path | None = Field(
        None,
        description="File holding the client key's password, read like `sasl_password_file`.",
    )
    kafka_extra: dict[str, str] = Field(
        default_factory=dict, description="Any other librdkafka property, for every client."
    )

    # --- Topics -----------------------------------------------------------------------------
    input_topic: str = Field("kumomta.logs", description="Topic of KumoMTA log records.")
    output_topic: str = Field("kumomta.classified", description="Topic of enriched records.")
    dlq_topic: str | None = Field(
        None,
        description="Dead-letter topic.",
        json_schema_extra={"shown_default": "`<input_topic>.dlq`"},
    )
    partitions: int = Field(4, ge=1, description="Partitions for `streamer topics create`.")
    replication_factor: int = Field(
        1,
        ge=1,
        description="Replication for `streamer topics create` (use 3 in production).",
    )
    group_id: str = Field("streamer", description="Consumer group of the workers.")
    non_classifiable: str = Field(
        "pass", description="Other record types: `pass`, `drop` or `topic:NAME`."
    )
    max_message_bytes: int = Field(
        1_048_576, ge=1024, description="Larger input messages go to the DLQ (`too-large`)."
    )

    # --- Classifier (KumoMTA's configure_bounce_classifier options) --------------------------
    files: list[Path] = Field(
        default_factory=list,
        description="Rule files in load order (`--rules` on the command line replaces them).",
        json_schema_extra={"shown_default": "the shipped rules"},
    )
    site_files: list[Path] = Field(
        default_factory=list,
        description="Your own rule files, loaded before `files`: the lowest index wins, so they "
        "take precedence over the shipped rules without listing the shipped files.",
    )
    back_pressure: int = Field(
        10_000,
        ge=1,
        description="Records consumed whose outputs are not acknowledged yet at which the worker "
        "stops fetching (it pauses its partitions when no room comes within 1 s); counted "
        "records waiting only for a stats update may add 8 times as many.",
    )
    pool_size: int = Field(
        default_factory=default_pool_size,
        ge=1,
        description="Threads of the async classification API "
        "(`streamer.classifier.ClassifierPool`); the worker classifies on its event loop and "
        "ignores it, since RE2's set match holds the GIL and threads measured slower (299k vs "
        "436k lines/s): scale with processes.",
        json_schema_extra={"shown_default": "max(1, cores/4)"},
    )
    cache_size: int = Field(1024, ge=0, description="LRU entries for classified lines.")
    uncategorized_cache_size: int = Field(
        1024, ge=0, description="Separate LRU for `Uncategorized` lines."
    )
    watch_rules: bool = Field(True, description="Reload the rules when a rules file changes.")

    # --- Analytics (docs/analytics.md) -----------------------------------------------------
    analytics: bool = Field(
        True,
        description="`category` and `provider` in `classification`, the stats and "
        "suppressions topics (see Analytics); `false` turns all of it off.",
    )
    stats_topic: str = Field(
        "kumomta.stats",
        description="Windowed statistics, one row per window and dimensions (compacted; "
        "upsert by key).",
    )
    suppressions_topic: str = Field(
        "kumomta.suppressions",
        description="Hard-bounced recipients (compacted; a tombstone when one receives mail "
        "again).",
    )
    stats_window: int = Field(
        60, ge=1, le=86_400, description="Tumbling window length, seconds (event time)."
    )
    stats_grace: int = Field(
        10,
        ge=0,
        description="A window's rows are marked `final` once event time passed its end plus "
        "this (seconds).",
    )
    stats_flush_interval: float = Field(
        3.0,
        gt=0,
        le=60,
        description="Seconds between stats updates in at-least-once mode, sooner (at most every "
        "0.25 s) once the records waiting only for an update reach 4 times `back_pressure` or "
        "its tally holds 5,000 distinct keys (exactly-once: every transaction).",
    )
    stats_retention: int = Field(
        3600,
        ge=60,
        description="Seconds of event time a window stays in memory for late records.",
    )
    stats_dimensions: list[str] = Field(
        default_factory=lambda: list(STATS_DIMENSIONS),
        description=f"Keys of a stats row: {', '.join(f'`{d}`' for d in STATS_DIMENSIONS)}; "
        "one left out reads `*`.",
    )
    stats_max_pools: int = Field(
        200, ge=1, description="Distinct egress pools kept (the heaviest); the rest as `other`."
    )
    stats_max_sources: int = Field(
        1000, ge=1, description="Distinct egress sources kept (the heaviest); the rest as `other`."
    )
    stats_max_tenants: int = Field(
        500, ge=1, description="Distinct tenants kept (the heaviest); the rest as `other`."
    )
    stats_max_rows: int = Field(
        5_625,
        ge=1,
        description="Rows held over all windows, and (× 4 KB) the bytes their counters, "
        "rule-gap templates and examples may hold; beyond either, new keys count in an "
        "all-`other` row and new gap templates as `other`.",
    )
    stats_partials_topic: str | None = Field(
        None, description="Internal partial stats rows; default <stats_topic>.partials"
    )
    stats_state_topic: str | None = Field(
        None, description="The stats rollup stage's changelog; default <stats_topic>.state"
    )
    stats_rates_topic: str | None = Field(
        None,
        description="Complaint rates per window and provider, and per window and tenant "
        "(compacted, written by the stats rollup); default <stats_topic>.rates",
    )
    stats_rollup_retention: int = Field(
        7200,
        ge=60,
        description="Seconds of event time the stats rollup keeps a window after its end; "
        "partials for an older one are not folded (keep it above stats_retention).",
    )
    stats_rollup_rows: int = Field(
        6_000,
        ge=1,
        description="Keys (window and dimensions) the stats rollup stage holds, oldest windows "
        "retired first (default: from memory_budget_mb).",
    )
    stats_max_gaps: int = Field(
        32, ge=1, description="Rule-gap templates kept per stats row (a space-saving summary)."
    )
    analytics_cache_size: int = Field(
        4096,
        ge=16,
        description="Entries of each analytics lookup cache (provider per site, per peer name "
        "and per domain, tenant per queue, event time per second and minute, gap templates); "
        "emptied when full.",
    )
    suppressions_memory: int = Field(
        7_500,
        ge=1,
        description="Recipients the suppression stage keeps in memory (~3 KB of RSS a "
        "suppressed recipient), suppressed ones last.",
    )
    suppression_events_topic: str | None = Field(
        None,
        description="The suppression events workers emit, keyed by recipient (internal).",
        json_schema_extra={"shown_default": "`<suppressions_topic>.events`"},
    )
    suppression_state_topic: str | None = Field(
        None,
        description="The suppression stage's changelog (internal, compacted; as many "
        "partitions as the events topic).",
        json_schema_extra={"shown_default": "`<suppressions_topic>.state`"},
    )
    suppression_replay: int = Field(
        600,
        ge=0,
        description="Seconds of suppression events a stage reads again when assigned a "
        "partition (delivery times of never-suppressed addresses).",
    )
    suppressions_redis_url: str | None = Field(
        None,
        description="Redis the worker mirrors the suppressions topic into (as `streamer "
        "suppressions sync` does); unset: no mirror in the worker.",
    )
    suppressions_redis_prefix: str = Field(
        "streamer:suppressed:",
        min_length=1,
        description="Redis keys of the mirror: <prefix><recipient>; the key <prefix> alone holds "
        "its positions.",
    )
    suppress_evidence: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SUPPRESS_EVIDENCE),
        description="What a `hard` classification must rest on to suppress the address "
        '(`wording`, `enhanced-code`, `reply-code`; see "Evidence").',
    )
    suppress_feedback_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SUPPRESS_FEEDBACK),
        description="Feedback-Types whose reports suppress the complainer (reason complaint).",
    )
    oob_trust_period: int = Field(
        DEFAULT_OOB_TRUST_PERIOD_S,
        ge=0,
        description="Seconds a Delivery to a recipient vouches for an OOB (DSN) about it; an OOB "
        "without one does not suppress. 0: every hard OOB suppresses.",
    )
    oob_tenant_meta: str = Field(
        "tenant",
        min_length=1,
        description="The meta key an OOB record's tenant is read from (set by the policy).",
    )
    category_files: list[Path] = Field(
        default_factory=list, description="Category tables applied over rules/categories.toml."
    )
    provider_files: list[Path] = Field(
        default_factory=list,
        description="Provider tables applied over rules/mailbox-providers.toml.",
    )

    # --- Worker -----------------------------------------------------------------------------
    batch_size: int = Field(
        2000, ge=1, description="Most records one `consume()` hands to the agent."
    )
    exactly_once: bool = Field(
        False, description="Kafka transactions instead of at-least-once (see Guarantees)."
    )
    worker_id: str | None = Field(
        None,
        description="Name of this worker in logs and metrics.",
        json_schema_extra={"shown_default": "`<host>-<pid>`"},
    )
    processes: int | Literal["auto"] = Field(
        1,
        description="Worker processes one `streamer worker` runs, supervised (`auto`: one per "
        'core; see "Several processes per host").',
    )

    # --- Operations -------------------------------------------------------------------------
    memory_budget_mb: int = Field(
        memory.DEFAULT_BUDGET_MB,
        ge=memory.MIN_BUDGET_MB,
        description="The RSS (MB) one worker process stays under, whatever its input. The "
        'bounds marked "from `memory_budget_mb`" derive from it unless set explicitly '
        "(streamer.memory).",
    )
    metrics_max_values: int = Field(
        50,
        ge=1,
        description="Values per dimension in the deliverability metrics (the heaviest), the "
        "rest as `other`.",
    )
    metrics_top_keys: int = Field(
        2000,
        ge=1,
        description="Keys a rolling top (`streamer_top_sites`, `streamer_rule_gaps`) counts per "
        "10 s bucket, trimmed as values arrive.",
    )
    metrics_host: str = Field("127.0.0.1", description="Prometheus endpoint's address.")
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="Prometheus endpoint's port; 0 disables it."
    )
    web_host: str = Field("127.0.0.1", description="Faust web server's (`/status`) address.")
    web_port: int = Field(
        6066, ge=0, le=65535, description="Faust web server's (`/status`) port; 0 disables it."
    )
    log_level: str = Field("INFO", description="Log level.")
    log_format: Literal["text", "json"] = Field(
        "text", description="`text` or `json` (one JSON object per line, with the worker id)."
    )
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="Local broker data, Faust state, logs.",
        json_schema_extra={
            "shown_default": "`<repo>/var` in a checkout, else `$XDG_STATE_HOME/streamer`"
        },
    )

    @model_validator(mode="before")
    @classmethod
    def _budget(cls, data: Any) -> Any:
        """Bounds not given explicitly derive from ``memory_budget_mb`` (explicit ones win)."""
        return memory.fill_derived(data) if isinstance(data, Mapping) else data

    @field_validator("stats_dimensions")
    @classmethod
    def _check_dimensions(cls, v: list[str]) -> list[str]:
        unknown = [d for d in v if d not in STATS_DIMENSIONS]
        if unknown:
            raise ValueError(f"unknown dimensions {unknown}; use some of {list(STATS_DIMENSIONS)}")
        return v

    @field_validator("suppress_evidence")
    @classmethod
    def _check_suppress_evidence(cls, v: list[str]) -> list[str]:
        known = (WORDING, ENHANCED_CODE, REPLY_CODE)
        unknown = [e for e in v if e not in known]
        if unknown:
            raise ValueError(f"unknown evidence {unknown}; use some of {list(known)}")
        return v

    @field_validator("suppress_feedback_types")
    @classmethod
    def _check_suppress_feedback(cls, v: list[str]) -> list[str]:
        unknown = [t for t in v if t not in CANONICAL_TYPES]
        if unknown:
            raise ValueError(
                f"unknown feedback types {unknown}; use some of {list(CANONICAL_TYPES)}"
            )
        return v

    @field_validator("processes")
    @classmethod
    def _check_processes(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be at least 1, or auto")
        return v

    @property
    def worker_processes(self) -> int:
        """``processes`` as a number (``auto``: the cores of this host)."""
        return self.processes if isinstance(self.processes, int) else max(1, os.cpu_count() or 1)

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, v: str) -> str:
        level = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(v.upper(), v.upper())
        if level not in LOG_LEVELS:
            raise ValueError(f"{v!r} is no log level; use one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("non_classifiable")
    @classmethod
    def _check_non_classifiable(cls, v: str) -> str:
        parse_non_classifiable(v, "")  # raises ValueError naming the accepted forms
        return v

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if self.sasl_password_file is not None:
            self.sasl_password = _secret_from_file(
                "sasl_password", self.sasl_password, self.sasl_password_file
            )
        if self.ssl_key_password_file is not None:
            self.ssl_key_password = _secret_from_file(
                "ssl_key_password", self.ssl_key_password, self.ssl_key_password_file
            )
        if self.dlq_topic is None:
            self.dlq_topic = f"{self.input_topic}.dlq"
        events, state = suppression_stage_topics(self.suppressions_topic)
        if self.suppression_events_topic is None:
            self.suppression_events_topic = events
        if self.suppression_state_topic is None:
            self.suppression_state_topic = state
        partials, stats_state = rollup_stage_topics(self.stats_topic)
        if self.stats_partials_topic is None:
            self.stats_partials_topic = partials
        if self.stats_state_topic is None:
            self.stats_state_topic = stats_state
        if self.stats_rates_topic is None:
            self.stats_rates_topic = stats_rates_topic(self.stats_topic)
        if not self.files:
            self.files = shipped_rule_files()
        return self

    @property
    def rule_files(self) -> list[Path]:
        """Every rule file in load order: ``site_files``, then ``files``."""
        return [*self.site_files, *self.files]

    def kafka_client_config(self) -> dict[str, Any]:
        """librdkafka settings shared by every confluent-kafka client (bootstrap excluded)."""
        conf: dict[str, Any] = {"security.protocol": self.security_protocol}
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": _reveal(self.sasl_password),
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": _reveal(self.ssl_key_password),
        }
        conf.update({k: v for k, v in optional.items() if v is not None})
        conf.update(self.kafka_extra)
        return conf

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # CLI flags arrive as init kwargs: they win over the environment, which wins over TOML.
        return (init_settings, env_settings, _TomlSource(settings_cls))


def _reveal(secret: SecretStr | None) -> str | None:
    """The one place a secret is unwrapped: for the librdkafka configuration."""
    return secret.get_secret_value() if secret is not None else None


def _secret_from_file(field: str, given: SecretStr | None, path: Path) -> SecretStr:
    """The secret in ``path`` (a mounted Kubernetes Secret, say) without one trailing newline.

    ConfigError names the setting and the file, never what the file holds.
    """
    setting = f"{field}_file"
    if given is not None:
        raise ConfigError(f"{field} and {setting} are both set: use one of them")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{setting}: cannot read {path}: {reason}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{setting}: {path} is not UTF-8 text") from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise ConfigError(f"{setting}: {path} is empty")
    return SecretStr(text)


def flatten_tables(data: dict[str, Any]) -> dict[str, Any]:
    """A config file's tables only group keys for reading; ``kafka_extra`` is a real table."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "kafka_extra":
            flat.update(value)
        else:
            flat[key] = value
    return flat


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the file named by ``STREAMER_CONFIG`` (set by ``--config``); tables are flattened."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _config_file.get() or os.environ.get("STREAMER_CONFIG")
        if not path:
            return {}
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: config file not found") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: config file is not UTF-8 text") from None
        except OSError as exc:  # a folder, no permission
            raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
        flat = flatten_tables(data)
        base = Path(path).resolve().parent
        for key in ("files", "category_files", "provider_files"):
            if key in flat:  # rule and table files in a config file are relative to that file
                names = flat[key]
                if not isinstance(names, list) or not all(isinstance(f, str) for f in names):
                    raise ConfigError(f"{path}: {key}: must be a list of file names")
                flat[key] = [str(base / f) for f in names]
        for key in ("sasl_password_file", "ssl_key_password_file"):
            if isinstance(flat.get(key), str):  # so are secret files
                flat[key] = str(base / flat[key])
        return flat


#: STREAMER_* variables that are no setting but mean something: the config file, where shipped
#: files and caches live, the supervisor's hand-over to its children, tests and container set-up.
OTHER_VARIABLES = frozenset(
    {
        "CONFIG",
        "RULES_DIR",
        "CACHE_DIR",
        "SUPERVISOR_PID",
        "TEST_BOOTSTRAP",
        "TEST_PROCESSES",  # deploy/dev.sh test: pytest-xdist's processes
        "UID",
        "VENV",
        "REQUIRE_NATIVE",  # streamer.native: a missing native extension is an error
        "NATIVE",  # streamer.native: 0 makes the worker and offline classify take the Python path
    }
)


#: What Kubernetes sets for a Service named streamer(-...): STREAMER_SERVICE_HOST and the like.
_KUBERNETES_SERVICE = re.compile(
    r"_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$"
)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning per ``STREAMER_*`` variable that names no setting (a typo is otherwise
    silently ignored, while the same typo in a config file is an error)."""
    if "STREAMER_SUPERVISOR_PID" in environ:
        return []  # a supervised child: its parent has said it already
    names = [env_var(f) for f in Settings.model_fields]
    out = []
    for var in sorted(environ):
        if not var.startswith("STREAMER_") or var in names:
            continue
        if var.removeprefix("STREAMER_") in OTHER_VARIABLES or _KUBERNETES_SERVICE.search(var):
            continue
        close = difflib.get_close_matches(var, names, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        out.append(f"{var} is not a streamer setting and is ignored{hint}")
    return out


def env_var(field: str) -> str:
    """The environment variable of a setting (``files`` -> ``STREAMER_FILES``)."""
    return f"STREAMER_{field.upper()}"


def _settings_error(exc: SettingsError) -> ConfigError:
    """pydantic-settings' "error parsing value for field ..." (a complex setting from the
    environment that is not JSON) as one line naming the variable and what it must hold."""
    match = re.search(r'field "([^"]+)"', str(exc))
    field = match.group(1) if match else None
    cause = exc.__cause__ or exc.__context__
    reason = f": {cause}" if cause is not None else ""
    if field is None or field not in Settings.model_fields:
        return ConfigError(f"invalid configuration: {exc}{reason}")
    default = Settings.model_fields[field].get_default(call_default_factory=True)
    shape = "a JSON object" if isinstance(default, dict) else "a JSON list"
    return ConfigError(f"{env_var(field)}: not valid JSON{reason} (it must hold {shape})")


_UNION_TAG = re.compile(r"^(int|str|float|bool|literal\[.*\]|function-\w+\[.*\])$")


def _problems(exc: ValidationError, flags: Mapping[str, Any], config: str | None) -> list[str]:
    """pydantic's errors in a user's words: one per setting (a union's alternatives joined),
    an unknown key with the closest setting, and where the bad value came from."""
    by_key: dict[str, list[str]] = {}
    for err in exc.errors():
        # a union's alternatives add their type to the path (processes.int, ...): dropped
        key = ".".join(str(p) for p in err["loc"] if not _UNION_TAG.match(str(p))) or "config"
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, list(Settings.model_fields), n=1, cutoff=0.8)
            msg = "not a setting" + (f" (did you mean {close[0]}?)" if close else "")
        else:
            msg = err["msg"].removeprefix("Value error, ")
        if msg not in by_key.setdefault(key, []):
            by_key[key].append(msg)
    return [
        f"{key}{_source(key, flags, config)}: {' or '.join(msgs)}" for key, msgs in by_key.items()
    ]


def _source(key: str, flags: Mapping[str, Any], config: str | None) -> str:
    """`` (from STREAMER_X)`` or `` (in file.toml)`` (flags win over the environment, which
    wins over the file); "" for a command-line flag (the user just typed it)."""
    field = key.split(".", 1)[0]
    if field in flags:
        return ""
    if env_var(field) in os.environ:
        return f" (from {env_var(field)})"
    return f" (in {config})" if config else ""


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings; ``overrides`` are CLI flags (None values are ignored).

    Raises ConfigError with a one-line message naming every invalid key (or variable, or file).
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    token = _config_file.set(str(config_file) if config_file is not None else None)
    try:
        return Settings(**given)
    except SettingsError as exc:
        raise _settings_error(exc) from None
    except ValidationError as exc:
        config = _config_file.get() or os.environ.get("STREAMER_CONFIG") or None
        problems = _problems(exc, given, config)
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from exc
    finally:
        _config_file.reset(token)
