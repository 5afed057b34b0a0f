"""docker-compose.yml and the Dockerfile read against the code and the README (no Docker engine here).

Every service's command must parse with the real entry point, ports must match the commands,
environment variables must be ones the code reads and must select the backends they claim,
mounted and copied paths must exist, and no password may be written in the file.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from streamflow.cli import build_parser
from streamflow.core.config import load_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
RAW = (REPO / "docker-compose.yml").read_text()
SERVICES = COMPOSE["services"]
APP_SERVICES = ["init", "app", "api", "prefect"]
TEST_ENV = {"POSTGRES_USER": "u", "POSTGRES_PASSWORD": "p@ss", "POSTGRES_DB": "d", "MINIO_ROOT_PASSWORD": "m1n!o"}


def _subst(value: str) -> str:
    """Compose's ${VAR:-default} / ${VAR:?msg} substitution with TEST_ENV."""

    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if name in TEST_ENV:
            return TEST_ENV[name]
        if op == ":-":
            return arg
        raise AssertionError(f"${{{name}}} has no value and no default")

    return re.sub(r"\$\{([A-Z_]+)(?:(:[-?])([^}]*))?\}", one, value)


def _port_pairs(service: dict) -> list[tuple[str, int, int]]:
    out = []
    for p in service.get("ports", []):
        host, hport, cport = p.split(":")
        out.append((host, int(hport), int(cport)))
    return out


def test_services_and_profiles():
    assert set(SERVICES) >= {"postgres", "redis", "app", "api", "prefect"}
    assert SERVICES["postgres"]["image"] == "postgres:16"
    assert SERVICES["redis"]["image"].startswith("redis:7")
    assert SERVICES["prefect"]["profiles"] == ["orchestration"]
    for name in ("postgres", "redis"):
        assert "healthcheck" in SERVICES[name], name
    assert "pgdata" in COMPOSE["volumes"]
    assert any(v.startswith("pgdata:") for v in SERVICES["postgres"]["volumes"])


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_share_one_image_and_wait_on_health(name):
    svc = SERVICES[name]
    assert svc["build"] == "." or svc["build"]["context"] == "."
    deps = _waits_on(name, "init")
    assert deps["postgres"]["condition"] == "service_healthy"
    assert deps["redis"]["condition"] == "service_healthy"


def _waits_on(name: str, init: str) -> dict:
    """The service's dependencies, through its one-shot init service when it has one."""
    deps = SERVICES[name]["depends_on"]
    if init in deps:
        assert deps[init]["condition"] == "service_completed_successfully"
        deps = SERVICES[init]["depends_on"]
    return deps


@pytest.mark.parametrize("name", APP_SERVICES + ["init-lake", "app-lake", "api-lake"])
def test_commands_parse_with_the_real_entry_points(name):
    cmd = SERVICES[name]["command"]
    if cmd[0] == "streamflow":
        args = build_parser().parse_args(cmd[1:])
        assert callable(args.func)
        if cmd[1] == "serve-api":
            assert args.host == "0.0.0.0"  # inside the container; published on 127.0.0.1 below
            assert [p[2] for p in _port_pairs(SERVICES[name])] == [args.port]
    elif cmd[:2] == ["python", "app/serve.py"]:  # `streamlit run app/streamlit_app.py` with a head start
        assert (REPO / cmd[1]).is_file() and 'with_name("streamlit_app.py")' in (REPO / cmd[1]).read_text()
        port = int(cmd[cmd.index("--server.port") + 1])
        assert [p[2] for p in _port_pairs(SERVICES[name])] == [port]
    elif cmd[0] == "python":
        script = REPO / cmd[1]
        assert script.is_file()
        assert all(flag in script.read_text() for flag in cmd[2:] if flag.startswith("--"))
    else:
        raise AssertionError(f"unknown command {cmd}")
    # the console script the commands use is the one pyproject declares
    assert 'streamflow = "streamflow.cli:main"' in (REPO / "pyproject.toml").read_text()


def test_published_ports_are_loopback_only():
    for name, svc in SERVICES.items():
        for host, _, _ in _port_pairs(svc):
            assert host == "127.0.0.1", name


