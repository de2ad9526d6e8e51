"""Build notification to deploy moved: Jenkins says a build ended, how soon the deploy moves.

A stand-in Jenkins (tests/jenkins_standin.py) runs in this process; a real Celery worker
process builds on it. Each run queues a merge_only deploy of an application built on
Jenkins, waits until the worker has handed the build over and Jenkins has its result, then
times from the notification (POST /hooks/jenkins/ with the application's secret, through
Django's test client: the real view) to the deploy having left `building`, as seen in the
database. In between, the hook sends builds.tasks.sync_build to the broker and the worker asks
Jenkins, concludes the build and moves the deploy, as in production.

No beat runs (the worker is started without -B), so the poller cannot be what moves the
deploy; FC_BUILD_POLL_SECONDS is set high for the worker all the same.
"""

import contextlib
import os
import secrets
import time
from pathlib import Path

RUNS = 10
SLUG = "bench-jenkins"
POLL_SECONDS = 0.005  # how often the database is read while timing


def run(var_dir: Path) -> dict[str, dict]:
    from django.test import Client

    from bench.__main__ import bench_user, start_worker, summary
    from bench.slot_handoff import make_remote
    from deploys.models import Application, Deploy
    from deploys.states import State
    from tests.jenkins_standin import JenkinsStandin

    work = var_dir / "build-notification"
    work.mkdir(parents=True, exist_ok=True)
    remote = make_remote(work / "remote.git", RUNS)
    app = Application.objects.create(
        slug=SLUG,
        name="Bench on Jenkins",
        git_remote_url=str(remote),
        build_backend="jenkins",
        build_timeout_seconds=60,
    )
    user = bench_user()
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    secret = secrets.token_hex(16)

    jenkins_server = JenkinsStandin(jobs=(app.jenkins_job_name,))
    jenkins_server.queue_delay = 0
    jenkins_server.build_seconds = 0.1
    notify_ms = []
    with jenkins_server:
        env = {
            "JENKINS_URL": jenkins_server.url,
            "JENKINS_USER": jenkins_server.user,
            "JENKINS_TOKEN": jenkins_server.token,
            app.hook_secret_variable: secret,
            "FC_BUILD_POLL_SECONDS": "3600",
        }
        worker = start_worker(var_dir / "worker-build-notification.log", env=env)
        # The hook in this process reads the secret from the environment too.
        with _environment({app.hook_secret_variable: secret}):
            try:
                for n in range(RUNS):
                    response = client.post(
                        "/api/deploys/",
                        {"application": SLUG, "branch": f"bench/{n:03d}", "mode": "merge_only"},
                        content_type="application/json",
                    )
                    assert response.status_code == 201, response.content
                    deploy = Deploy.objects.get(application=app, branch=f"bench/{n:03d}")
                    wait_for(lambda d=deploy: _ready_to_notify(d, jenkins_server, app), "the build")

                    started = time.perf_counter()
                    response = client.post(
                        "/hooks/jenkins/",
                        {"application": SLUG, "deploy_id": deploy.pk, "attempt": 1},
                        content_type="application/json",
                        headers={"X-Fatcontroller-Secret": secret},
                    )
                    assert response.status_code == 202, response.content
                    while _state(deploy) == State.BUILDING:
                        if time.perf_counter() - started > 30:
                            raise SystemExit(
                                f"bench: deploy #{deploy.pk} stayed building 30 s after the "
                                "notification; see worker-build-notification.log"
                            )
                        time.sleep(POLL_SECONDS)
                    notify_ms.append((time.perf_counter() - started) * 1000)

                    wait_for(lambda d=deploy: _state(d) == State.MERGED, "the merge")
            finally:
                worker.terminate()
                worker.wait(timeout=30)
    return {"build notification -> deploy moved": summary(notify_ms)}


def _ready_to_notify(deploy, jenkins_server, app) -> bool:
    """Handed to Jenkins by the worker (its run_build over), and Jenkins has the result."""
    from deploys.states import State

    deploy.refresh_from_db()
    if deploy.state in (State.QUEUED, State.MERGING):
        return False
    if deploy.state != State.BUILDING:
        raise SystemExit(f"bench: deploy #{deploy.pk} is {deploy.state} before the notification")
    if not deploy.events.filter(message__contains="handed to jenkins").exists():
        return False
    return any(
        b.parameters.get("FC_DEPLOY_ID") == str(deploy.pk) and b.result
        for b in jenkins_server.builds(app.jenkins_job_name)
    )


def _state(deploy) -> str:
    from deploys.models import Deploy

    return Deploy.objects.values_list("state", flat=True).get(pk=deploy.pk)


def wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(
                f"bench: timed out waiting for {what}; see worker-build-notification.log"
            )
        time.sleep(0.02)


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """Set environment variables for a block, then put back what was there."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
