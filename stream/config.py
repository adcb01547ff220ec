"""One frozen settings model, the only place a default lives: code defaults, then a profile file
(``--config FILE`` or ``SEGSTREAM_CONFIG``), then ``SEGSTREAM_*`` environment, then flags.

The defaults are those of the local stack (``scripts/stack.sh``); a profile holds only what it
overrides (``config/docker.yaml``: where the services are). No file is read implicitly, so a
command gives the same settings from whatever directory it runs in. Nested fields use ``__`` in
the environment: ``SEGSTREAM_KAFKA__BOOTSTRAP_SERVERS``. Secrets are ``SecretStr`` and print
masked. :func:`sources` says where each effective value came from (``segstream config --sources``).

>>> s = load(overrides={"model": {"margin": 0.4}})
>>> s.model.margin, s.model.min_dwell_days
(0.4, 21.0)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from models.features import FEATURE_NAMES, FeatureParams
from models.segments.catalog import model_names
from models.segments.lifecycle import LifecycleParams
from stream.errors import ConfigError

CONFIG_ENV = "SEGSTREAM_CONFIG"  # a profile file, when no --config is given
ENV_PREFIX = "SEGSTREAM_"
MAX_FEATURE_WEIGHT = 100.0  # bounded input: a weight past this drowns every other feature
# The thresholds of silence (days after a customer's newest event) at which a quiet customer is
# re-scored: out to two years, so a customer quiet for a year is seen as such.
INACTIVITY_THRESHOLDS_DAYS = (
    3.0,
    7.0,
    14.0,
    21.0,
    30.0,
    45.0,
    60.0,
    90.0,
    120.0,
    180.0,
    270.0,
    365.0,
    540.0,
    730.0,
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Frozen):
    bootstrap_servers: str = Field("localhost:19092", description="the broker `scripts/stack.sh` starts")
    group_id: str = Field("segstream", description="consumer group: one per deployment or replay")
    client_id: str = Field("segstream", description="client id the broker sees")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how clients talk to the broker"
    )
    sasl_mechanism: str | None = Field(
        None, description="e.g. SCRAM-SHA-512, with the user and password below"
    )
    sasl_username: str | None = Field(None, description="SASL user")
    sasl_password: SecretStr | None = Field(None, description="SASL password (printed masked)")
    ssl_cafile: str | None = Field(
        None,
        description="PEM file of the CA that signed the broker's certificate (SSL, SASL_SSL); "
        "none: the system's CAs",
    )
    ssl_check_hostname: bool = Field(
        True, description="the broker's certificate must name the host connected to (SSL, SASL_SSL)"
    )
    max_poll_records: int = Field(2000, ge=1, le=100_000, description="upper bound of a batch")
    poll_timeout_ms: int = Field(500, ge=10, le=60_000, description="how long a poll waits for records")
    max_record_bytes: int = Field(
        64 * 1024, ge=256, description="larger records are dead-lettered as `RecordTooLarge`"
    )
    # A restarted instance gets its partitions back after the old member's session expires:
    # kafka-python's 45 s default made every crash cost ~40 s of stall.
    session_timeout_ms: int = Field(
        10_000,
        ge=1000,
        le=300_000,
        description="consumer group session: how long a dead member holds its partitions",
    )
    heartbeat_interval_ms: int = Field(3_000, ge=100, le=100_000, description="consumer group heartbeat")
    publisher: Literal["process", "inline"] = Field(
        "process",
        description="`process`: outputs are sent by a child process, off the service's GIL; "
        "`inline`: by a producer in the service's own process",
    )
    connect_timeout_seconds: float = Field(
        5.0, gt=0, le=300, description="a broker that does not answer this long fails a command with one line"
    )

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        # A half-configured login fails at the broker with a vague error: say what is missing.
        if self.security_protocol.startswith("SASL_"):
            missing = [
                f"kafka.{n}"
                for n in ("sasl_mechanism", "sasl_username", "sasl_password")
                if not getattr(self, n)
            ]
            if missing:
                raise ValueError(f"{self.security_protocol} needs {', '.join(missing)}")
        elif self.sasl_mechanism:
            raise ValueError(f"sasl_mechanism is set but security_protocol is {self.security_protocol}")
        return self


class RedisSettings(_Frozen):
    url: SecretStr = Field(
        SecretStr("redis://localhost:16379/0"), description="the Redis `scripts/stack.sh` starts"
    )
    namespace: str = Field(
        "seg", pattern=r"^[A-Za-z0-9_\-]{1,32}$", description="prefix of every key: a replay runs in its own"
    )
    connect_timeout_seconds: float = Field(
        5.0, gt=0, le=300, description="connecting and the first PING, then a command fails with one line"
    )
    cluster: bool = Field(
        False,
        description="`url` is one node of a Redis Cluster (`scripts/stack.sh start --cluster`): "
        "the store uses redis-py's cluster client",
    )


# The topics segstream writes, by their settings' names.
OUTPUT_NAMES = ("dlq", "changes", "current", "model", "model_events")


class TopicSettings(_Frozen):
    interactions: str = Field("interactions", description="the input topic")
    dlq: str = Field("interactions.dlq", description="dead letters")
    changes: str = Field("segments.changes", description="segment changes (a stream)")
    current: str = Field("segments.current", description="the latest change per customer (compacted)")
    model: str = Field("segments.model", description="model snapshots (compacted)")
    model_events: str = Field(
        "segments.model-events", description="births, deaths, splits, merges, drift, renames"
    )
    suffix: str = Field("", description="appended to every output topic (shadow replays)")
    partitions: int = Field(4, ge=1, le=1024, description="partitions of the topics segstream creates")
    # 1 / 1 fit the single-node stack; a cluster (`scripts/stack.sh start --brokers 3`) takes 3 / 2:
    # with the producers' acks=all, an acknowledged output is then on two brokers at least, and
    # one broker may die without losing it or stopping the writes.
    replication_factor: int = Field(
        1, ge=1, le=32, description="replicas of each partition of the topics segstream creates"
    )
    min_insync_replicas: int = Field(
        1,
        ge=1,
        le=32,
        description="`min.insync.replicas` of the topics segstream creates: replicas that must have "
        "a record before the broker acknowledges it (the producers use acks=all)",
    )

    @model_validator(mode="after")
    def _isr_within_replicas(self) -> TopicSettings:
        # The broker would accept such a topic and then refuse every acks=all write to it.
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) is above replication_factor "
                f"({self.replication_factor}): no write could ever be acknowledged"
            )
        return self

    def out(self, name: str) -> str:
        return f"{getattr(self, name)}{self.suffix}"

    def outputs(self) -> dict[str, str]:
        """Each output's topic (its setting's name -> the topic, suffix included)."""
        return {name: self.out(name) for name in OUTPUT_NAMES}


class FeatureSettings(_Frozen):
    monetary_half_life_days: float = Field(90.0, gt=0, description="decay of spend and purchase counts")
    # 90, not 30: a 30-day mix of a weekly-to-monthly shopper swings with the phase of its visits
    # (store share high after a visit, email between), so segments split a persona by where its
    # customers were in their cycle (benchmarks/results/2026-12-07-session-21-channel-half-life.md).
    channel_half_life_days: float = Field(
        90.0, gt=0, description="decay of the channel mix and kinds of interaction"
    )
    short_half_life_days: float = Field(7.0, gt=0, description="short activity rate (engagement trend)")
    long_half_life_days: float = Field(60.0, gt=0, description="long activity rate (engagement trend)")
    allowed_lateness_hours: float = Field(
        48.0, ge=0, description="an event this much older than its own customer's newest is a `LateEvent`"
    )
    max_future_hours: float = Field(
        24.0, ge=0, description="an event dated this far after the machine's clock is a `FutureEvent`"
    )
    watermark_customers: int = Field(
        3,
        ge=1,
        le=100,
        description="a partition's watermark is the newest time this many customers reached",
    )
    inactivity_thresholds_days: tuple[float, ...] = Field(
        INACTIVITY_THRESHOLDS_DAYS,
        description="quiet customers are re-scored when their silence crosses these",
    )

    @field_validator("inactivity_thresholds_days")
    @classmethod
    def _sorted(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(d <= 0 for d in v):
            raise ValueError("thresholds must be positive day counts")
        return tuple(sorted(v))

    def params(self) -> FeatureParams:
        return FeatureParams(
            monetary_half_life_days=self.monetary_half_life_days,
            channel_half_life_days=self.channel_half_life_days,
            short_half_life_days=self.short_half_life_days,
            long_half_life_days=self.long_half_life_days,
        )


_LIFECYCLE = LifecycleParams()


class LifecycleSettings(_Frozen):
    """The lifecycle stage's rules (models.segments.lifecycle): thresholds against each
    customer's own typical gap between purchase days."""

    at_risk_ratio: float = Field(
        _LIFECYCLE.at_risk_ratio, gt=1, description="at risk after this many typical gaps of silence"
    )
    at_risk_min_days: float = Field(
        _LIFECYCLE.at_risk_min_days, ge=0, description="never at risk after fewer days than this"
    )
    at_risk_spread: float = Field(
        _LIFECYCLE.at_risk_spread,
        ge=0,
        description="an irregular customer is at risk only after its mean gap plus this many "
        "standard deviations",
    )
    at_risk_max_days: float = Field(
        _LIFECYCLE.at_risk_max_days,
        gt=0,
        description="at risk after this many days of silence whatever the rhythm",
    )
    lapsed_ratio: float = Field(
        _LIFECYCLE.lapsed_ratio,
        gt=1,
        description="lapsed after this many typical gaps of silence (scaled like the at-risk threshold)",
    )
    lapsed_min_days: float = Field(
        _LIFECYCLE.lapsed_min_days, ge=0, description="never lapsed after fewer days than this"
    )
    lapsed_max_days: float = Field(
        _LIFECYCLE.lapsed_max_days,
        gt=0,
        description="lapsed after this many days of silence whatever the rhythm",
    )
    prior_gap_days: float = Field(
        _LIFECYCLE.prior_gap_days, gt=0, description="the gap assumed before a customer has its own"
    )
    prior_weight: float = Field(
        _LIFECYCLE.prior_weight, ge=0, description="how many gaps the prior gap counts as"
    )
    won_back_days: float = Field(
        _LIFECYCLE.won_back_days, ge=0, description="a returning lapsed customer is `won_back` this long"
    )

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleSettings:
        if (
            self.lapsed_ratio <= self.at_risk_ratio
            or self.lapsed_min_days < self.at_risk_min_days
            or self.lapsed_max_days <= self.at_risk_max_days
            or self.at_risk_max_days < self.at_risk_min_days
            or self.lapsed_max_days < self.lapsed_min_days
        ):
            raise ValueError("lapsed thresholds must come after the at-risk ones")
        return self

    def params(self) -> LifecycleParams:
        return LifecycleParams(**self.model_dump())


