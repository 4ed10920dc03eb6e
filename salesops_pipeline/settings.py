"""Where the project's settings come from.

Everything is read from the environment when it is needed, never at import time, so the
definitions load anywhere and a `.env` file or a changed variable is honoured on the next run.
"""

import math
import os
from pathlib import Path

from salesops_pipeline.errors import SettingError
from salesops_pipeline.redaction import redact_url

HOME_ENV = "SALESOPS_HOME"
SALES_DB_ENV = "SALESOPS_SALES_DB"

DEFAULT_HOME = ".salesops"


def salesops_home() -> Path:
    """The directory holding the warehouse, exports, demo data and Dagster's own state.

    SALESOPS_HOME when set (in the environment or in `.env` in the working directory), else
    `.salesops/` in the working directory.
    """
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().absolute()


def describe_home() -> str:
    """Where the state is looked for and why, for messages that find nothing there."""
    if os.environ.get(HOME_ENV):
        return f"{salesops_home()} (from {HOME_ENV})"
    return f"{salesops_home()} ({HOME_ENV} is not set: .salesops/ in the working directory)"


def configured_sales_db() -> Path | None:
    """The company's sales DB when one is configured, else None (the demo DB is used)."""
    value = os.environ.get(SALES_DB_ENV)
    return Path(value).expanduser().resolve() if value else None


def demo_sales_db_path() -> Path:
    return salesops_home() / "demo" / "sales.sqlite"


WAREHOUSE_FILE = "warehouse.duckdb"


def warehouse_path(home: Path | None = None) -> Path:
    return (home or salesops_home()) / WAREHOUSE_FILE


REMOTE_API_HOST_ENV = "REMOTE_API_HOST"
REMOTE_API_KEY_ENV = "REMOTE_API_KEY"


def remote_api_host() -> str | None:
    """The real provider's base URL; None means: use the sandbox provider."""
    return os.environ.get(REMOTE_API_HOST_ENV) or None


def remote_api_key() -> str | None:
    return os.environ.get(REMOTE_API_KEY_ENV) or None


INTAKE_KEY_ENV = "X_API_KEY"
LOG_LEVEL_ENV = "SALESOPS_LOG_LEVEL"
# Where `salesops simulate` posts when no --intake is given and no local stack is running.
INTAKE_URL_ENV = "SALESOPS_INTAKE_URL"
WEBHOOK_SECRET_ENV = "SALESOPS_WEBHOOK_SECRET"  # noqa: S105 - a variable name, not a secret


def inbox_path() -> Path:
    return salesops_home() / "intake" / "inbox.sqlite"


def intake_api_key() -> str | None:
    return os.environ.get(INTAKE_KEY_ENV) or None


METRICS_TOKEN_ENV = "SALESOPS_METRICS_TOKEN"  # noqa: S105 - a variable name, not a secret


def metrics_token() -> str | None:
    """The token Prometheus sends (`Authorization: Bearer <token>`) to read the intake's
    `/metrics`; None: `/metrics` is off (404). Surrounding whitespace is not part of it, as in
    Prometheus's own credentials files."""
    return os.environ.get(METRICS_TOKEN_ENV, "").strip() or None


FRONTEND_API_URL_ENV = "SALESOPS_FRONTEND_API_URL"
CHART_LINK_KEY_ENV = "SALESOPS_CHART_LINK_KEY"


def frontend_api_url() -> str | None:
    """Where a manager's browser reaches the frontend API (the intake); the progression's
    asset page shows its chart from there. `salesops dev` sets it."""
    value = os.environ.get(FRONTEND_API_URL_ENV)
    return value.rstrip("/") if value else None


def chart_link_key(api_key: str | None = None) -> str | None:
    """The key that signs links to the progression chart: SALESOPS_CHART_LINK_KEY, else the one
    that goes with `api_key` or X_API_KEY; None when none is set."""
    if value := os.environ.get(CHART_LINK_KEY_ENV):
        return value
    api_key = api_key or intake_api_key()
    if api_key is None:
        return None
    from salesops_pipeline.sales.chart_links import link_key_from

    return link_key_from(api_key)


def webhook_secret() -> str | None:
    return os.environ.get(WEBHOOK_SECRET_ENV) or None


# How post-call work is spread over runs (see post_call/lanes.py).
POST_CALL_LANES_ENV = "SALESOPS_POST_CALL_LANES"
POST_CALL_IDLE_ENV = "SALESOPS_POST_CALL_IDLE_SECONDS"
POST_CALL_BATCH_ENV = "SALESOPS_POST_CALL_BATCH"
POST_CALL_RUNS_ENV = "SALESOPS_POST_CALL_RUNS"
POST_CALL_WARM_HOURS_ENV = "SALESOPS_POST_CALL_WARM_HOURS"
POST_CALL_RUN_SECONDS_ENV = "SALESOPS_POST_CALL_RUN_SECONDS"
POST_CALL_REPORT_SECONDS_ENV = "SALESOPS_POST_CALL_REPORT_SECONDS"
# The call centre's working hours, Paris time: post-call runs stay open through them.
DEFAULT_WARM_HOURS = "08:00-20:00"


