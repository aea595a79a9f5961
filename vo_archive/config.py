"""Archive configuration: a TOML file overlaid by ``VO_ARCHIVE_*`` environment values.

Precedence, lowest first: built-in defaults, the configuration file
(``$VO_ARCHIVE_CONFIG`` or ``$VO_ARCHIVE_HOME/archive.toml``), then the environment.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration file or variable that cannot be used."""


@dataclass(frozen=True, slots=True)
class ReleasePolicy:
    """When products become public.

    A product's release date is its observation night plus ``proprietary_days``
    for its level; a level listed in ``never_public`` gets no release date at all
    (proprietary for ever). ``product_type_days`` overrides the level rule for
    single product types (``"1d_telluric_corrected"`` …).
    """

    final_days: int = 365
    intermediate_days: int | None = None
    raw_days: int | None = 365
    never_public_types: tuple[str, ...] = ()
    product_type_days: tuple[tuple[str, int], ...] = ()


#: Storage back ends: the local file system (default) and S3-compatible stores.
STORAGE_BACKENDS = ("local", "s3")


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Where archived files are kept (the ``[storage]`` table).

    ``backend = "local"`` keeps them under ``$VO_ARCHIVE_HOME/storage``;
    ``"s3"`` keeps them in ``bucket`` of an S3-compatible store under
    ``prefix``, at ``endpoint_url`` (AWS when unset). Credentials come from
    boto3's usual places (``AWS_ACCESS_KEY_ID``..., ``~/.aws``, ``profile``).
    The S3 keys are read even while ``backend`` is local: they name the
    target of ``vo-archive storage migrate --to s3``.
    """

    backend: str = "local"
    endpoint_url: str | None = None
    bucket: str | None = None
    prefix: str = ""
    region: str | None = None
    profile: str | None = None

    @property
    def s3_url(self) -> str:
        """The store as ``s3://bucket/prefix`` (for messages)."""
        return f"s3://{self.bucket}/{self.prefix}"


