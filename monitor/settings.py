"""Service settings, read once at start from ``MONITOR_*`` environment variables.

A wrong value stops the worker at start with a message that names the variable
(``describe_settings_error``), never halfway through a stream.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from monitor.clinical.analytes import Analyte
from monitor.clinical.detector import DetectorSettings
from monitor.clinical.grading import CtcaeVersion

ENV_PREFIX = "MONITOR_"
PSEUDONYM_KEY_MIN_LENGTH = 16  # the dashboard and the paging bridge both take the key from here

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
SSL_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
_SSL_FIELDS = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
_SASL_FIELDS = (
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_sasl_password_file",
)


class MonitorSettings(BaseSettings):
    # hide_input_in_errors: str(ValidationError) would otherwise print the inputs, secrets too.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", hide_input_in_errors=True
    )

    broker_url: str = "kafka://localhost:9092"
    app_id: str = Field(default="cbc-monitor", pattern=r"^[A-Za-z0-9._-]+$")
    results_topic: str = Field(default="lab.cbc.results", pattern=r"^[A-Za-z0-9._-]+$")
    alerts_topic: str = Field(default="lab.cbc.alerts", pattern=r"^[A-Za-z0-9._-]+$")
    dlq_topic: str = Field(default="lab.cbc.results.dlq", pattern=r"^[A-Za-z0-9._-]+$")
    hl7v2_topic: str = Field(default="lab.hl7v2.oru", pattern=r"^[A-Za-z0-9._-]+$")
    fhir_topic: str = Field(default="lab.fhir", pattern=r"^[A-Za-z0-9._-]+$")
    treatments_topic: str = Field(default="clinical.treatments", pattern=r"^[A-Za-z0-9._-]+$")
    vitals_topic: str = Field(default="clinical.vitals", pattern=r"^[A-Za-z0-9._-]+$")
    # Compacted: the owning worker's latest summary of each patient in or near the nadir window,
    # folded by every dashboard into the ward's watch list (docs/dashboard.md).
    summaries_topic: str = Field(default="lab.cbc.patient-summaries", pattern=r"^[A-Za-z0-9._-]+$")
    # The watch list shows patients this many days before the nadir window opens, too.
    watch_lead_days: int = Field(default=3, ge=0, le=14)
    # IANA zone for HL7 times sent without an offset (else such a message is a dead letter).
    hl7_default_tz: str | None = None
    # Events dated more than this after their message was received are dead-lettered as
    # ``collected_in_future`` (clock skew allowance; monitor.adapters.future explains 5).
    future_tolerance_minutes: float = Field(default=5.0, ge=0, le=1440)
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
    # Keys the dashboard's patient references (``ref:<hex>``, as the bridge's patient_ref).
    pseudonym_key: SecretStr | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Kafka consumer-group session: a dead worker's partitions move after about 1.5x this.
    session_timeout: float = Field(default=6.0, ge=1, le=300)
    # The embedded Tansu broker reports a partition's end offset per record batch, not per
    # record, so Faust's table recovery would stop short of the last updates: with this on, the
    # worker reads each changelog's last batch to find its real end (monitor.kafka.end_offsets).
    # Needed with Tansu (the demo and tests set it); harmless but useless on Kafka.
    end_offsets_per_batch: bool = False
    # Producer: how long a record may wait for others to share its batch (s), and a batch's
    # size limit in bytes (1 makes every record a batch of its own). Faust's default, 16,384,
    # holds two or three patient states of a long history, so a batch's state writes went out
    # in several requests one after another: p99 result-to-alert at 500 results/s 127 ms
    # against 79-91 ms at 262,144 (2026-11-30). Keep it well under the broker's
    # message.max.bytes (Kafka's default about 1 MB): a larger batch is refused.
    producer_linger: float = Field(default=0.001, ge=0, le=1)
    producer_max_batch_bytes: int = Field(default=262_144, ge=1, le=16_777_216)
    # The agents hand their input on in natural batches (monitor.stream.batcher): what arrived
    # while the last batch was handled, at most this many messages, growing for at most this
    # long while messages keep coming (each within 1 ms of the last; 0: not at all).
    batch_max_messages: int = Field(default=500, ge=1, le=100_000)
    batch_linger_ms: float = Field(default=50.0, ge=0, le=10_000)
    # Faust's consumer: records per poll (None: no limit) and events buffered per stream.
    broker_max_poll_records: int | None = Field(default=None, ge=1)
    stream_buffer_maxsize: int = Field(default=4096, ge=1)
    # Faust's RocksDB store remembers which partition holds a key for this many keys; a read
    # outside a stream's iteration (a batch's) otherwise asks every partition's database.
    table_key_index_size: int = Field(default=1000, ge=1)
    # How long a fetch may wait for records (monitor.stream.transport explains the default).
    fetch_max_wait_ms: int = Field(default=10, ge=1, le=5000)

    # How every Kafka client connects (monitor.kafka.security; docs/secure-kafka.md).
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    kafka_ssl_cafile: Path | None = None  # CAs trusted for the broker (else the system's)
    kafka_ssl_certfile: Path | None = None  # client certificate, for mutual TLS
    kafka_ssl_keyfile: Path | None = None  # its private key (unencrypted PEM)
    kafka_ssl_check_hostname: bool = True
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: Path | None = None  # read once at start, trailing newline dropped
    _sasl_password_from_file: SecretStr | None = PrivateAttr(default=None)

    ctcae_version: CtcaeVersion = "5.0"
    page_grade: int = Field(default=3, ge=1, le=4)
    history_max_days: float = Field(default=90, gt=0)
    history_max_results: int = Field(default=50, ge=2, le=1000)
    pancytopenia_window_hours: float = Field(default=72, gt=0)
    # RCV hysteresis (issue 10, monitor.clinical.variation): false announces every crossing.
    hysteresis: bool = True
    rcv_z: float = Field(default=1.65, gt=0, le=4)

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

    @field_validator("pseudonym_key")
    @classmethod
    def _pseudonym_key(cls, value: SecretStr | None) -> SecretStr | None:
        """Trimmed as the bridge reads it, so both give the same ``patient_ref``; blank: unset."""
        if value is None:
            return None
        key = value.get_secret_value().strip()
        if not key:
            return None
        if len(key) < PSEUDONYM_KEY_MIN_LENGTH:
            raise ValueError(
                f"must be at least {PSEUDONYM_KEY_MIN_LENGTH} characters "
                "(it keys the patient references shown on the dashboard)"
            )
        return SecretStr(key)

    @field_validator("local_codes_file")
    @classmethod
    def _readable_codes(cls, value: Path | None) -> Path | None:
        if value is not None:
            _read_local_codes(value)
        return value

    @field_validator(*_SSL_FIELDS, "kafka_sasl_password_file")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is not None and not (value.is_file() and os.access(value, os.R_OK)):
            raise ValueError("no readable file at that path")
        return value

    @model_validator(mode="after")
    def _kafka_security(self) -> Self:
        """Cross-field rules; each message starts with the variable to fix."""
        protocol = self.kafka_security_protocol
        if protocol not in SSL_PROTOCOLS:
            _refuse_unused(self, _SSL_FIELDS, "SSL or SASL_SSL")
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise ValueError(f"{_env('kafka_ssl_certfile')}: required with a key file")
        if protocol not in SASL_PROTOCOLS:
            _refuse_unused(self, _SASL_FIELDS, "SASL_PLAINTEXT or SASL_SSL")
            return self
        for name in ("kafka_sasl_mechanism", "kafka_sasl_username"):
            if not getattr(self, name):
                raise ValueError(f"{_env(name)}: required when {_protocol_is(protocol)}")
        password_file = self.kafka_sasl_password_file
        if password_file is None:
            if not self.kafka_sasl_password or not self.kafka_sasl_password.get_secret_value():
                raise ValueError(
                    f"{_env('kafka_sasl_password')}: required (or "
                    f"{_env('kafka_sasl_password_file')}) when {_protocol_is(protocol)}"
                )
            return self
        if self.kafka_sasl_password is not None:
            raise ValueError(
                f"{_env('kafka_sasl_password')}: set it or "
                f"{_env('kafka_sasl_password_file')}, not both"
            )
        try:
            text = password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError):
            raise ValueError(
                f"{_env('kafka_sasl_password_file')}: cannot read a UTF-8 password from it"
            ) from None
        if not text:
            raise ValueError(f"{_env('kafka_sasl_password_file')}: the file is empty")
        self._sasl_password_from_file = SecretStr(text)
        return self

    def kafka_sasl_password_value(self) -> SecretStr | None:
        """The SASL password, from the variable or the file (read once, at start)."""
        return self.kafka_sasl_password or self._sasl_password_from_file

    def hl7_default_zone(self) -> tzinfo | None:
        return ZoneInfo(self.hl7_default_tz) if self.hl7_default_tz else None

    def future_tolerance(self) -> timedelta:
        return timedelta(minutes=self.future_tolerance_minutes)

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
            hysteresis=self.hysteresis,
            rcv_z=self.rcv_z,
        )

    @property
    def bootstrap_servers(self) -> list[str]:
        return [url.strip().partition("://")[2] for url in self.broker_url.split(";")]


def _env(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def _protocol_is(protocol: str) -> str:
    return f"{_env('kafka_security_protocol')} is {protocol}"


def _refuse_unused(settings: MonitorSettings, fields: tuple[str, ...], protocols: str) -> None:
    """A TLS or SASL setting the protocol ignores is a mistake: the operator believes it is on."""
    for name in fields:
        if getattr(settings, name) is not None:
            raise ValueError(
                f"{_env(name)}: only used when {_env('kafka_security_protocol')} is {protocols}"
            )


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
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"] and message.startswith(ENV_PREFIX):
            lines.append(f"invalid setting {message}")  # a cross-field rule names its variable
            continue
        field = str(error["loc"][0]) if error["loc"] else "?"
        lines.append(f"invalid setting {ENV_PREFIX}{field.upper()}: {message}")
    return "\n".join(lines)