def _number(
    name: str, default: float, *, minimum: float, maximum: float | None = None, kind: type = int
):
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is not None and not math.isfinite(value):
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        bounds = f"of at least {minimum}" + (f" and at most {maximum}" if maximum else "")
        what = "a whole number" if kind is int else "a number"
        raise SettingError(f"{name}={text!r}: expected {what} {bounds}")
    return value


def post_call_lanes() -> int:
    return _number(POST_CALL_LANES_ENV, 4, minimum=1)


def post_call_idle_seconds() -> float:
    return _number(POST_CALL_IDLE_ENV, 20.0, minimum=0, kind=float)


def post_call_batch() -> int:
    return _number(POST_CALL_BATCH_ENV, 200, minimum=1)


def post_call_runs() -> int:
    """How many runs the post-call lanes are spread over (at most one per lane)."""
    return _number(POST_CALL_RUNS_ENV, 1, minimum=1)


def post_call_run_seconds() -> float:
    """How long a post-call run stays open before it hands its lanes to a successor."""
    return _number(POST_CALL_RUN_SECONDS_ENV, 3600.0, minimum=10, kind=float)


def post_call_report_seconds() -> float:
    """How often at most a post-call run reports its events on `post_call_outcomes`."""
    return _number(POST_CALL_REPORT_SECONDS_ENV, 60.0, minimum=1, maximum=3600, kind=float)


def post_call_warm_hours() -> str:
    """When post-call runs stay open, events or not: `always`, `never`, or windows of Paris
    time such as `08:00-20:00` (read by post_call/warm.py)."""
    return os.environ.get(POST_CALL_WARM_HOURS_ENV) or DEFAULT_WARM_HOURS


SUPPORT_LOAD_DAYS_ENV = "SALESOPS_SUPPORT_LOAD_DAYS"


def support_load_days() -> float:
    """How long a contact handed to support counts in its agent's load, unless the load
    campaign's list shows it or a later transfer moves it."""
    return _number(SUPPORT_LOAD_DAYS_ENV, 30.0, minimum=1, maximum=3650, kind=float)


MAX_POST_CALL_LAG_ENV = "SALESOPS_MAX_POST_CALL_LAG_S"


def max_post_call_lag_seconds() -> float:
    """How old the oldest waiting post-call event may get before post_call_lag fails."""
    return _number(MAX_POST_CALL_LAG_ENV, 120.0, minimum=1, kind=float)


POST_CALL_LAG_CHECK_ENV = "SALESOPS_POST_CALL_LAG_CHECK_S"


def post_call_lag_check_seconds() -> int:
    """How often post_call_lag is evaluated: at least every minute, or a stall would go
    unseen for longer than the check promises. Read when the definitions load: a sensor's
    interval is part of its definition."""
    return _number(POST_CALL_LAG_CHECK_ENV, 30, minimum=1, maximum=60)


INBOX_RETENTION_ENV = "SALESOPS_INBOX_RETENTION_DAYS"


def inbox_retention_days() -> int:
    """How many days finished post-call events are kept in the inbox before they are pruned."""
    return _number(INBOX_RETENTION_ENV, 30, minimum=1)


ALERT_WEBHOOK_URL_ENV = "SALESOPS_ALERT_WEBHOOK_URL"
DAGSTER_URL_ENV = "SALESOPS_DAGSTER_URL"


ALERT_CLEAR_AFTER_ENV = "SALESOPS_ALERT_CLEAR_AFTER_S"


def alert_clear_after_seconds() -> float:
    """How long an alerted condition must have been clear before the operators are told it
    ended: a condition flapping about its limit is then one alert and one recovery."""
    return _number(ALERT_CLEAR_AFTER_ENV, 300.0, minimum=0, maximum=86400, kind=float)


def alert_webhook_url() -> str | None:
    """Where post-call alerts go (a Slack incoming webhook, or anything taking its JSON);
    None: no alert is sent. The URL is a secret: it is never logged."""
    return os.environ.get(ALERT_WEBHOOK_URL_ENV) or None


def dagster_url() -> str | None:
    """The Dagster UI's address, for alerts to link to; `salesops dev` sets it."""
    value = os.environ.get(DAGSTER_URL_ENV)
    return value.rstrip("/") if value else None


DATABASE_URL_ENV = "SALESOPS_DATABASE_URL"
DATABASE_POOL_ENV = "SALESOPS_DATABASE_POOL"


def database_url() -> str | None:
    """The PostgreSQL database every host shares (`postgresql://user:password@host/db`), or
    None: the embedded files under SALESOPS_HOME. The URL holds a password: it is never
    printed whole."""
    value = os.environ.get(DATABASE_URL_ENV, "").strip()
    if not value:
        return None
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme == "postgres":
        value = "postgresql" + value[len(scheme) :]
    elif scheme != "postgresql":
        raise SettingError(
            f"{DATABASE_URL_ENV} must be a postgresql:// URL (got {redact_url(value)!r})"
        )
    return value


def database_pool_size() -> int:
    """Connections each process keeps open to the shared database (more are opened briefly
    under load, up to twice this)."""
    return _number(DATABASE_POOL_ENV, 5, minimum=1, maximum=100)
