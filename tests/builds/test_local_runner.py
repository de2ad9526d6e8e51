"""The local build runner with real subprocesses, and a build attempt run against the database."""

import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from builds import building
from builds.local import build_environment, run_command, split_command
from builds.models import Build, BuildStatus
from deploys import actions, pipeline
from deploys.models import Application, Deploy
from deploys.states import Mode, State


def wait_until(condition, timeout: float = 5.0) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; returns whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def is_gone(pid: int) -> bool:
    """The process no longer runs: reaped, or a zombie nobody has reaped yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def read_pid(path: Path) -> int:
    assert wait_until(lambda: path.exists() and path.read_text().strip()), f"no pid in {path}"
    return int(path.read_text())


def kill_quietly(pid: int, *, group: bool = False) -> None:
    """Clean up after a test that failed to see the process die."""
    try:
        (os.killpg if group else os.kill)(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Collector:
    def __init__(self):
        self.chunks: list[str] = []

    def __call__(self, text: str) -> None:
        self.chunks.append(text)

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def run_sh(script: str, cwd: Path, *, timeout: float = 10.0, on_output=None, **kw):
    output = on_output or Collector()
    outcome = run_command(
        ["sh", "-c", script],
        cwd=cwd,
        env=build_environment({}),
        timeout=timeout,
        on_output=output,
        flush_every=kw.pop("flush_every", 0.05),
        **kw,
    )
    return outcome, output


# run_command: no database.


def test_output_reaches_on_output_while_the_command_still_runs(tmp_path):
    go = tmp_path / "go"
    output = Collector()

    def on_output(text: str) -> None:
        output(text)
        if "first" in output.text:
            go.touch()  # the command waits for this: it only ends if "first" came early

    outcome, _ = run_sh(
        "echo first; while [ ! -f go ]; do sleep 0.02; done; echo second",
        tmp_path,
        timeout=5,
        on_output=on_output,
    )

    assert outcome.passed, (outcome, output.text)
    assert (outcome.exit_code, outcome.summary, outcome.timed_out) == (0, "exit code 0", False)
    assert output.text == "first\nsecond\n"
    assert "second" not in output.chunks[0]


def test_a_failing_command_fails_with_its_exit_code(tmp_path):
    outcome, output = run_sh("echo oops; exit 3", tmp_path)
    assert not outcome.passed
    assert outcome.exit_code == 3
    assert "3" in outcome.summary
    assert not outcome.timed_out and not outcome.aborted
    assert output.text == "oops\n"


def test_stderr_is_in_the_output_too(tmp_path):
    outcome, output = run_sh("echo to-stderr >&2; echo to-stdout", tmp_path)
    assert outcome.passed
    assert "to-stderr\n" in output.text and "to-stdout\n" in output.text


def test_a_timeout_stops_the_command_and_its_children(tmp_path):
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    outcome, output = run_sh(f"sleep 60 & echo $! > {pidfile}; wait", tmp_path, timeout=1)
    elapsed = time.monotonic() - started

    child = read_pid(pidfile)
    try:
        assert outcome.timed_out and not outcome.passed and not outcome.aborted
        assert "timed out after 1 s" in outcome.summary
        assert elapsed < 5, elapsed
        assert "limit" in output.text
        assert wait_until(lambda: is_gone(child), timeout=3), f"child {child} still runs"
    finally:
        kill_quietly(child)


def test_an_abort_after_output_stops_the_command_and_says_so(tmp_path):
    pidfile = tmp_path / "child.pid"
    output = Collector()
    asked = []

    def should_abort() -> bool:
        asked.append(output.text)
        return "started" in output.text

    begun = time.monotonic()
    outcome, _ = run_sh(
        f"sleep 30 & echo $! > {pidfile}; echo started; wait",
        tmp_path,
        timeout=20,
        on_output=output,
        should_abort=should_abort,
        abort_check_every=0.05,
    )
    elapsed = time.monotonic() - begun

    child = read_pid(pidfile)
    try:
        assert outcome.aborted and not outcome.passed and not outcome.timed_out
        assert outcome.summary == "aborted"
        assert elapsed < 5, elapsed
        assert output.text.startswith("started\n")
        assert "aborted" in output.text
        assert asked and "started" in asked[-1]
        assert wait_until(lambda: is_gone(child), timeout=3), f"child {child} still runs"
    finally:
        kill_quietly(child)


def test_a_background_child_holding_the_output_does_not_hold_the_build(tmp_path):
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    outcome, output = run_sh(
        f"sleep 30 & echo $! > {pidfile}; echo main done", tmp_path, timeout=20
    )
    child = read_pid(pidfile)
    try:
        assert outcome.passed, outcome
        assert time.monotonic() - started < 10
        assert "main done" in output.text
        assert wait_until(lambda: is_gone(child), timeout=3), f"child {child} outlived the build"
    finally:
        kill_quietly(child)


def test_what_a_passing_build_leaves_running_is_stopped(tmp_path):
    pidfile = tmp_path / "child.pid"
    outcome, _ = run_sh(f"sleep 30 >/dev/null 2>&1 & echo $! > {pidfile}", tmp_path)
    child = read_pid(pidfile)
    try:
        assert outcome.passed
        assert wait_until(lambda: is_gone(child), timeout=3), f"child {child} outlived the build"
    finally:
        kill_quietly(child)


def test_a_command_that_does_not_exist_fails_clearly(tmp_path):
    output = Collector()
    outcome = run_command(
        ["fc-no-such-command-here"],
        cwd=tmp_path,
        env=build_environment({}),
        timeout=5,
        on_output=output,
    )
    assert not outcome.passed
    assert outcome.exit_code is None
    assert "could not start fc-no-such-command-here" in outcome.summary
    assert "fc-no-such-command-here" in output.text


def test_bytes_that_are_not_utf8_are_replaced(tmp_path):
    outcome, output = run_sh(r"printf 'ok \377\376 done\n'", tmp_path)
    assert outcome.passed
    assert output.text.startswith("ok ")
    assert output.text.endswith(" done\n")
    assert "\ufffd" in output.text


def test_a_character_split_between_two_reads_still_decodes(tmp_path):
    go = tmp_path / "go"
    output = Collector()

    def on_output(text: str) -> None:
        output(text)
        if "x" in output.text:
            go.touch()  # only now does the command write the second byte of the é

    outcome, _ = run_sh(
        r"printf 'x\303'; while [ ! -f go ]; do sleep 0.02; done; printf '\251 done\n'",
        tmp_path,
        timeout=5,
        on_output=on_output,
    )
    assert outcome.passed, (outcome, output.text)
    assert output.text == "xé done\n"


def test_a_long_multibyte_output_decodes_whole(tmp_path):
    # An odd prefix puts a 64 KiB read boundary in the middle of an é.
    script = "import sys; sys.stdout.buffer.write(b'x' + 'é'.encode() * 100_000)"
    output = Collector()
    outcome = run_command(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=build_environment({}),
        timeout=10,
        on_output=output,
        flush_every=0.05,
    )
    assert outcome.passed
    assert output.text == "x" + "é" * 100_000


def test_the_command_gets_no_secrets_but_gets_the_fc_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "django-secret-value")
    monkeypatch.setenv("DATABASE_URL", "postgres://user:db-password@db/prod")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
    output = Collector()
    outcome = run_command(
        ["env"],
        cwd=tmp_path,
        env=build_environment({"FC_DEPLOY_ID": "42", "FC_BRANCH": "feature/x"}),
        timeout=5,
        on_output=output,
    )
    assert outcome.passed
    names = {line.split("=", 1)[0] for line in output.text.splitlines() if "=" in line}
    assert not names & {"SECRET_KEY", "DATABASE_URL", "AWS_SECRET_ACCESS_KEY"}
    for secret in ("django-secret-value", "db-password", "aws-secret-value"):
        assert secret not in output.text
    assert "FC_DEPLOY_ID=42" in output.text.splitlines()
    assert "FC_BRANCH=feature/x" in output.text.splitlines()
    assert "PATH" in names


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("make test", ["make", "test"]),
        ("sh -c 'echo one two'", ["sh", "-c", "echo one two"]),
        ('pytest -k "not slow" tests', ["pytest", "-k", "not slow", "tests"]),
    ],
)
def test_split_command_respects_quotes(command, argv):
    assert split_command(command) == argv


@pytest.mark.parametrize("command", ["", "   ", "\t\n"])
def test_split_command_refuses_an_empty_command(command):
    with pytest.raises(ValueError, match="empty"):
        split_command(command)


def test_a_command_that_closes_its_output_still_times_out(tmp_path):
    pidfile = tmp_path / "shell.pid"
    results = []
    runner = threading.Thread(
        target=lambda: results.append(
            run_sh(f"echo $$ > {pidfile}; exec >/dev/null 2>&1; sleep 20", tmp_path, timeout=0.2)
        ),
        daemon=True,
    )
    runner.start()
    shell = read_pid(pidfile)
    try:
        runner.join(timeout=1.2)
        assert not runner.is_alive(), "run_command is still waiting after its timeout"
        assert results[0][0].timed_out
    finally:
        kill_quietly(shell, group=True)  # the shell leads its own process group
        runner.join(timeout=5)


def test_an_error_while_watching_the_command_still_stops_it(tmp_path):
    pidfile = tmp_path / "shell.pid"

    def should_abort() -> bool:
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        run_sh(
            f"echo $$ > {pidfile}; sleep 20",
            tmp_path,
            should_abort=should_abort,
            abort_check_every=0.05,
        )
    shell = read_pid(pidfile)
    try:
        assert wait_until(lambda: is_gone(shell), timeout=1), f"{shell} still runs"
    finally:
        kill_quietly(shell, group=True)


# builds.building: with the database.


def queue_clean_merge(application, user) -> Deploy:
    """Queue the demo's clean branch; it takes the slot once the queueing commits."""
    return actions.queue_deploy(
        application=application.slug,
        branch="feature/clean-merge",
        mode=Mode.MERGE_ONLY,
        requester=user,
    )