def _storage_from(table: dict[str, Any], env: dict[str, str]) -> StorageConfig:
    def pick(var: str, key: str) -> str | None:
        value = env.get(var) or table.get(key)
        return str(value) if value not in (None, "") else None

    backend = pick("VO_ARCHIVE_STORAGE", "backend") or "local"
    if backend not in STORAGE_BACKENDS:
        raise ValueError(f"storage backend must be one of {STORAGE_BACKENDS}, "
                         f"not {backend!r}")
    prefix = pick("VO_ARCHIVE_S3_PREFIX", "prefix") or ""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    cfg = StorageConfig(backend, pick("VO_ARCHIVE_S3_ENDPOINT", "endpoint_url"),
                        pick("VO_ARCHIVE_S3_BUCKET", "bucket"), prefix.lstrip("/"),
                        pick("VO_ARCHIVE_S3_REGION", "region"), table.get("profile"))
    if backend == "s3" and not cfg.bucket:
        raise ValueError("storage backend s3 needs a bucket ([storage] bucket or "
                         "VO_ARCHIVE_S3_BUCKET)")
    return cfg


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the archive reads from its configuration."""

    home: Path = Path("var")
    dsn: str | None = None
    #: Hot standbys of the primary (PostgreSQL streaming replication) that
    #: answer read-only requests; none by default (:mod:`vo_archive.db.readers`).
    read_dsns: tuple[str, ...] = ()
    #: Seconds a standby may be behind the primary before reads avoid it.
    max_standby_lag: float = 30.0
    #: Seconds between two health checks of each standby.
    standby_check_interval: float = 1.0
    publisher_authority: str = "ivo://pessto.ia2.inaf.it"
    base_url: str | None = None
    #: Proxies in front of the web nodes whose X-Forwarded-For/-Proto/-Host/-Port
    #: are believed (0: none, the headers are ignored).
    trusted_proxies: int = 0
    maxrec_default: int = 1000
    maxrec_hard: int = 100_000
    ingest_batch: int = 200
    #: Seconds after a job worker's last heartbeat that its running jobs are
    #: taken as lost (the worker was killed) and queued again; the workers
    #: beat a quarter of this often (at most every 10 s).
    worker_stalled_after: float = 45.0
    #: Times a job's worker may be lost before the job is given up (ERROR).
    worker_max_attempts: int = 3
    policy: ReleasePolicy = field(default_factory=ReleasePolicy)
    storage: StorageConfig = field(default_factory=StorageConfig)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def storage_dir(self) -> Path:
        """Managed storage for archived files (with S3: the ingest staging area)."""
        return self.home / "storage"

    @property
    def pgdata(self) -> Path:
        """Data folder of the embedded PostgreSQL cluster."""
        return self.home / "pgdata"

    @property
    def cache_dir(self) -> Path:
        """Previews and other derived files that can be rebuilt."""
        return self.home / "cache"

    @property
    def embedded(self) -> bool:
        """Whether the archive runs its own private PostgreSQL cluster."""
        return self.dsn is None


def _policy_from(table: dict[str, Any]) -> ReleasePolicy:
    base = ReleasePolicy()
    days = table.get("product_type_days", {})
    return ReleasePolicy(
        final_days=int(table.get("final_days", base.final_days)),
        intermediate_days=table.get("intermediate_days", base.intermediate_days),
        raw_days=table.get("raw_days", base.raw_days),
        never_public_types=tuple(table.get("never_public_types", ())),
        product_type_days=tuple((str(k), int(v)) for k, v in days.items()),
    )


def _read_dsns(env: dict[str, str], archive: dict[str, Any]) -> tuple[str, ...]:
    """Return the standbys' DSNs: ``VO_ARCHIVE_READ_DSNS`` or ``read_dsns``.

    The variable holds libpq URLs separated by white space; the file's key is
    a list of strings (URLs or ``key=value`` strings).
    """
    if "VO_ARCHIVE_READ_DSNS" in env:
        return tuple(env["VO_ARCHIVE_READ_DSNS"].split())
    value = archive.get("read_dsns", [])
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise TypeError("read_dsns must be a list of DSN strings")
    return tuple(v for v in value if v.strip())


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read the settings from the configuration file and the environment.

    Parameters
    ----------
    env
        Environment to read; ``os.environ`` by default.

    Returns
    -------
    Settings
        The merged settings.

    Raises
    ------
    ConfigError
        If the configuration file cannot be parsed or a value has the wrong type.
    """
    env = dict(os.environ if env is None else env)
    home = Path(env.get("VO_ARCHIVE_HOME", "var")).absolute()
    cfg_path = Path(env.get("VO_ARCHIVE_CONFIG", home / "archive.toml"))
    data: dict[str, Any] = {}
    if cfg_path.exists():
        try:
            data = tomllib.loads(cfg_path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{cfg_path}: {exc}") from exc
    defaults = Settings()
    archive = data.get("archive", {})
    service = data.get("service", {})
    try:
        settings = Settings(
            home=home,
            dsn=env.get("VO_ARCHIVE_DSN") or archive.get("dsn") or None,
            read_dsns=_read_dsns(env, archive),
            max_standby_lag=float(env.get("VO_ARCHIVE_MAX_STANDBY_LAG")
                                  or archive.get("max_standby_lag",
                                                 defaults.max_standby_lag)),
            standby_check_interval=float(archive.get(
                "standby_check_interval", defaults.standby_check_interval)),
            publisher_authority=str(
                archive.get("publisher_authority", defaults.publisher_authority)
            ),
            base_url=env.get("VO_ARCHIVE_BASE_URL") or service.get("base_url"),
            trusted_proxies=int(env.get("VO_ARCHIVE_TRUSTED_PROXIES")
                                or service.get("trusted_proxies", 0)),
            maxrec_default=int(service.get("maxrec_default", defaults.maxrec_default)),
            maxrec_hard=int(service.get("maxrec_hard", defaults.maxrec_hard)),
            ingest_batch=int(archive.get("ingest_batch", defaults.ingest_batch)),
            worker_stalled_after=float(env.get("VO_ARCHIVE_WORKER_STALLED_AFTER")
                                       or archive.get("worker_stalled_after",
                                                      defaults.worker_stalled_after)),
            worker_max_attempts=int(archive.get("worker_max_attempts",
                                                defaults.worker_max_attempts)),
            policy=_policy_from(data.get("policy", {})),
            storage=_storage_from(data.get("storage", {}), env),
            extra={k: v for k, v in data.items()
                   if k not in ("archive", "service", "storage")},
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{cfg_path}: {exc}") from exc
    if not (settings.max_standby_lag > 0 and settings.standby_check_interval > 0):
        raise ConfigError(f"{cfg_path}: max_standby_lag and standby_check_interval "
                          "must be positive numbers of seconds")
    if not (settings.worker_stalled_after > 0 and settings.worker_max_attempts >= 1):
        raise ConfigError(f"{cfg_path}: worker_stalled_after must be a positive number "
                          "of seconds and worker_max_attempts at least 1")
    return settings


def with_overrides(settings: Settings, **changes: Any) -> Settings:
    """Return a copy of ``settings`` with some fields replaced."""
    return dataclasses.replace(settings, **changes)