class ModelSettings(_Frozen):
    model: str = Field("microclusters", description="the clustering model, from models.segments.catalog")
    n_segments: int = Field(8, ge=2, le=64, description="segments the model aims for")
    max_micro: int = Field(150, ge=8, le=5000, description="micro-clusters the default model keeps")
    half_life_days: float = Field(21.0, gt=0, description="micro-cluster memory in event time")
    update_every: int = Field(2000, ge=10, description="a model version every this many learned rows")
    update_days: float = Field(
        0.0, ge=0, description="also a version after this much event time with learned rows (0: off)"
    )
    warmup_vectors: int = Field(2000, ge=10, description="learned rows before the first version")
    warmup_days: float = Field(21.0, ge=0, description="event-time history before the first version")
    learn_interval_hours: float = Field(
        24.0, ge=0, description="the model learns from a customer at most once per interval"
    )
    population: int = Field(
        2048,
        ge=0,
        le=16384,
        description="customers in the sample each version is fitted on (0: the micro-clusters)",
    )
    population_step: float = Field(
        0.5, gt=0, le=1, description="how far a version moves its centroids towards the sample's fit"
    )
    population_step_days: float = Field(
        0.0, ge=0, description="D > 0: `population_step` is the share moved per D days of event time"
    )
    align_partitions: bool = Field(
        True,
        description="a learner reading several partitions learns from them in event-time order "
        "(its versions do not depend on how their records interleave)",
    )
    learn_all_partitions: bool = Field(
        True,
        description="followers write their rows to learn logs and the learner learns every "
        "partition's in the merge's order: the model does not depend on how many instances share "
        "the partitions or which one learns (needs align_partitions)",
    )
    follower_wait_seconds: float = Field(
        5.0,
        gt=0,
        description="how long a follower waits for the learner's merge to pass a batch's rows "
        "(learn_all_partitions) before it polls and reads the batch again",
    )
    max_held_records: int = Field(
        200_000,
        ge=0,
        description="records a learner holds back for a slower partition (the merge); beyond, it goes "
        "on out of order",
    )
    margin: float = Field(
        0.55, ge=0, lt=1, description="hysteresis: the new segment must be this much closer"
    )
    min_dwell_days: float = Field(21.0, ge=0, description="hysteresis: days in a segment before a move")
    margin_floor: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="hysteresis: the margin narrows after the dwell to this (none if at least `margin`)",
    )
    margin_relax_days: float = Field(
        120.0, ge=0, description="hysteresis: days in a segment at which the margin reaches `margin_floor`"
    )
    first_look_days: float = Field(
        7.0,
        ge=0,
        description="a segment given in a customer's first days of history is provisional: after this "
        "many days it moves once to a segment nearer by `margin_floor` (0: off)",
    )
    rescore_every_days: float = Field(
        7.0,
        ge=0,
        description="re-score each partition's customers against the version in force each time its "
        "watermark passes a multiple of this many days (0: never)",
    )
    rescore_margin: float = Field(
        0.7,
        gt=0,
        lt=1,
        description="the re-scoring moves a customer whose best segment is this much closer than its "
        "own (above `margin`: boundary customers stay)",
    )
    rescore_max_share: float = Field(
        0.01, ge=0, le=1, description="at most this share of a partition's segmented customers per re-scoring"
    )
    # A mapping in YAML and env (JSON); kept as sorted pairs so the settings stay hashable. A
    # checkpoint keeps the weights it was built with: replay to change them.
    feature_weights: tuple[tuple[str, float], ...] = Field(
        (), description="how much a feature counts in distances (1 if not listed, 0 leaves it out)"
    )
    outlier_quantile: float = Field(
        0.99, gt=0.5, lt=1, description="beyond this quantile of member distances: outlier"
    )
    seed: int = Field(42, description="every random choice of the model")
    role: Literal["learner", "follower", "auto"] = Field(
        "learner",
        description="`follower`: assign with the learner's versions, never learn; "
        "`auto`: learn while this instance owns input partition 0 (one per consumer group), else follow",
    )

    @model_validator(mode="after")
    def _rescore_above_hysteresis(self) -> ModelSettings:
        if self.rescore_margin <= self.margin:
            raise ValueError(
                f"rescore_margin ({self.rescore_margin}) must be above margin ({self.margin}): the "
                "re-scoring moves only customers clearly elsewhere, not boundary cases the hysteresis holds"
            )
        return self

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v not in model_names():
            raise ValueError(f"unknown model {v!r}; choose from {list(model_names())}")
        return v

    @field_validator("feature_weights", mode="before")
    @classmethod
    def _pairs(cls, v: Any) -> Any:
        return tuple(v.items()) if isinstance(v, Mapping) else v

    @field_validator("feature_weights")
    @classmethod
    def _known_features(cls, v: tuple[tuple[str, float], ...]) -> tuple[tuple[str, float], ...]:
        names = [name for name, _ in v]
        unknown = sorted(set(names) - set(FEATURE_NAMES))
        if unknown:
            raise ValueError(f"unknown features {unknown}; choose from {list(FEATURE_NAMES)}")
        if len(set(names)) < len(names):
            raise ValueError("a feature is listed twice")
        bad = sorted(name for name, w in v if not 0.0 <= w <= MAX_FEATURE_WEIGHT)
        if bad:
            raise ValueError(f"weights of {bad} must be between 0 and {MAX_FEATURE_WEIGHT:g}")
        return tuple(sorted(v))

    @field_serializer("feature_weights")
    def _as_mapping(self, v: tuple[tuple[str, float], ...]) -> dict[str, float]:
        return dict(v)


