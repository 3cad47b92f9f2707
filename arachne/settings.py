"""One frozen Settings object, built at each entry point and passed down.

Sources, highest priority first: explicit arguments, ``ARACHNE_*`` environment variables
(plus the conventional ``REDIS_URL`` and ``DATABASE_URL``), then ``arachne.toml`` (or the
file named by ``ARACHNE_CONFIG``). Nothing below an entry point reads ``os.environ``.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from arachne import __version__
from arachne.errors import ConfigError

CONFIG_ENV = "ARACHNE_CONFIG"
DEFAULT_CONFIG_FILE = "arachne.toml"
REDIS_SCHEMES = ("redis", "rediss", "unix")
"""URL schemes redis-py connects with; anything else fails later, far from the setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARACHNE_", frozen=True, extra="ignore")

    data_dir: Path = Field(
        Path("arachne-data"),
        description="Holds the embedded Valkey append-only file and the SQLite store.",
    )
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("ARACHNE_REDIS_URL", "REDIS_URL", "redis_url"),
        description="External Redis; unset means the embedded Valkey in data_dir.",
    )
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("ARACHNE_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="SQLAlchemy URL; unset means a SQLite file in data_dir.",
    )

    # queue
    queue_name: str = "arachne"
    batch_size: int = Field(200, ge=1, description="Image URLs per rq job.")
    job_timeout: int = Field(900, ge=10, description="Seconds before rq kills a batch job.")
    job_retries: int = Field(3, ge=0)
    retry_backoff: list[int] = Field(
        [10, 60, 300], description="Seconds before each retry of a failed batch (last repeats)."
    )
    workers: int = Field(2, ge=1, description="Worker processes started by `arachne run`.")

    # crawl
    max_depth: int = Field(5, ge=0)
    max_pages: int = Field(10_000, ge=1)
    crawl_concurrency: int = Field(16, ge=1, description="Pages in flight per spider process.")
    per_host_concurrency: int = Field(
        4,
        ge=1,
        description="Requests in flight to one host at once, over every spider and worker "
        "of the cluster (pages, images and re-checks together).",
    )
    per_host_delay: float = Field(
        0.0,
        ge=0,
        description="Least seconds between the starts of two requests to one host, over the "
        "whole cluster; robots.txt Crawl-delay and back-off can only make it longer.",
    )
    crawl_delay_cap: float = Field(
        30.0, ge=0, description="robots.txt Crawl-delay is honoured up to this many seconds."
    )
    host_backoff_max: float = Field(
        300.0, gt=0, description="Longest back-off after 429s, 5xx answers and timeouts."
    )
    host_wait_max: float = Field(
        30.0,
        ge=0,
        description="A worker waits this long at most for a busy or paced host; longer, and "
        "the image is put off (re-queued for when the host allows).",
    )
    page_timeout: float = Field(
        30.0, gt=0, description="Seconds a page may take to download in full (slow, stalled)."
    )
    page_max_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1024,
        description="Bytes a page may have, decompressed (huge responses, gzip bombs).",
    )
    crawl_lease_seconds: float = Field(
        120.0,
        gt=0,
        description="A page a spider leased and did not finish (killed) goes back to the "
        "frontier after this long; live spiders renew their leases.",
    )
    obey_robots: bool = True
    contact_url: str | None = Field(
        None,
        description="A page about your hotline's crawler: it goes into the User-Agent, so a "
        "site's operator can see who is crawling and why.",
    )
    user_agent: str | None = Field(
        None, description="The whole User-Agent (default: ArachneBot with contact_url)."
    )

    # fetch + decode
    fetch_timeout: float = Field(20.0, gt=0)
    fetch_max_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    fetch_concurrency: int = Field(64, ge=1)
    allow_private_networks: bool = Field(
        False,
        description="Fetch images on loopback/private addresses (tests and the demo only): "
        "otherwise a hostile page could make workers probe the operator's own network.",
    )
    fetch_retries: int = Field(
        2, ge=0, description="Later tries for a URL that timed out or got a 5xx/429."
    )
    fetch_retry_delay: int = Field(30, ge=0, description="Seconds before the first re-fetch.")
    max_image_pixels: int = Field(
        64_000_000, ge=1, description="Larger images are refused as decompression bombs."
    )

    # matching
    pdq_threshold: int = Field(31, ge=0, le=128)
    pdq_min_quality: int = Field(50, ge=0, le=100)
    review_band: int = Field(
        45,
        ge=0,
        le=128,
        description="PDQ distances above a list's threshold up to this are near misses: "
        "review items for an analyst (`arachne review`), never notices. 0: none.",
    )
    list_retract_max: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Share of a list's active entries one import may retract; an import "
        "that would retract more (a truncated vendor file) is refused unless --force.",
    )

    # notices: who gets them (notices/contacts/)
    contacts_file: Path | None = Field(
        None, description="Operator overrides (TOML): host, parent domain or CIDR -> contact."
    )
    dns_servers: str | None = Field(
        None, description="host:port,... for DNS lookups; unset means the system resolver."
    )
    dns_timeout: float = Field(5.0, gt=0)
    rdap_bootstrap: str | None = Field(
        None,
        description="IANA RDAP bootstrap: a folder or file path, or a URL; unset means the "
        "dated snapshot shipped in the package (`arachne contacts update` refreshes it).",
    )
    rdap_timeout: float = Field(10.0, gt=0)
    rdap_max_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="Larger answers refused.")
    rdap_rate: float = Field(2.0, gt=0, description="Requests per second to one registry.")
    rdap_cache_ttl: int = Field(
        7 * 86400, ge=0, description="Seconds a network's RDAP answer is reused."
    )
    contact_retry_after: int = Field(
        6 * 3600, ge=0, description="Seconds before a host without a contact is resolved again."
    )
    # notices: what they say (notices/render.py)
    reporter_org: str | None = Field(
        None, description="The hotline's name in every notice; required for real sends."
    )
    reporter_email: str | None = Field(
        None, description="Where providers reply; defaults to smtp_from."
    )
    notice_language: str = Field("en", description="Default language of the text body.")
    classification_map: dict[str, str] = Field(
        default_factory=dict,
        description="List category -> XARF csam classification (baseline/A1/A2/B1/B2), "
        "on top of the built-in table.",
    )
    classification_default: str = Field(
        "baseline", description="XARF classification when a category is not in the table."
    )
    # notices: how they travel (notices/deliver.py)
    notice_channel: str = Field("smtp", description="smtp | webhook | outbox")
    outbox_dir: Path | None = Field(None, description="Folder of the outbox channel.")
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = Field(
        "arachne@hotline.invalid", description="Envelope and From address; required for sends."
    )
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = Field(False, description="SMTP over TLS from the first byte (port 465).")
    smtp_timeout: float = 30.0
    webhook_url: str | None = None
    webhook_secret: str | None = Field(None, description="HMAC-SHA256 key for the webhook.")
    webhook_timeout: float = 30.0
    demo_mode: bool = Field(
        False, description="The demo's placeholder sender (.invalid) is accepted; never else."
    )
    # notices: until it is gone (notices/incidents.py, notices/recheck.py)
    recheck_interval: int = Field(6 * 3600, ge=1, description="Seconds between re-checks.")
    renotice_interval: int = Field(
        86400, ge=1, description="Seconds between reminders while content is still up."
    )
    recheck_failures_removed: int = Field(
        3, ge=1, description="Timeouts/5xx in a row before a URL counts as removed."
    )
    escalate_after: int = Field(
        3, ge=1, description="Notices to one tier (provider, CDN/upstream) before the next."
    )
    recheck_batch: int = Field(
        1000, ge=1, description="Most URLs one scheduled run re-checks (the rest wait their turn)."
    )
    notices_tick_interval: int = Field(
        60, ge=1, description="Seconds between the workers' checks for due re-checks/reminders."
    )

    # demo
    demo_photos_dir: Path | None = Field(
        None, description="Benign photos for the demo site (default: ../shared/data/photos)."
    )

    # dashboard
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8377
    dashboard_metrics_open: bool = Field(
        False,
        description="Serve /metrics without a token (only on a trusted scrape network).",
    )
    dashboard_secret_key: str | None = Field(
        None,
        description="Fernet key (32 url-safe base64 bytes) encrypting session cookies; "
        "default: one kept in <data_dir>/dashboard.key (created 0600 on first use).",
    )
    dashboard_tls_cert: Path | None = Field(
        None, description="PEM certificate: serve the dashboard over HTTPS (Secure cookies)."
    )
    dashboard_tls_key: Path | None = Field(None, description="PEM private key for the certificate.")
    dashboard_session_hours: float = Field(
        12, gt=0, description="Hours a console login lasts without activity."
    )
    dashboard_login_attempts: int = Field(
        5, ge=1, description="Failed logins allowed per client and per name in 15 minutes."
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str | None) -> str | None:
        # Only the scheme is quoted back: the rest of the URL may hold a password.
        if url is not None and url.partition("://")[0].lower() not in REDIS_SCHEMES:
            schemes = ", ".join(f"{s}://" for s in REDIS_SCHEMES)
            raise ValueError(f"must start with {schemes} (got {url.partition(':')[0]!r}:...)")
        return url

    @property
    def agent(self) -> str:
        """The User-Agent of every request (pages, images, re-checks, RDAP)."""
        if self.user_agent:
            return self.user_agent
        about = self.contact_url or "child-protection hotline; abuse contact in notices"
        return f"ArachneBot/{__version__} (+{about})"

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'arachne.db').resolve()}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_FILE))
        return (
            init_settings,
            env_settings,
            _CheckedToml(settings_cls, toml_file=toml_path),
        )

    def child_env(self) -> dict[str, str]:
        """Environment for a child process so it sees exactly these settings."""
        env = dict(os.environ)
        for name, value in self.model_dump().items():
            if value is None:
                env.pop(f"ARACHNE_{name.upper()}", None)
                continue
            env[f"ARACHNE_{name.upper()}"] = str(value)
        # The generic names would otherwise win over nothing; keep them consistent.
        for generic, value in (("REDIS_URL", self.redis_url), ("DATABASE_URL", self.database_url)):
            if value is None:
                env.pop(generic, None)
            else:
                env[generic] = value
        return env