def make_it_build(deploy: Deploy, sent_tasks) -> Deploy:
    """Make the candidate: the deploy is then building, with its first attempt pending."""
    deploy = Deploy.objects.select_related("application").get(pk=deploy.pk)
    assert deploy.state == State.MERGING
    pipeline.make_candidate(deploy)
    sent_tasks.sent.clear()  # the tests run the build themselves
    deploy = Deploy.objects.select_related("application").get(pk=deploy.pk)
    assert deploy.state == State.BUILDING
    assert deploy.candidate_sha
    return deploy


def test_a_pending_build_is_claimed_once(
    application, user, sent_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        deploy = queue_clean_merge(application, user)
    deploy = make_it_build(deploy, sent_tasks)

    first = building.claim_pending_build(deploy)
    second = building.claim_pending_build(deploy)

    assert first is not None
    assert first.attempt == 1
    assert first.status == BuildStatus.RUNNING
    assert first.started_at is not None and first.heartbeat_at is not None
    assert Build.objects.get(pk=first.pk).status == BuildStatus.RUNNING
    assert second is None


def test_the_build_sees_its_candidate_but_not_the_workers_secrets(
    application, user, sent_tasks, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setenv("SECRET_KEY", "worker-secret-value")
    with django_capture_on_commit_callbacks(execute=True):
        deploy = queue_clean_merge(application, user)
    deploy = make_it_build(deploy, sent_tasks)
    script = (
        r'printf "nul:a\000b\n"; echo "sha=$FC_CANDIDATE_SHA"; echo "secret=${SECRET_KEY:-none}"; '
        "git rev-parse HEAD"
    )
    Application.objects.filter(pk=application.pk).update(
        build_command="sh -c " + shlex.quote(script)
    )
    deploy.application.refresh_from_db()

    building.run_build(deploy)

    build = deploy.builds.get()
    deploy.refresh_from_db()
    assert build.status == BuildStatus.SUCCEEDED, build.log
    assert build.finished_at is not None
    assert deploy.state == State.MERGING_TO_DEFAULT
    assert build.log.startswith("[fatcontroller] $ sh -c ")
    assert "nul:ab\n" in build.log  # PostgreSQL text holds no NUL: it is dropped
    assert f"sha={deploy.candidate_sha}\n" in build.log
    assert f"\n{deploy.candidate_sha}\n" in build.log  # run in the candidate's checkout
    assert "secret=none\n" in build.log
    assert "worker-secret-value" not in build.log


@pytest.mark.parametrize("command", ["", "sh -c 'unclosed"])
def test_a_build_command_that_cannot_be_parsed_is_an_error(
    application, user, sent_tasks, django_capture_on_commit_callbacks, command
):
    with django_capture_on_commit_callbacks(execute=True):
        deploy = queue_clean_merge(application, user)
    deploy = make_it_build(deploy, sent_tasks)
    Application.objects.filter(pk=application.pk).update(build_command=command)
    deploy.application.refresh_from_db()

    building.run_build(deploy)

    build = deploy.builds.get()
    deploy.refresh_from_db()
    assert build.status == BuildStatus.ERROR
    assert "could not prepare the build" in build.log
    assert deploy.state == State.BUILD_FAILED
    assert "could not prepare the build" in deploy.events.last().message


@pytest.mark.django_db(transaction=True)
def test_cancelling_the_deploy_aborts_its_running_build(
    application, user, sent_tasks, settings, tmp_path
):
    settings.FC_BUILD_LOG_FLUSH_SECONDS = 0.05
    deploy = make_it_build(queue_clean_merge(application, user), sent_tasks)
    pidfile = tmp_path / "child.pid"
    script = f"sleep 30 & echo $! > {pidfile}; echo started; wait"
    Application.objects.filter(pk=application.pk).update(
        build_command="sh -c " + shlex.quote(script)
    )
    deploy.application.refresh_from_db()
    build = deploy.builds.get()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            building.run_build(deploy)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            connection.close()

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    child = None
    try:
        assert wait_until(lambda: "started" in Build.objects.get(pk=build.pk).log), (
            Build.objects.get(pk=build.pk).log
        )
        child = read_pid(pidfile)
        running = Build.objects.get(pk=build.pk)
        assert running.status == BuildStatus.RUNNING
        # The runner beats while it runs, so a dead worker's build shows.
        assert wait_until(lambda: Build.objects.get(pk=build.pk).heartbeat_at > running.started_at)

        cancelled_at = time.monotonic()
        actions.cancel(deploy, actor=user)
        runner.join(timeout=10)
        assert not runner.is_alive(), "the build kept running after the cancel"
        assert time.monotonic() - cancelled_at < 5
        assert not errors, errors

        build.refresh_from_db()
        deploy.refresh_from_db()
        assert build.status == BuildStatus.ABORTED
        assert build.finished_at is not None
        assert "aborted" in build.log
        assert deploy.state == State.CANCELLED
        assert not deploy.events.filter(to_state=State.BUILD_FAILED).exists()
        assert wait_until(lambda: is_gone(child), timeout=3), f"child {child} still runs"
    finally:
        if child is not None:
            kill_quietly(child)
        runner.join(timeout=5)
