"""End to end: the embedded default's supervisor (runembedded) with its real children.

The same `make run` as tests/test_embedded_default.py, on a free port in a temporary
FC_VAR_DIR. Acceptance (issue 9, "Nothing stranded"): a SIGKILLed Celery worker is started
again, said so in the log, with none of its pool processes left, and a merge-only deploy
queued afterwards through the API merges; a SIGKILLed simulated AWS comes back with the
demo's services made again, and a deploy goes out to it and merges; a SIGKILLed
runembedded leaves no web, worker, beat, moto, stand-in Jenkins or Celery pool process behind.

The tests run in file order on one server; the last one kills it.
"""

import os
import shutil
import signal
import sys

import pytest

from deploys.states import State
from devtools.management.commands.runmoto import demo_aws_ready, endpoint_for
from tests.embedded_server import (
    EmbeddedServer,
    child_named,
    children_of,
    descendants,
    embedded_for_tests,
    processes,
    runembedded_pid,
    said,
)
from tests.test_embedded_default import (
    CLEAN_BRANCH,
    DEMO_PHASES,
    DEMO_REPOSITORY,
    demo_remote,
    ecs_rollouts,
    git,
    login,
    queue_deploy,
    wait_for_state,
)
from tests.waiting import wait_until

RESTART_TIMEOUT = 60.0  # a Celery worker or moto starting again on a busy machine

pytestmark = [
    pytest.mark.skipif(
        shutil.which("git") is None, reason="the demo and the pipeline need git on PATH"
    ),
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="reads /proc; the death signal is Linux's"
    ),
]


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory):
    """The XDG_RUNTIME_DIR the server's processes are given: where gunicorn would put its
    control socket by default, one path for every gunicorn of the user."""
    return tmp_path_factory.mktemp("xdg-runtime")


@pytest.fixture(scope="module")
def embedded(request, tmp_path_factory, runtime_dir):
    with embedded_for_tests(
        request,
        tmp_path_factory,
        "supervised-var",
        "a test of the embedded supervisor",
        extra_env={"XDG_RUNTIME_DIR": str(runtime_dir)},
    ) as server:
        yield server


def test_the_web_server_takes_no_control_socket_another_make_run_would_share(embedded, runtime_dir):
    assert child_named(embedded, "gunicorn fatcontroller.wsgi")
    assert list(runtime_dir.iterdir()) == []


def push_branch(server: EmbeddedServer, branch: str) -> str:
    """A branch one commit ahead of the demo's main (a file of its own), pushed to its remote."""
    work = server.var_dir / f"push-work-{branch.replace('/', '-')}"
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.com"]
    for args in (
        ["clone", "-q", "--branch", "main", str(demo_remote(server)), str(work)],
        ["-C", str(work), "checkout", "-q", "-b", branch],
    ):
        assert git(server.var_dir, *args).returncode == 0, args
    name = f"{branch.replace('/', '-')}.txt"
    (work / name).write_text(f"a change on {branch}\n")
    for args in (
        ["-C", str(work), "add", name],
        ["-C", str(work), *identity, "commit", "-q", "-m", f"A change on {branch}"],
        ["-C", str(work), "push", "-q", "origin", branch],
    ):
        result = git(server.var_dir, *args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return branch


def test_a_killed_worker_is_started_again_and_a_merge_only_deploy_still_merges(embedded):
    server = embedded
    worker = child_named(server, "celery -A fatcontroller worker")
    # The web answers before the worker has its pool up: kill a worker that is all there.
    pool = wait_until(
        lambda: children_of(worker),
        RESTART_TIMEOUT,
        lambda: server.explain(f"the worker {worker} to start its pool"),
    )

    os.kill(worker, signal.SIGKILL)
    wait_until(
        lambda: (
            said(server, "worker exited with signal SIGKILL: restarting it in 1 s (restart 1)")
            and said(server, "worker started again")
        ),
        RESTART_TIMEOUT,
        lambda: server.explain("the worker's restart"),
    )
    wait_until(
        lambda: not any(pid in processes() for pid in (worker, *pool)),
        10,
        lambda: server.explain(f"the old worker {worker} and its pool {list(pool)} to be gone"),
    )
    again = child_named(server, "celery -A fatcontroller worker")
    assert again != worker

    session = login(server)
    deploy_id = queue_deploy(session, server, CLEAN_BRANCH, mode="merge_only")
    merged = wait_for_state(
        session, server, deploy_id, State.MERGED, give_up_at={State.BUILD_FAILED}
    )
    assert merged["candidate_sha"], merged


def test_a_killed_simulated_aws_comes_back_with_the_demo_made_and_takes_a_deploy(embedded):
    server = embedded
    moto = child_named(server, "manage.py runmoto")
    port = int(processes()[moto][1].split("--port")[1].split()[0])
    endpoint = endpoint_for(port)
    assert demo_aws_ready(endpoint), server.explain(f"no demo at {endpoint}")

    os.kill(moto, signal.SIGKILL)
    wait_until(
        lambda: said(server, "moto exited with signal SIGKILL: restarting it in 1 s (restart 1)"),
        RESTART_TIMEOUT,
        lambda: server.explain("moto's death to be seen"),
    )
    # runmoto makes the demo's repository, clusters and services again as it starts.
    wait_until(
        lambda: demo_aws_ready(endpoint),
        RESTART_TIMEOUT,
        lambda: server.explain(f"the demo's services at {endpoint} after the restart"),
        interval=0.5,
    )
    assert child_named(server, "manage.py runmoto") != moto

    # And it is usable: a deploy of a new branch goes out to it, every phase, and merges.
    session = login(server)
    deploy_id = queue_deploy(session, server, push_branch(server, "feature/after-moto-restart"))
    deploy = wait_for_state(
        session, server, deploy_id, State.SUCCEEDED, give_up_at={State.BUILD_FAILED}
    )
    image = f"{DEMO_REPOSITORY}:{deploy['candidate_sha'][:12]}"
    assert {name: (r["status"], r["image"]) for name, r in ecs_rollouts(deploy).items()} == {
        name: ("done", image) for name in DEMO_PHASES
    }, deploy["rollouts"]


def test_a_sigkilled_runembedded_leaves_no_process_behind(embedded):
    server = embedded
    supervisor = runembedded_pid(server)
    left = descendants(supervisor)
    for marker in ("gunicorn fatcontroller.wsgi", "celery -A fatcontroller worker",
                   "celery -A fatcontroller beat", "runmoto", "runjenkins"):  # fmt: skip
        assert any(marker in cmd for cmd in left.values()), server.explain(f"no {marker}: {left}")
    worker = next(pid for pid, cmd in left.items() if "fatcontroller worker" in cmd)
    assert children_of(worker), server.explain("the worker has no pool processes")

    os.kill(supervisor, signal.SIGKILL)
    wait_until(
        lambda: not (set(left) & set(processes())),
        30,
        lambda: server.explain(
            "every child to die with runembedded; still running: "
            f"{ {pid: left[pid] for pid in set(left) & set(processes())} }"
        ),
        interval=0.2,
    )
