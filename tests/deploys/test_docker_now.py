"""An engine's error on the application page is shown with every URL in it redacted."""

import logging
from types import SimpleNamespace

from deploys import docker_now


def test_an_engines_error_is_shown_and_logged_without_the_secrets_in_its_urls(monkeypatch, caplog):
    class Failing:
        def containers(self, placement, timeout):
            raise OSError("no answer from tcp://admin:hunter2@box-1:2376/v1.41/containers/json")

    monkeypatch.setattr(docker_now.targets, "target_for", lambda placement: Failing())
    placement = SimpleNamespace(pk=3, cluster=SimpleNamespace(name="box-1"))

    with caplog.at_level(logging.INFO, logger="deploys.docker_now"):
        answer = docker_now._ask(placement, timeout=1)

    assert answer.host == "box-1" and answer.containers == []
    assert "box-1:2376" in answer.problem
    assert "hunter2" not in answer.problem and "admin" not in answer.problem
    assert "hunter2" not in caplog.text