class ServiceSettings(_Frozen):
    metrics_port: int = Field(
        9108, ge=0, le=65535, description="`/metrics`, `/healthz`, `/readyz` (worker i: +i)"
    )
    workers: int = Field(
        1, ge=1, le=64, description="processes `segstream run` starts; worker 0 learns, the others follow"
    )
    metrics_host: str = Field("127.0.0.1", description="address the endpoints listen on")
    stall_seconds: float = Field(
        60.0, gt=0, description="`/healthz` is 503 when the loop has not turned this long"
    )
    dependency_silence_seconds: float = Field(
        5.0, gt=0, le=3600, description="`/readyz` is 503 once Kafka or Redis has been silent this long"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="the service's log level"
    )


_FILE_VALUES: ContextVar[dict[str, Any] | None] = ContextVar("segstream_file_values", default=None)


class _FileSource(PydanticBaseSettingsSource):
    """Values read from the profile file by :func:`load` (lowest precedence after the defaults)."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    topics: TopicSettings = TopicSettings()
    features: FeatureSettings = FeatureSettings()
    lifecycle: LifecycleSettings = LifecycleSettings()
    model: ModelSettings = ModelSettings()
    service: ServiceSettings = ServiceSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: flags (init kwargs), then SEGSTREAM_* env, then the profile file.
        return init_settings, env_settings, _FileSource(settings_cls, _FILE_VALUES.get() or {})

    def masked(self) -> dict[str, Any]:
        """A printable dict: secrets appear as '**********'."""
        data = self.model_dump(mode="json")
        data["redis"]["url"] = _mask_url(self.redis.url.get_secret_value())
        return data


SECTIONS: dict[str, type[_Frozen]] = {
    "kafka": KafkaSettings,
    "redis": RedisSettings,
    "topics": TopicSettings,
    "features": FeatureSettings,
    "model": ModelSettings,
    "service": ServiceSettings,
}


def _mask_url(url: str) -> str:
    """redis://user:pass@host -> redis://user:****@host (the password is the secret)."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    cred, _, host = rest.rpartition("@")
    user = cred.split(":", 1)[0] if ":" in cred else ""
    return f"{scheme}://{user}:****@{host}"