@pytest.mark.parametrize("name", APP_SERVICES)
def test_environment_selects_the_server_and_redis(name):
    env = {k: _subst(str(v)) for k, v in SERVICES[name]["environment"].items()}
    known = set(
        re.findall(r"\b(STREAMFLOW_[A-Z0-9_]+|REDIS_URL)\b", (REPO / "streamflow" / "core" / "config.py").read_text())
    )
    for var in env:
        assert var in known, f"{name}: {var} is not read by streamflow/core/config.py"
    s = load_settings(env)
    assert not s.embedded
    assert (s.pg_host, s.pg_port, s.pg_user, s.pg_password, s.pg_db) == ("postgres", 5432, "u", "p@ss", "d")
    assert s.online_store == "redis" and s.redis_url == "redis://redis:6379/0"
    assert str(s.home) == "/app"
    mounts = dict(vol.split(":")[:2] for vol in SERVICES[name]["volumes"])
    assert mounts == {"./data": str(s.home / "data"), "./feature_repo": str(s.feature_repo)}
    assert Path(mounts["./data"]) == s.seeds_dir.parent
    # the feature lab's declarations live in the repo every container applies
    assert Path(mounts["./feature_repo"]) == s.feature_repo


def test_no_password_in_files():
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?" in RAW
    for line in RAW.splitlines():
        if "PASSWORD" in line and ":" in line and not line.strip().startswith("#"):
            assert re.search(r"\$\{[A-Z_]*PASSWORD[:}]", line) or "$${" in line, line
    assert "POSTGRES_PASSWORD" in (REPO / ".env.example").read_text()


def test_dockerfile_copies_what_exists_and_the_docs_document_it():
    docker = (REPO / "Dockerfile").read_text()
    for line in docker.splitlines():
        if line.startswith("COPY "):
            for src in shlex.split(line)[1:-1]:
                assert (REPO / src).exists(), src
    readme = (REPO / "README.md").read_text()
    assert "docker compose up -d --build" in readme
    readme = (REPO / "docs" / "deploy.md").read_text()
    assert "docker compose up -d --build" in readme
    assert "--profile orchestration" in readme
    for port in ("8501", "8000"):
        assert port in readme
    assert "not run" in readme.lower()  # says what was and was not run here


# ---- the lake profile: Spark master + two workers, a 3-node Redis Cluster, the app and API on them
LAKE_SERVICES = [n for n, s in SERVICES.items() if "lake" in s.get("profiles", [])]
LAKE_DRIVERS = ["init-lake", "app-lake", "api-lake"]
LAKE_WORKERS = ["spark-worker-1", "spark-worker-2"]
REDIS_NODES = ["redis-node-1", "redis-node-2", "redis-node-3"]


def _env(name: str) -> dict[str, str]:
    return {k: _subst(str(v)) for k, v in SERVICES[name]["environment"].items()}


def _lake_settings(name: str):
    env = _env(name)
    # the variables config.py documents: its own, and the AWS_* keys pyarrow and Hadoop's s3a read
    known = set(
        re.findall(
            r"\b(STREAMFLOW_[A-Z0-9_]+|REDIS_URL|AWS_[A-Z_]+)\b",
            (REPO / "streamflow" / "core" / "config.py").read_text(),
        )
    )
    assert set(env) <= known, set(env) - known
    return load_settings(env)


def test_lake_profile_holds_the_cluster_and_stays_out_of_the_default_up():
    assert set(LAKE_SERVICES) == {
        "spark-master",
        *LAKE_WORKERS,
        *REDIS_NODES,
        "redis-cluster-init",
        "minio",
        "minio-init",
        *LAKE_DRIVERS,
    }
    assert SERVICES["spark-master"]["image"].startswith("apache/spark:4.0")
    assert "lake" in COMPOSE["volumes"] and "lake:/data" in SERVICES["minio"]["volumes"]


