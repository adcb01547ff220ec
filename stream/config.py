"""One frozen settings model: YAML file, then SEGSTREAM_* environment, then CLI flags.

Nested fields use ``__`` in the environment: ``SEGSTREAM_KAFKA__BOOTSTRAP_SERVERS``.
Secrets are ``SecretStr`` and print masked.
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
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from models.features import FEATURE_NAMES, FeatureParams
from stream.errors import ConfigError

DEFAULT_CONFIG = Path("config/default.yaml")
MAX_FEATURE_WEIGHT = 100.0  # bounded input: a weight past this drowns every other feature


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Frozen):
    bootstrap_servers: str = "localhost:19092"
    group_id: str = "segstream"
    client_id: str = "segstream"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    max_poll_records: int = Field(default=2000, ge=1, le=100_000)
    poll_timeout_ms: int = Field(default=500, ge=10, le=60_000)
    max_record_bytes: int = Field(default=64 * 1024, ge=256, description="bigger records are dead-lettered")
    # A restarted instance gets its partitions back after the old member's session expires:
    # keep it short (kafka-python's 45 s default made every crash cost ~40 s of stall).
    session_timeout_ms: int = Field(default=10_000, ge=1000, le=300_000)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100, le=100_000)
    # "process": outputs are published by a child process (stream.io.sinks.process), off the service's
    # GIL; "inline": by a producer in the service's own process (one process, slower changes).
    publisher: Literal["process", "inline"] = "process"
    # How long a client waits for the broker's first answer (kafka-python's bootstrap) before the
    # command fails with one line: an unreachable broker costs this, not kafka-python's 30 s.
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=300)


class RedisSettings(_Frozen):
    url: SecretStr = SecretStr("redis://localhost:16379/0")
    namespace: str = Field(default="seg", pattern=r"^[A-Za-z0-9_\-]{1,32}$")
    # How long connecting and the first PING may take before the command fails with one line
    # (a server that accepts connections but does not answer, e.g. paused, included).
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=300)


class TopicSettings(_Frozen):
    interactions: str = "interactions"
    dlq: str = "interactions.dlq"
    changes: str = "segments.changes"
    current: str = "segments.current"
    model: str = "segments.model"
    model_events: str = "segments.model-events"
    suffix: str = Field(default="", description="appended to every output topic (shadow replays)")
    partitions: int = Field(default=4, ge=1, le=1024)

    def out(self, name: str) -> str:
        return f"{getattr(self, name)}{self.suffix}"


class FeatureSettings(_Frozen):
    monetary_half_life_days: float = Field(default=90.0, gt=0)
    channel_half_life_days: float = Field(default=30.0, gt=0)
    short_half_life_days: float = Field(default=7.0, gt=0)
    long_half_life_days: float = Field(default=60.0, gt=0)
    # A record more than this before its own customer's newest event is a LateEvent.
    allowed_lateness_hours: float = Field(default=48.0, ge=0)
    # A record dated more than this after the machine's clock is a FutureEvent (a clock bug).
    max_future_hours: float = Field(default=24.0, ge=0)
    # The partition watermark (inactivity re-scoring) is the newest event time this many
    # customers have reached: no single customer moves it (models.features.clock).
    watermark_customers: int = Field(default=3, ge=1, le=100)
    inactivity_thresholds_days: tuple[float, ...] = (
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


class ModelSettings(_Frozen):
    model: Literal["microclusters", "kmeans", "streamkmeans", "clustream", "denstream", "dbstream"] = (
        "microclusters"
    )
    n_segments: int = Field(default=8, ge=2, le=64)
    max_micro: int = Field(default=150, ge=8, le=5000)
    half_life_days: float = Field(default=21.0, gt=0)
    update_every: int = Field(default=2000, ge=10)
    update_days: float = Field(
        default=0.0, ge=0, description="a version also after this much event time with learned rows (0: off)"
    )
    warmup_vectors: int = Field(default=2000, ge=10)
    warmup_days: float = Field(default=21.0, ge=0, description="event-time history before the first version")
    learn_interval_hours: float = Field(
        default=24.0, ge=0, description="the model learns from a customer at most once per interval"
    )
    population: int = Field(
        default=2048,
        ge=0,
        le=16384,
        description="customers in the sample each version is fitted on (0: fit the micro-clusters)",
    )
    population_step: float = Field(
        default=0.5, gt=0, le=1, description="how far a version moves its centroids towards the sample's fit"
    )
    population_step_days: float = Field(
        default=0.0,
        ge=0,
        description="D > 0: population_step is the share moved per D days of event time, not per version",
    )
    align_partitions: bool = Field(
        default=True,
        description="a learner reading several partitions learns from them in event-time order, "
        "once all have passed a row by features.allowed_lateness_hours (versions then do not "
        "depend on how the partitions' records interleave)",
    )
    margin: float = Field(default=0.55, ge=0, lt=1)
    min_dwell_days: float = Field(default=21.0, ge=0)
    # How much each feature counts in distances, after standardisation (1 if not listed; 0
    # leaves it out). A checkpoint keeps the weights it was built with: replay to change them.
    # A mapping in YAML and env (JSON); kept as sorted pairs so the settings stay hashable.
    feature_weights: tuple[tuple[str, float], ...] = ()
    outlier_quantile: float = Field(default=0.99, gt=0.5, lt=1)
    seed: int = 42
    # One instance learns the model (from its partitions' customers: a hash sample of all of
    # them) and checkpoints every version to Redis; followers assign with the newest version
    # there and never learn, so every instance segments with the same model.
    role: Literal["learner", "follower"] = "learner"

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
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    # Processes `segstream run` starts: worker i owns the partitions p with p % workers == i and
    # serves its metrics on metrics_port + i; worker 0 learns the model, the others follow it.
    workers: int = Field(default=1, ge=1, le=64)
    metrics_host: str = "127.0.0.1"
    stall_seconds: float = Field(default=60.0, gt=0)
    # /readyz is 503 once Kafka or Redis has not answered the health prober (stream.runtime.probes, a
    # request every second on clients of its own) for this long.
    dependency_silence_seconds: float = Field(default=5.0, gt=0, le=3600)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


_FILE_VALUES: ContextVar[dict[str, Any] | None] = ContextVar("segstream_file_values", default=None)


class _FileSource(PydanticBaseSettingsSource):
    """Values read from the YAML file by :func:`load` (lowest precedence)."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SEGSTREAM_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    topics: TopicSettings = TopicSettings()
    features: FeatureSettings = FeatureSettings()
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
        # First wins: flags (init kwargs), then SEGSTREAM_* env, then the YAML file.
        return init_settings, env_settings, _FileSource(settings_cls, _FILE_VALUES.get() or {})

    def masked(self) -> dict[str, Any]:
        """A printable dict: secrets appear as '**********'."""
        data = self.model_dump(mode="json")
        data["redis"]["url"] = _mask_url(self.redis.url.get_secret_value())
        return data


def _mask_url(url: str) -> str:
    """redis://user:pass@host -> redis://user:****@host (the password is the secret)."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    cred, _, host = rest.rpartition("@")
    user = cred.split(":", 1)[0] if ":" in cred else ""
    return f"{scheme}://{user}:****@{host}"


def load(config: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from a YAML file, then SEGSTREAM_* env, then ``overrides`` (CLI flags)."""
    file_values: dict[str, Any] = {}
    path = config if config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError as e:
            raise ConfigError(f"config file not found: {path}") from e
        except yaml.YAMLError as e:
            detail = " ".join(str(e).split())
            raise ConfigError(f"config file {path} is not valid YAML: {detail}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        file_values = raw
    token = _FILE_VALUES.set(file_values)
    try:
        return Settings(**(overrides or {}))
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors(include_url=False)
        )
        where = f" (from {path}, SEGSTREAM_* env or flags)" if path else ""
        raise ConfigError(f"invalid settings{where}: {problems}") from e
    finally:
        _FILE_VALUES.reset(token)


def env_overrides_present() -> list[str]:
    return sorted(k for k in os.environ if k.startswith("SEGSTREAM_"))