class _CheckedToml(TomlConfigSettingsSource):
    """The TOML file source, refusing unknown keys: a misspelt setting would otherwise be
    dropped silently and its default used."""

    def __init__(self, settings_cls: type[BaseSettings], toml_file: Path) -> None:
        self._path = toml_file
        try:
            super().__init__(settings_cls, toml_file=toml_file)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{toml_file}: not valid TOML ({exc})") from None
        known = list(settings_cls.model_fields)
        for key in self.toml_data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(f"{toml_file}: unknown setting {key!r}{hint}")


def _env_names(name: str) -> list[str]:
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(c) for c in alias.choices if str(c).isupper()]
    return [f"ARACHNE_{name.upper()}"]


def _field_name(loc: str) -> str:
    """The field behind an error location, which is the alias when one was used."""
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if loc == name or (isinstance(alias, AliasChoices) and loc in map(str, alias.choices)):
            return name
    return loc


def _secret(name: str) -> bool:
    return any(word in name for word in ("password", "secret", "url"))


def load_settings(**overrides: Any) -> Settings:
    """Settings for an entry point; a bad value is a ``ConfigError`` naming the setting and
    where it came from (one line per setting), never a pydantic traceback."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = _field_name(str(error["loc"][0])) if error["loc"] else "?"
            lines.append(f"setting {name} ({_origin(name, overrides)}): {_describe(name, error)}")
        # operator_errors prefixes the first line; the others get the same prefix here.
        raise ConfigError("\nerror: ".join(lines)) from None


def _origin(name: str, overrides: dict[str, Any]) -> str:
    if name in Settings.model_fields:
        for env in _env_names(name):
            if env in os.environ:
                return env
    if name in overrides:
        return "command-line option"
    return os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_FILE)


def _describe(name: str, error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if _secret(name) or "input" not in error:
        return message
    return f"{message} (got {error['input']!r})"
