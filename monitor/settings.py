"""Service settings, read once at start from ``MONITOR_*`` environment variables.

A wrong value stops the worker at start with a message that names the variable
(``describe_settings_error``), never halfway through a stream.
"""

from __future__ import annotations

import json
import sys
from datetime import tzinfo
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from monitor.analytes import Analyte
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
    hl7v2_topic: str = Field(default="lab.hl7v2.oru", pattern=r"^[A-Za-z0-9._-]+$")
    fhir_topic: str = Field(default="lab.fhir", pattern=r"^[A-Za-z0-9._-]+$")
    treatments_topic: str = Field(default="clinical.treatments", pattern=r"^[A-Za-z0-9._-]+$")
    vitals_topic: str = Field(default="clinical.vitals", pattern=r"^[A-Za-z0-9._-]+$")
    # IANA zone for HL7 times sent without an offset (else such a message is a dead letter).
    hl7_default_tz: str | None = None
    # JSON file mapping a site's local result codes to analytes, e.g. {"WBCX": "wbc"}.
    local_codes_file: Path | None = None
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

    @field_validator("hl7_default_tz")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError("not a known IANA time zone name") from None
        return value

    @field_validator("local_codes_file")
    @classmethod
    def _readable_codes(cls, value: Path | None) -> Path | None:
        if value is not None:
            _read_local_codes(value)
        return value

    def hl7_default_zone(self) -> tzinfo | None:
        return ZoneInfo(self.hl7_default_tz) if self.hl7_default_tz else None

    def local_codes(self) -> dict[str, Analyte] | None:
        return _read_local_codes(self.local_codes_file) if self.local_codes_file else None

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


def _read_local_codes(path: Path) -> dict[str, Analyte]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read a JSON object of codes from that file ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("must hold a JSON object mapping codes to analytes")
    try:
        return {str(code): Analyte(analyte) for code, analyte in data.items()}
    except ValueError:
        raise ValueError("maps a code to something that is not a CBC analyte") from None


def load_settings() -> MonitorSettings:
    """Settings from the environment; a wrong one ends the process with its name (exit 2)."""
    try:
        return MonitorSettings()
    except ValidationError as exc:
        print(describe_settings_error(exc), file=sys.stderr)
        raise SystemExit(2) from None


def describe_settings_error(exc: ValidationError) -> str:
    """Name each wrong variable as the operator set it (MONITOR_...), without its value."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        field = str(error["loc"][0]) if error["loc"] else "?"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"invalid setting {ENV_PREFIX}{field.upper()}: {message}")
    return "\n".join(lines)
