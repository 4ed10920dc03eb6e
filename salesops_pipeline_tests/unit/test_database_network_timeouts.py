"""The shared database across a network: every client gives up on a connection the network
lost within seconds, including Dagster's storage, which reads the URL and nothing else."""

from urllib.parse import parse_qs, urlsplit

from salesops_pipeline import settings
from salesops_pipeline.devtools.stack import child_environment, dagster_environment
from salesops_pipeline.postgres import NETWORK_TIMEOUTS, with_network_timeouts

URL = "postgresql://salesops:pw%2Fx@db.internal:5433/salesops"


def test_the_url_gains_every_timeout_and_keeps_the_rest():
    parts = urlsplit(with_network_timeouts(URL))
    assert parts.netloc == "salesops:pw%2Fx@db.internal:5433"
    assert parts.path == "/salesops"
    assert {k: v[0] for k, v in parse_qs(parts.query).items()} == NETWORK_TIMEOUTS
    assert NETWORK_TIMEOUTS["tcp_user_timeout"] == "15000"


def test_a_parameter_the_url_sets_is_kept_as_set():
    url = with_network_timeouts(f"{URL}?connect_timeout=20&sslmode=require")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["connect_timeout"] == "20"
    assert query["sslmode"] == "require"
    assert query["keepalives_idle"] == NETWORK_TIMEOUTS["keepalives_idle"]


def test_dagster_gets_the_url_with_timeouts_and_the_other_parts_as_given():
    env = {settings.DATABASE_URL_ENV: URL, settings.INTAKE_KEY_ENV: "k"}
    assert dagster_environment(env)[settings.DATABASE_URL_ENV] == with_network_timeouts(URL)
    assert settings.INTAKE_KEY_ENV not in dagster_environment(env)
    assert child_environment("intake", env)[settings.DATABASE_URL_ENV] == URL


def test_without_a_shared_database_dagster_gets_none():
    assert settings.DATABASE_URL_ENV not in dagster_environment({"PATH": "/bin"})
