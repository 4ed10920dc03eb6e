from setuptools import find_packages, setup

# Dagster libraries release in lockstep: dagster-webserver shares dagster's version and
# dagster-duckdb, dagster-postgres and dagster-k8s are the matching 0.x releases. Bump them
# together.
DAGSTER_VERSION = "1.13.27"
DAGSTER_LIBRARY_VERSION = "0.29.27"

setup(
    name="salesops_pipeline",
    version="0.1.0",
    description="Daily sales operations of a phone-sales company, orchestrated with Dagster.",
    # The product only: the tests, their helpers and the benchmarks stay in the repository.
    packages=find_packages(include=["salesops_pipeline", "salesops_pipeline.*"]),
    package_data={"salesops_pipeline.deploy": ["*.yaml"]},
    python_requires=">=3.11,<3.12",
    install_requires=[
        f"dagster=={DAGSTER_VERSION}",
        f"dagster-webserver=={DAGSTER_VERSION}",
        f"dagster-duckdb=={DAGSTER_LIBRARY_VERSION}",
        f"dagster-postgres=={DAGSTER_LIBRARY_VERSION}",
        # 1.5.5, not 2.x: the SQLite scanner that reads the company's sales DB in parallel
        # ships as a wheel only up to 1.5.5, and an extension must match DuckDB exactly.
        "duckdb==1.5.5",
        "duckdb-extension-sqlite-scanner==1.5.5",
        "fastapi==0.165.0",
        # Swagger UI and ReDoc served from the package itself: /docs works offline.
        "fastapi-offline==1.7.7",
        # The intake's HTTP parser and event loop: uvicorn's fast ones, in C.
        "httptools==0.9.0",
        "matplotlib==3.11.2",
        "numpy==2.4.6",
        "phonenumbers==9.0.43",
        "psycopg2-binary==2.9.13",
        # The intake's /metrics, in the Prometheus text format.
        "prometheus-client==0.26.0",
        "pydantic==2.14.4",
        "python-dotenv==1.2.4",
        "requests==2.34.2",
        # Live progress of the long commands on a terminal (already a dependency of dagster).
        "rich==15.0.0",
        # 2.1 switched PostgreSQL's default driver to psycopg 3, which dagster-postgres's
        # NOTIFY statements do not support; 2.0 keeps psycopg2.
        "sqlalchemy==2.0.58",
        "urllib3==2.8.0",
        "uvicorn==0.54.0",
        "uvloop==0.23.0",
    ],
    extras_require={
        # The image of deploy/: its runs load the Kubernetes instance, which names dagster-k8s's
        # K8sRunLauncher.
        "k8s": [f"dagster-k8s=={DAGSTER_LIBRARY_VERSION}"],
        # The benchmarks compare against the pandas way.
        "dev": [
            "hypothesis==6.170.15",
            # The Kubernetes API's schemas, every version, offline: deploy/'s manifests are
            # checked against them.
            "kubernetes-validate==1.37.0",
            "pandas==3.1.1",
            "pytest==9.2.0",
            # `pytest -m "not e2e" -n 4`: the quick loop, its waits on loopback overlapped.
            "pytest-xdist==3.8.0",
            "selenium==4.51.0",
            "ruff==0.17.6",
        ],
    },
    entry_points={
        "console_scripts": ["salesops=salesops_pipeline.cli:main"],
    },
)
