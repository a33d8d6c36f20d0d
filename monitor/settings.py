"""Service settings, read once at start from ``MONITOR_*`` environment variables.

A wrong value stops the worker at start with a message that names the variable
(``describe_settings_error``), never halfway through a stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from monitor.detector import DetectorSettings
from monitor.grading import CtcaeVersion

ENV_PREFIX = "MONITOR_"


class MonitorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    broker_url: str = "kafka://localhost:9092"
    app_id: str = Field(default="cbc-monitor", pattern=r"^[A-Za-z0-9._-]+$")
    results_topic: str = Field(default="lab.cbc.results", pattern=r"^[A-Za-z0-9._-]+$")
    alerts_topic: str = Field(default="lab.cbc.alerts", pattern=r"^[A-Za-z0-9._-]+$")
    dlq_topic: str = Field(default="lab.cbc.results.dlq", pattern=r"^[A-Za-z0-9._-]+$")
    # The embedded broker slows sharply above 8 partitions (DESIGN.md): keep the default low.
    partitions: int = Field(default=4, ge=1, le=256)
    replication_factor: int = Field(default=1, ge=1, le=7)
    web_host: str = "0.0.0.0"
    web_port: int = Field(default=6066, ge=1, le=65535)
    data_dir: Path = Path("data")
    store: Literal["rocksdb", "memory"] = "rocksdb"
    max_message_bytes: int = Field(default=65_536, ge=1024)
    api_token: SecretStr | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Kafka consumer-group session: a dead worker's partitions move after about 1.5x this.
    session_timeout: float = Field(default=6.0, ge=1, le=300)
    # The embedded Tansu broker reports a partition's end offset per record batch, not per
    # record, so Faust's table recovery stops short of the last updates unless every record is
    # its own batch. Needed with Tansu (the demo and tests set it); leave it off on Kafka.
    one_record_per_batch: bool = False
    producer_linger: float = Field(default=0.0, ge=0, le=1)
    # How long a fetch may wait for records (monitor.stream.transport explains the default).
    fetch_max_wait_ms: int = Field(default=10, ge=1, le=5000)

    ctcae_version: CtcaeVersion = "5.0"
    page_grade: int = Field(default=3, ge=1, le=4)
    history_max_days: float = Field(default=90, gt=0)
    history_max_results: int = Field(default=50, ge=2, le=1000)
    pancytopenia_window_hours: float = Field(default=72, gt=0)

    @field_validator("broker_url")
    @classmethod
    def _kafka_urls(cls, value: str) -> str:
        for url in value.split(";"):
            scheme, sep, rest = url.strip().partition("://")
            if not sep or scheme not in ("kafka", "aiokafka") or not rest:
                raise ValueError("must look like kafka://host:port (several separated by ';')")
        return value

    @property
    def detector(self) -> DetectorSettings:
        return DetectorSettings(
            ctcae_version=self.ctcae_version,
            page_grade=self.page_grade,
            history_max_days=self.history_max_days,
            history_max_results=self.history_max_results,
            pancytopenia_window_hours=self.pancytopenia_window_hours,
        )

    @property
    def bootstrap_servers(self) -> list[str]:
        return [url.strip().partition("://")[2] for url in self.broker_url.split(";")]


def describe_settings_error(exc: ValidationError) -> str:
    """Name each wrong variable as the operator set it (MONITOR_...), without its value."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        field = str(error["loc"][0]) if error["loc"] else "?"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"invalid setting {ENV_PREFIX}{field.upper()}: {message}")
    return "\n".join(lines)