@pytest.mark.parametrize("name", LAKE_DRIVERS + LAKE_WORKERS)
def test_lake_services_run_the_spark_image_on_the_minio_lake(name):
    svc = SERVICES[name]
    assert svc["build"]["context"] == "." and svc["build"]["args"]["WITH_SPARK"] == "1"
    docker = (REPO / "Dockerfile").read_text()
    assert "ARG WITH_SPARK=0" in docker and "openjdk-17-jre-headless" in docker
    assert "requirements-spark.txt" in docker
    s = _lake_settings(name)
    assert s.offline_store == "spark" and s.redis_cluster
    # the lake is the bucket minio-init makes, at the address MinIO listens on, with its credentials
    minio_cmd, init_cmd = SERVICES["minio"]["command"], SERVICES["minio-init"]["command"][0]
    bucket = re.search(r"mc mb --ignore-existing lake/(\S+)", init_cmd).group(1)
    assert s.lake == f"s3a://{bucket}/lake"
    port = minio_cmd[minio_cmd.index("--address") + 1].lstrip(":")
    assert s.s3_endpoint == f"http://minio:{port}" and f"mc alias set lake {s.s3_endpoint} " in init_cmd
    minio_env = {k: _subst(str(v)) for k, v in SERVICES["minio"]["environment"].items()}
    env = _env(name)
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
        minio_env["MINIO_ROOT_USER"],
        minio_env["MINIO_ROOT_PASSWORD"],
    )
    if name in LAKE_DRIVERS:  # the writers wait for the bucket; workers only read when given tasks
        assert _waits_on(name, "init-lake")["minio-init"]["condition"] == "service_completed_successfully"
    assert SERVICES["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"


def test_dockerfile_s3a_connector_matches_pyspark_hadoop():
    """hadoop-aws must be the release of the Hadoop client pyspark bundles (a pyspark bump that
    changes Hadoop fails here, not in a cluster)."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    client = [p.name for p in jars.glob("hadoop-client-api-*.jar")]
    assert len(client) == 1, client
    bundled = client[0].removeprefix("hadoop-client-api-").removesuffix(".jar")
    docker = (REPO / "Dockerfile").read_text()
    assert f"ARG HADOOP_AWS_VERSION={bundled}" in docker
    assert "hadoop-aws/$HADOOP_AWS_VERSION/hadoop-aws-$HADOOP_AWS_VERSION.jar" in docker
    assert re.search(r"ARG AWS_SDK_BUNDLE_VERSION=2\.\d+\.\d+", docker)  # SDK v2: what Hadoop 3.4 uses


@pytest.mark.parametrize("name", LAKE_DRIVERS)
def test_lake_drivers_settings_and_dependencies(name):
    # (their commands are checked with the app services' in test_commands_parse_with_the_real_entry_points)
    s = _lake_settings(name)
    master = SERVICES["spark-master"]["command"]
    assert s.spark_master == f"spark://{master[master.index('--host') + 1]}:{master[master.index('--port') + 1]}"
    deps = _waits_on(name, "init-lake")
    assert deps["postgres"]["condition"] == "service_healthy"
    assert deps["redis-cluster-init"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", LAKE_WORKERS)
def test_workers_join_the_master_the_drivers_use(name):
    cmd = SERVICES[name]["command"]
    assert cmd[:2] == ["spark-class", "org.apache.spark.deploy.worker.Worker"]
    assert cmd[2] == _lake_settings("app-lake").spark_master


def test_redis_cluster_nodes_match_the_url_the_drivers_use():
    from streamflow.core.config import parse_redis_url

    nodes = set(parse_redis_url(_lake_settings("app-lake").redis_url).nodes)
    declared = set()
    for name in REDIS_NODES:
        cmd = SERVICES[name]["command"]
        assert cmd[cmd.index("--cluster-enabled") + 1] == "yes"
        assert cmd[cmd.index("--cluster-announce-hostname") + 1] == name
        declared.add((name, int(cmd[cmd.index("--port") + 1])))
        assert SERVICES[name]["healthcheck"]["test"][-2] == cmd[cmd.index("--port") + 1]
    assert nodes == declared
    create = SERVICES["redis-cluster-init"]["command"]
    assert create[:3] == ["redis-cli", "--cluster", "create"]
    assert {tuple(n.split(":")) for n in create[3:6]} == {(h, str(p)) for h, p in nodes}
    assert create[create.index("--cluster-replicas") + 1] == "0"
    assert all(SERVICES["redis-cluster-init"]["depends_on"][n]["condition"] == "service_healthy" for n in REDIS_NODES)
