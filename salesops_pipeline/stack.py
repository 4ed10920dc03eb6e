"""The whole local stack in one command: sandbox provider, intake service and Dagster.

Each part runs as its own process, its output labelled; when one stops, or on Ctrl-C or
SIGTERM, all stop. Nothing needs credentials or the network: keys missing from the
environment are generated for this run and printed, so that a person can use them.
"""

import os
import secrets
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from salesops_pipeline import settings
from salesops_pipeline.errors import SalesopsError
from salesops_pipeline.resources.sales_db import resolve_sales_db_path
from salesops_pipeline.supervisor import Supervisor

WORKSPACE_YAML = """load_from:
  - python_module:
      module_name: salesops_pipeline.definitions
      location_name: salesops_pipeline
"""

INSTANCE_CONFIG_ENV = "SALESOPS_DAGSTER_YAML"


@dataclass(frozen=True)
class StackPorts:
    dagster: int = 3000
    intake: int = 8020
    sandbox: int = 8010


def install_instance(dagster_home: Path) -> Path:
    """Write the Dagster instance and workspace files the stack runs with.

    The instance is the shipped local `dagster.yaml` unless SALESOPS_DAGSTER_YAML names another
    (e.g. the PostgreSQL variant). The workspace gives the code location the same name as the
    repository's workspace.yaml, wherever the stack is started from.
    """
    dagster_home.mkdir(parents=True, exist_ok=True)
    chosen = os.environ.get(INSTANCE_CONFIG_ENV)
    if chosen:
        source = Path(chosen).expanduser()
        if not source.is_file():
            raise SalesopsError(f"{INSTANCE_CONFIG_ENV} names a missing file: {source}")
        config = source.read_text()
    else:
        config = resources.files("salesops_pipeline.deploy").joinpath("dagster.yaml").read_text()
    (dagster_home / "dagster.yaml").write_text(config)
    workspace = dagster_home / "workspace.yaml"
    workspace.write_text(WORKSPACE_YAML)
    return workspace


def run_local_stack(*, host: str, ports: StackPorts) -> int:
    home = settings.salesops_home()
    dagster_home = home / "dagster"
    workspace = install_instance(dagster_home)
    sales_db = resolve_sales_db_path()
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), settings.HOME_ENV: str(home)}
    generated: list[str] = []
    if not env.get(settings.INTAKE_KEY_ENV):
        env[settings.INTAKE_KEY_ENV] = secrets.token_urlsafe(24)
        generated.append(settings.INTAKE_KEY_ENV)
    cli = [sys.executable, "-m", "salesops_pipeline.cli"]
    supervisor = Supervisor()
    try:
        if settings.remote_api_host() is None:
            env[settings.REMOTE_API_HOST_ENV] = f"http://127.0.0.1:{ports.sandbox}"
            if not env.get(settings.REMOTE_API_KEY_ENV):
                env[settings.REMOTE_API_KEY_ENV] = secrets.token_urlsafe(24)
                generated.append(settings.REMOTE_API_KEY_ENV)
            sandbox = supervisor.start(
                "sandbox",
                [*cli, "sandbox", "--host", "127.0.0.1", "--port", str(ports.sandbox)],
                env,
            )
            supervisor.wait_http(sandbox, f"{env[settings.REMOTE_API_HOST_ENV]}/healthz")
        intake = supervisor.start(
            "intake", [*cli, "serve", "--host", host, "--port", str(ports.intake)], env
        )
        supervisor.wait_http(intake, f"http://{host}:{ports.intake}/healthz")
        dagster = supervisor.start(
            "dagster",
            [
                sys.executable,
                "-m",
                "dagster",
                "dev",
                "-w",
                str(workspace),
                "--host",
                host,
                "--port",
                str(ports.dagster),
            ],
            env,
        )
        supervisor.wait_http(dagster, f"http://{host}:{ports.dagster}/server_info", timeout=180)
    except (RuntimeError, KeyboardInterrupt) as error:
        supervisor.stop_all()
        if isinstance(error, KeyboardInterrupt):
            return 130
        raise SalesopsError(str(error)) from None
    lines = [
        "",
        "salesops local stack is up:",
        f"  Dagster UI        http://{host}:{ports.dagster}",
        f"  Intake (webhooks) http://{host}:{ports.intake}/webhooks/post-call",
        f"  Frontend API      http://{host}:{ports.intake}/docs",
        f"  Voice provider    {env[settings.REMOTE_API_HOST_ENV]}",
        f"  Sales DB          {sales_db}",
        f"  State             {home}",
    ]
    for name in generated:
        # Generated for this local run only, and shown so that a person can call the services.
        lines.append(f"  {name:<17} {env[name]}  (generated for this run)")
    lines.append("Stop with Ctrl-C.")
    print("\n".join(lines), flush=True)
    return supervisor.run_until_stopped()