def profile_path(config: Path | None) -> Path | None:
    """The profile file: ``--config``, else ``$SEGSTREAM_CONFIG``, else none."""
    if config is not None:
        return config
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else None


def read_profile(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {path}") from e
    except yaml.YAMLError as e:
        detail = " ".join(str(e).split())
        raise ConfigError(f"config file {path} is not valid YAML: {detail}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return raw


def load(config: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from the code defaults, a profile file, then SEGSTREAM_* env, then ``overrides``
    (CLI flags)."""
    path = profile_path(config)
    token = _FILE_VALUES.set(read_profile(path))
    try:
        return Settings(**(overrides or {}))
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors(include_url=False)
        )
        where = f" (from {path}, SEGSTREAM_* env or flags)" if path else " (from SEGSTREAM_* env or flags)"
        raise ConfigError(f"invalid settings{where}: {problems}") from e
    finally:
        _FILE_VALUES.reset(token)


def sources(config: Path | None = None, overrides: dict[str, Any] | None = None) -> dict[str, str]:
    """Where each setting's effective value came from: ``default``, ``file <path>``,
    ``env SEGSTREAM_<SECTION>__<FIELD>`` or ``flag`` (the precedence :func:`load` applies)."""
    path = profile_path(config)
    profile = read_profile(path)
    env = {k.upper() for k in os.environ if k.upper().startswith(ENV_PREFIX)}
    out: dict[str, str] = {}
    for section, model in SECTIONS.items():
        for name in model.model_fields:
            key = f"{section}.{name}"
            var = f"{ENV_PREFIX}{section}__{name}".upper()
            if name in ((overrides or {}).get(section) or {}):
                out[key] = "flag"
            elif var in env or f"{ENV_PREFIX}{section}".upper() in env:
                out[key] = f"env {var}"
            elif name in (profile.get(section) or {}):
                out[key] = f"file {path}"
            else:
                out[key] = "default"
    return out


def env_overrides_present() -> list[str]:
    return sorted(k for k in os.environ if k.startswith(ENV_PREFIX) and k != CONFIG_ENV)


def settings_table() -> str:
    """The settings as a Markdown table (setting, default, meaning), from the model itself: the
    README's table is this text (scripts/settings_table.py writes it; a test compares)."""
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    for section, model in SECTIONS.items():
        for name, field in model.model_fields.items():
            default = field.default
            if isinstance(default, SecretStr):
                default = default.get_secret_value()
            if isinstance(default, tuple) and name == "feature_weights":
                default = dict(default)
            if default is None:
                shown = "none"
            else:
                shown = "empty" if default in ("", (), {}) else f"`{_plain(default)}`"
            rows.append(f"| `{section}.{name}` | {shown} | {field.description or ''} |")
    return "\n".join(rows) + "\n"


def _plain(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(_plain(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
