"""The one settings object every clickstream service reads at start-up.

Values come from environment variables prefixed ``CLICKSTREAM_`` (for example
``CLICKSTREAM_API_PORT=9000``) and from an optional ``.env`` file in the working
directory. Entry points call :func:`load_settings` once and pass the frozen
result down; nothing else in the code base reads the environment.

Leaving ``kafka_bootstrap_servers`` or ``s3_endpoint`` unset means "the local
stack's own": ``clickstream up`` then starts a Tansu broker or a SeaweedFS
server on loopback. Setting them points every service (and ``up``) at an
external Kafka or S3 (MinIO, AWS) instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK = "127.0.0.1"


class SettingsError(ValueError):
    """Raised when the environment holds a value that cannot be used; says what to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLICKSTREAM_", env_file=".env", extra="ignore", frozen=True
    )

    # --- Kafka ---------------------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        None, description="host:port[,host:port]; unset = the local stack's Tansu broker"
    )
    broker_port: int = 9092
    topic_prefix: str = "clickstream."
    topic_partitions: int = Field(4, ge=1)
    topic_replication_factor: int = Field(1, ge=1)
    # Apache Kafka supports the idempotent producer; the local Tansu broker rejects
    # InitProducerId, so it is off by default and must be switched on for Kafka.
    kafka_idempotent_producer: bool = False
    produce_timeout_s: float = Field(5.0, gt=0, description="the API answers 503 past this")
    api_producers: int = Field(
        4, ge=1, description="Kafka connections the API writes through, each for its share of the partitions"
    )

    # --- S3 and the lake -----------------------------------------------------
    s3_endpoint: str | None = Field(
        None, description="http(s)://host:port; unset = the local stack's SeaweedFS"
    )
    s3_port: int = 8333
    s3_bucket: str = "clickstream"
    s3_region: str = "us-east-1"
    s3_access_key: str = "clickstream"
    s3_secret_key: str = "clickstream-secret"
    broker_log_bucket: str = Field(
        "clickstream-broker", description="bucket holding the local Tansu broker's log"
    )
    s3_server_threads: int | None = Field(
        None, ge=1, description="GOMAXPROCS of the local stack's SeaweedFS; unset = one thread per core"
    )
    lake_dir: Path | None = Field(
        None, description="write the lake to this local directory instead of S3"
    )

    # --- services ------------------------------------------------------------
    host: str = LOOPBACK
    api_port: int = 8000
    dashboard_port: int = 8501
    processor_port: int = 6066
    reactor_port: int = 6067
    sink_port: int = 6068
    state_dir: Path = Path(".clickstream")
    demo_write_key: str | None = None
    demo_source: str = "demo"
    sources_file: Path | None = Field(None, description="YAML file of sources: write keys, CORS origins, rate limits")
    api_opentelemetry: bool = Field(
        False, description="let FastAPI trace the API's requests to the OpenTelemetry providers configured in the "
        "process (its own Prometheus /metrics is always there)",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list, description="CIDRs of proxies whose X-Forwarded-For is believed"
    )
    anonymize_ip: bool = True
    log_level: str = "INFO"
    dashboard_password: SecretStr | None = Field(
        None, description="when set, the dashboard asks for this password before showing anything"
    )

    # --- processing ----------------------------------------------------------
    session_timeout_s: int = Field(1800, gt=0, description="inactivity that ends a session")
    windows_s: list[int] = Field(
        default_factory=lambda: [60, 10],
        description="tumbling window sizes of the metrics; the first is the one rules use by default",
    )
    lateness_s: int = Field(60, ge=0, description="allowed lateness: the watermark trails the latest event time by this")
    idle_timeout_s: float = Field(
        10, gt=0, description="after this long without events (wall clock) the watermark follows the clock"
    )
    conversion_event: str = Field("Order Completed", description="the track event that counts as a conversion")
    rules_file: Path | None = Field(None, description="YAML rules file, reloaded when it changes")
    processor_checkpoint_timeout_s: float = Field(
        30, gt=0, description="a checkpoint of the processor (outputs, then state) that takes longer ends the "
        "worker with exit code 75, to be restarted from its saved state")
    processor_failpoint: str = Field(
        "", description="fault testing only: 'outputs-sent:N' or 'merger-outputs-sent:N' ends the processor "
        "at once the N-th time it has sent outputs and not yet saved the state that covers them; with a "
        "'hang:' prefix it waits there forever instead",
    )
    page_view_threshold: int = Field(
        100, ge=1, description="page views of one path in one window that fire a reaction"
    )
    flush_interval_s: float = Field(5.0, ge=1, le=900)
    flush_max_bytes: int = Field(64 * 1024 * 1024, gt=0)
    compact_interval_s: float = Field(
        900, ge=0, description="the sink compacts the lake's closed hours this often (one sink of the group); "
        "0 = never: then run `clickstream compact` yourself, from one machine")
    compact_grace_s: float = Field(
        300, ge=0, description="objects merged away are deleted once the object that replaces them is this old, "
        "so that a query planned before the merge can still read them")
    sink_consumers: int = Field(
        2, ge=1, le=16, description="consumers one sink process fetches with (one group member, the "
        "others its helpers): each keeps a fetch in flight, so two read a broker whose fetches wait on storage "
        "faster than one")
    webhook_url: str | None = Field(None, description="the default route's webhook (no routes file)")
    webhook_secret: str | None = Field(
        None, description="signs the default route's webhook bodies (X-Clickstream-Signature)"
    )
    webhook_timeout_s: float = Field(5.0, gt=0)
    reactor_routes_file: Path | None = Field(
        None, description="YAML file routing rules to reactor handlers; unset = log, plus webhook_url if set"
    )

    @field_validator("windows_s")
    @classmethod
    def _window_sizes(cls, value: list[int]) -> list[int]:
        if not value or any(size <= 0 or 86400 % size for size in value) or len(set(value)) != len(value):
            raise ValueError("give distinct window sizes in seconds that divide a day, e.g. [60, 10]")
        return value

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    # --- derived values --------------------------------------------------------
    @property
    def manages_kafka(self) -> bool:
        """True when ``clickstream up`` must start its own broker."""
        return self.kafka_bootstrap_servers is None

    @property
    def manages_s3(self) -> bool:
        """True when ``clickstream up`` must start its own S3 server."""
        return self.s3_endpoint is None

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"{LOOPBACK}:{self.broker_port}"

    @property
    def s3_endpoint_url(self) -> str:
        return self.s3_endpoint or f"http://{LOOPBACK}:{self.s3_port}"

    @property
    def lake_root(self) -> str:
        """Where the lake's tables live: ``s3://bucket`` or ``file:///abs/dir``."""
        if self.lake_dir is not None:
            return self.lake_dir.resolve().as_uri()
        return f"s3://{self.s3_bucket}"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    def as_env(self) -> dict[str, str]:
        """These settings as ``CLICKSTREAM_*`` variables, to hand to child processes."""
        env = {}
        for name, value in self.model_dump(mode="json").items():
            secret = getattr(self, name)
            if isinstance(secret, SecretStr):
                value = secret.get_secret_value()  # model_dump masks secrets as "**********"
            if value is not None:
                # Lists travel as JSON, which is how pydantic-settings reads them back.
                env[f"CLICKSTREAM_{name.upper()}"] = json.dumps(value) if isinstance(value, list) else str(value)
        return env


def load_settings(**overrides) -> Settings:
    """Read the settings once, turning validation errors into a message that says what to set."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "CLICKSTREAM_" + "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"  {name}: {err['msg']} (got {err.get('input')!r})")
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from None
