"""``sources:``: the databases CareKPI reads, their URLs, timeouts, pools and cadences."""

from __future__ import annotations

from pydantic import Field, field_validator

from kpis.durations import Duration
from kpis.secrets import mask_url
from kpis.strict import Strict, duration, parse_window_intervals

# URLs as platforms hand them out: ``postgres://`` (Heroku, Render, Fly.io, ...) and a dialect
# without a driver get the driver CareKPI installs (psycopg 3, PyMySQL), not SQLAlchemy's
# default (psycopg2, mysqlclient), which a plain install does not have.
_SCHEME_DRIVER = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg",
                  "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}


def usual_driver(url: str) -> str:
    """The URL with the driver CareKPI installs when it names a dialect alone (or postgres)."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in _SCHEME_DRIVER:
        return f"{_SCHEME_DRIVER[scheme.lower()]}://{rest}"
    if sep and scheme.lower().startswith("postgres+"):
        return f"postgresql+{scheme.partition('+')[2]}://{rest}"
    return url


class Source(Strict):
    url: str
    query_timeout: Duration = Duration(30)
    pool_size: int = Field(2, ge=1, le=32)
    refresh_interval: Duration = Duration(60)
    window_intervals: dict[Duration, Duration] = {}  # see kpis/cadence.py
    connect_timeout: Duration = Duration(10)

    _dur = field_validator("query_timeout", "refresh_interval", "connect_timeout", mode="before")(
        duration
    )
    _win = field_validator("window_intervals", mode="before")(parse_window_intervals)

    @property
    def backend(self) -> str:
        """The database kind: postgresql, mysql (also for MariaDB), sqlite, ..."""
        from sqlalchemy.engine import make_url

        return make_url(self.url).get_backend_name()

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        value = usual_driver(value)
        try:
            url = make_url(value)
        except (ArgumentError, ValueError):
            raise ValueError(f"not a SQLAlchemy database URL: {mask_url(value)!r}") from None
        try:
            url.get_dialect()
        except NoSuchModuleError:
            raise ValueError(f"unknown database dialect {url.drivername!r}: use postgresql://, "
                             "mysql:// (MariaDB too) or sqlite:///") from None
        return value

    @field_validator("query_timeout", "refresh_interval")
    @classmethod
    def _positive(cls, value: Duration) -> Duration:
        if value.seconds <= 0:
            raise ValueError("must be longer than zero")
        return value

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)
