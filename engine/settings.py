"""The one settings object, read once at the edge and passed in.

Values come from ``INCIDENT_POLICY_*`` environment variables (``DATABASE_URL``
is also read plain), then from command-line flags that the CLI lays over
them. Nothing below the CLI and the API reads the environment. The defaults
run the service on this host with zero set-up: SQLite under ``./var``, the
shipped ``rules/``, loopback only. Unsafe combinations are refused at start.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.store.orgs import ORG_NAME

Mode = Literal["auto", "dry_run", "off"]


class HealthCheck(BaseModel):
    """A dependency the service probes: an HTTP URL answering 2xx or 3xx."""

    name: str = Field(min_length=1, max_length=128)
    url: str = Field(pattern=r"^https?://")
    timeout_s: float = Field(default=2.0, gt=0, le=30)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="INCIDENT_POLICY_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    # Where things live.
    data_dir: Path = Path("var")
    rules_dir: Path = Path("rules")
    database_url: str = Field(
        default="",
        validation_alias=AliasChoices("INCIDENT_POLICY_DATABASE_URL", "DATABASE_URL"),
    )

    # HTTP.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    body_timeout_s: float = Field(default=30.0, gt=0, le=600)  # a stalled body
    auth: bool = True

    # The watcher and the flow.
    watch: bool = True
    watch_interval_s: float = Field(default=30.0, ge=1.0)
    worker: bool = True
    workers: int = Field(default=1, ge=1, le=64)  # flow threads on PostgreSQL
    mode: Mode | None = None  # overrides the catalog's global mode when set
    approval_ttl_s: int = Field(default=3600, ge=60)
    default_org: str = Field(default="default", pattern=f"^{ORG_NAME.pattern}$")

    # Collectors.
    collector_timeout_s: float = Field(default=3.0, gt=0, le=60)
    pm2_bin: str = "pm2"
    pm2_home: Path | None = None  # None: ~/.pm2 of the user running the service
    nginx_bin: str = "nginx"
    nginx_conf: Path | None = None  # None: nginx's compiled-in default
    nginx_prefix: Path | None = None  # nginx -p; None: the compiled-in prefix
    nginx_pid_file: Path | None = None  # None: the pid directive of the config
    nginx_status_url: str = "http://127.0.0.1/nginx_status"
    nginx_access_log: Path = Path("/var/log/nginx/access.log")
    nginx_error_log: Path = Path("/var/log/nginx/error.log")
    access_log_format: Literal["combined", "timed"] = "combined"
    customer_field: str = "remote_addr"  # access-log field naming the customer
    upload_path_pattern: str = r"^/(upload|uploads|api/upload)"
    log_window_s: float = Field(default=300.0, ge=10)
    log_backlog_bytes: int = Field(default=64 << 20, ge=0)  # first read of a log
    baseline_tau_s: float = Field(default=3600.0, ge=60)  # moving baselines
    deploy_log: Path | None = None  # None: <data_dir>/deploys.log
    health_checks: list[HealthCheck] = Field(default_factory=list)
    disk_mounts: list[Path] = Field(default_factory=list)  # empty: every real mount

    @field_validator("data_dir", "rules_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _default_pm2_home(self) -> Settings:
        # PM2's own default. Leaving it unset would let `pm2 jlist` start an
        # empty daemon under this service's user when none runs there.
        if self.pm2_home is None:
            self.pm2_home = Path.home() / ".pm2"
        return self

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        exposed = not _loopback(self.host)
        if exposed and not self.auth:
            raise ValueError(
                f"host {self.host!r} is reachable from other machines, so "
                "authentication cannot be turned off: set "
                "INCIDENT_POLICY_AUTH=true or listen on 127.0.0.1"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'incident-policy.sqlite3').resolve()}"

    @property
    def resolved_deploy_log(self) -> Path:
        return self.deploy_log or self.data_dir / "deploys.log"


def _loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
