"""The Docker engine the tests use: devtools/docker_engine.py (shared with `make bench`)."""

from devtools.docker_engine import (  # noqa: F401 - re-exported for the tests
    DockerEngine,
    NoEngine,
    answers,
    engine_from_environment,
    must_run_docker_tests,
    start_private_engine,
    stop_private_engine,
)
