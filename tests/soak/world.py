"""The soak's world: git remotes, simulated AWS, a stand-in Jenkins, Celery workers on Redis
and PostgreSQL as if on separate machines, beat's loop, and the checks every run must pass.

Everything is real but AWS and Jenkins: workers are `celery worker` processes (prefork, two
pool processes each) with their own FC_WORK_DIR, sharing only the database, the broker and
the git remotes, as machines would. AWS is moto's server in this process with the ECS
simulator (as in tests/deploys/test_rollout_worker_killed.py, whose helpers are reused);
Jenkins is tests/jenkins_standin.py. The safety net (deploys.resume) and the build poller
run from the test's loop about once a second, as beat would.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import boto3
from django.conf import settings
from django.db import connection
from django.db.models import Count
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.server import ThreadedMotoServer

from builds.building import poll_builds
from builds.models import BuildStatus
from clusters.models import Cluster, Placement, ProcessType, Service
from deploys.models import Application, Deploy, DeployEvent
from deploys.resume import resume_deploys
from deploys.states import FINAL_STATES, SLOT_STATES, SUCCESS_STATES, Mode
from devtools.demo import BEHAVIOUR_ANNOTATION
from devtools.ecs_simulator import EcsSimulator, create_service
from fatcontroller.celery import app as celery_app
from tests.deploys.test_rollout_worker_killed import WorkerProcess, timeline
from tests.jenkins_standin import JenkinsStandin
from tests.waiting import wait_until

REGION = "us-east-1"
ACCOUNT = "123456789012"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
CLUSTER = "soak"
RESULTS_DIR = Path(settings.BASE_DIR) / "build" / "soak"
SHORT = os.environ.get("FC_SOAK_SHORT") == "1"

# The knobs of issue 9's soak, for the workers and for this process's safety net alike.
STALL_AFTER = 3  # FC_STALL_AFTER and FC_ROLLOUT_STALL_AFTER, seconds
ROLLOUT_LEASE = 5  # FC_ROLLOUT_LEASE
ROLLOUT_POLL = 0.5  # FC_ROLLOUT_POLL_SECONDS
JENKINS_TIMEOUT = 2.0  # JENKINS_TIMEOUT: the stand-in's "timing out" fault waits longer
AWS_TIMEOUT = 2.0  # FC_AWS_TIMEOUT: a vanished AWS is noticed in seconds
AWS_MAX_ATTEMPTS = 3  # FC_AWS_MAX_ATTEMPTS: throttling outlasts boto's own retries soon

CHECKS = "for check in lint unit integration; do sh checks/$check.sh || exit 1; done"


def build_command(*, publish: bool = False, sleep: float = 0) -> str:
    """The demo's checks without their pauses; `pwd` first, so the build's log says which
    machine (FC_WORK_DIR) built it; optionally a pause (a build to be caught in) and the
    image published to ECR (what a deploy-mode rollout needs)."""
    script = "pwd; " + (f"sleep {sleep}; " if sleep else "") + CHECKS
    if publish:
        script += " && python3 publish_image.py"
    return "sh -c " + shlex.quote(script)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


# ---------------------------------------------------------------------------- remotes

CLEAN = "feature/clean-merge"


def clean_branch(n: int) -> str:
    return f"{CLEAN}-{n:02d}"


def make_soak_remote(template: Path, remote: Path, clean_branches: int) -> Path:
    """The demo remote plus `clean_branches` copies of feature/clean-merge, each with a commit
    of its own (so each merge is a candidate of its own), named feature/clean-merge-NN."""
    shutil.copytree(template, remote)
    work = remote.parent / "seed"
    git(remote.parent, "clone", "-q", str(remote), str(work))
    git(work, "config", "user.email", "soak@example.com")
    git(work, "config", "user.name", "Soak")
    for n in range(1, clean_branches + 1):
        git(work, "checkout", "-q", "-b", clean_branch(n), f"origin/{CLEAN}")
        (work / "shop" / f"soak-{n:02d}.txt").write_text(f"soak change {n}\n")
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", f"Soak change {n}")
    git(work, "push", "-q", "origin", "--all")
    shutil.rmtree(work)
    return remote


def first_parent_chain(remote: Path, since: str) -> list[str]:
    """The default branch's first-parent commits after `since`, oldest first."""
    out = git(remote, "rev-list", "--first-parent", "--reverse", f"{since}..refs/heads/main")
    return out.split() if out else []


# -------------------------------------------------------------------------------- AWS


@dataclass
class SoakAws:
    """moto's server in this process with the ECS simulator; it can throttle and vanish.

    moto keeps its state in this process, not in the server: a server stopped and started
    again on the same port answers with the same clusters, services and deployments.
    """

    port: int = 0
    server: ThreadedMotoServer | None = None
    simulator: EcsSimulator = field(
        default_factory=lambda: EcsSimulator(task_start_seconds=0.5, task_fail_after_seconds=0.5)
    )
    throttling: bool = False
    throttled: int = 0  # ECS calls answered with ThrottlingException
    ecs_calls: Counter = field(default_factory=Counter)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.port = self.server.get_host_and_port()[1]
        wait_until(self._answers, 10, "moto's server to answer")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def client(self, name: str):
        return boto3.client(
            name,
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="aws-secret-key-for-tests",
        )

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", data=b"", method="POST")  # noqa: S310
        urllib.request.urlopen(request, timeout=5).close()  # noqa: S310 - our own server


@contextmanager
def simulated_aws():
    quiet = logging.getLogger("werkzeug")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    aws = SoakAws()
    aws.start()
    aws.simulator.install()
    aws.simulator.behave_by_image_annotation(BEHAVIOUR_ANNOTATION)  # the demo's OOM branch
    aws.simulator.start_clock(interval=0.05)
    call_action = EC2ContainerServiceResponse.__dict__["call_action"]

    def throttling_call_action(response):
        aws.ecs_calls[response._get_action()] += 1
        if aws.throttling:
            aws.throttled += 1
            body = {"__type": "ThrottlingException", "message": "Rate exceeded"}
            return 400, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(body)
        return call_action(response)

    EC2ContainerServiceResponse.call_action = throttling_call_action
    try:
        yield aws
    finally:
        EC2ContainerServiceResponse.call_action = call_action
        aws.simulator.uninstall()
        if aws.server is None:
            aws.start()
        aws.reset()
        aws.stop()
        quiet.setLevel(level)


def add_ecs_services(aws: SoakAws, app: Application) -> None:
    """Two services for the application (worker in phase 1, web in phase 2) on revision 1,
    running, their placements, and its ECR repository."""
    ecs = aws.client("ecs")
    if not ecs.describe_clusters(clusters=[CLUSTER])["clusters"]:
        ecs.create_cluster(clusterName=CLUSTER)
    aws.client("ecr").create_repository(repositoryName=app.slug)
    cluster, _ = Cluster.objects.get_or_create(name=CLUSTER, region=REGION)
    names = []
    for kind, phase in ((ProcessType.WORKER, 1), (ProcessType.WEB, 2)):
        name = f"{app.slug}-{kind}"
        create_service(ecs, cluster=CLUSTER, name=name, image=f"{REGISTRY}/{app.slug}:base")
        service = Service.objects.create(application=app, name=name, process_type=kind, phase=phase)
        Placement.objects.create(
            service=service, cluster=cluster, ecs_service_name=name, container_name="app"
        )
        names.append(name)

    def steady():
        described = ecs.describe_services(cluster=CLUSTER, services=names)["services"]
        return all(
            len(s["deployments"]) == 1 and s["deployments"][0]["rolloutState"] == "COMPLETED"
            for s in described
        )

    wait_until(steady, 20, f"{app.slug}'s services to start on revision 1", interval=0.1)


# ---------------------------------------------------------------------------- Jenkins


class SlowJenkins(JenkinsStandin):
    """The stand-in Jenkins, able to answer late: `response_delay` seconds before each answer
    (the network or Jenkins itself stalling), longer than JENKINS_TIMEOUT to make it time out."""

    response_delay = 0.0

    def _handle(self, method, raw_path, headers, body, client_ip):
        if self.response_delay:
            time.sleep(self.response_delay)
        return super()._handle(method, raw_path, headers, body, client_ip)


# ---------------------------------------------------------------------------- workers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Machines:
    """Celery workers, each as if on a machine of its own: its own FC_WORK_DIR."""

    def __init__(self, env: dict[str, str], root: Path):
        self.env = env
        self.root = root
        self.task_log = root / "tasks.log"
        self.started: list[WorkerProcess] = []
        self.extra_env: dict[str, dict[str, str]] = {}

    def work_dir(self, name: str) -> Path:
        return self.root / name / "work"

    def start(self, name: str, *, concurrency: int = 2, **env: str) -> WorkerProcess:
        (self.root / name).mkdir(parents=True, exist_ok=True)
        self.extra_env[name] = env
        log_path = self.root / name / "worker.log"
        worker_env = {
            **self.env,
            "FC_WORK_DIR": str(self.work_dir(name)),
            "FC_SOAK_WORKER": name,
            "FC_SOAK_TASK_LOG": str(self.task_log),
            **env,
        }
        argv = [sys.executable, "-m", "celery", "-A", "tests.soak.worker_app", "worker"]
        argv += [f"--concurrency={concurrency}", "--pool=prefork", "-Q", "deploys,builds,clusters"]
        argv += ["--without-mingle", "--without-gossip", "--loglevel=INFO", "-n", f"{name}@%h"]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                argv,
                cwd=settings.BASE_DIR,
                env=worker_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: its pool dies with it at the end
            )
        worker = WorkerProcess(name, process, log_path)
        self.started.append(worker)
        return worker

    def start_ready(self, *names: str, **env: str) -> list[WorkerProcess]:
        workers = [self.start(name, **env) for name in names]
        for worker in workers:
            wait_until(
                lambda w=worker: " ready." in w.log, 60, lambda w=worker: f"{w.name}\n{w.log}", 0.1
            )
        return workers

    def restart_dead(self) -> list[str]:
        """What a supervisor's restart policy does: start again each worker that exited."""
        current = {w.name: w for w in self.started}  # the latest of each name
        dead = [name for name, w in current.items() if w.process.poll() is not None]
        for name in dead:
            self.start(name, **self.extra_env[name])
        return dead

    @staticmethod
    def pool_children(worker: WorkerProcess) -> list[int]:
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(worker.process.pid)], capture_output=True, text=True
        ).stdout
        return [int(pid) for pid in out.split()]

    @staticmethod
    def kill_main(worker: WorkerProcess) -> None:
        """SIGKILL the worker's main process only: its pool processes are orphaned."""
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=10)

    def kill_children(self, worker: WorkerProcess) -> list[int]:
        """SIGKILL the worker's pool processes, not the worker: it must start new ones."""
        children = self.pool_children(worker)
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        return children

    def stop_all(self) -> None:
        for worker in self.started:
            try:  # the group: a main process killed alone may have left its pool behind
                os.killpg(worker.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            worker.process.wait(timeout=10)

    def tasks(self) -> list[tuple[float, str, int, str, int]]:
        """(when, worker, pid, task, deploy id) of every task the workers started."""
        if not self.task_log.exists():
            return []
        rows = []
        for line in self.task_log.read_text().splitlines():
            when, worker, pid, task, arg = line.split("\t")
            if arg.isdigit():
                rows.append((float(when), worker, int(pid), task, int(arg)))
        return rows

    def workers_that_ran(self, task: str, deploy_id: int) -> list[str]:
        return [w for _, w, _, t, d in self.tasks() if t == task and d == deploy_id]


def worker_env(*, database_name: str, redis_url: str, aws: SoakAws, jenkins: JenkinsStandin):
    database = urlsplit(os.environ["DATABASE_URL"])
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "JENKINS_", "FC_")) and key != "DATABASE_URL"
    }
    env.update(
        {
            "DATABASE_URL": database._replace(path="/" + database_name).geturl(),
            "REDIS_URL": redis_url,
            "SECRET_KEY": settings.SECRET_KEY,
            "FC_VAR_DIR": str(settings.VAR_DIR),
            "AWS_ENDPOINT_URL": aws.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "aws-secret-key-for-tests",
            "AWS_DEFAULT_REGION": REGION,
            "FC_AWS_TIMEOUT": str(AWS_TIMEOUT),
            "FC_AWS_MAX_ATTEMPTS": str(AWS_MAX_ATTEMPTS),
            "JENKINS_URL": jenkins.url,
            "JENKINS_USER": jenkins.user,
            "JENKINS_TOKEN": jenkins.token,
            "JENKINS_TIMEOUT": str(JENKINS_TIMEOUT),
            "FC_STALL_AFTER": str(STALL_AFTER),
            "FC_ROLLOUT_STALL_AFTER": str(STALL_AFTER),
            "FC_ROLLOUT_LEASE": str(ROLLOUT_LEASE),
            "FC_ROLLOUT_POLL_SECONDS": str(ROLLOUT_POLL),
            "DB_CONN_MAX_AGE": "0",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


# ------------------------------------------------------------------------------ Redis


class PrivateRedis:
    """A redis-server of our own on a free port, no persistence: stopping it loses every
    message, as a Redis restarted without AOF does. Started and stopped by its pid."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(self.directory), "--daemonize", "no", "--bind", "127.0.0.1"]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_until(self._pong, 10, "our redis-server to answer", interval=0.05)

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # by its pid: no shutdown save, nothing kept
            self.process.wait(timeout=10)
        self.process = None


@contextmanager
def broker(url: str):
    """Point this process's Celery app (the safety net's sends) at another broker."""
    conf = celery_app.conf
    before = conf.broker_url

    def switch(to: str) -> None:
        conf.broker_url = to
        # Dropped, not closed: kombu's pools are shared, and the other broker's are kept.
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    switch(url)
    try:
        yield
    finally:
        switch(before)


# --------------------------------------------------------------------------- the loop


@dataclass
class Beat:
    """What beat does, from the test's loop: the safety net and the build poller, about
    once a second; and on every round a look for two slot holders of one application."""

    interval: float = 1.0
    rounds: int = 0
    resent: int = 0
    errors: list[str] = field(default_factory=list)
    double_holders: list[dict] = field(default_factory=list)
    _last: float = 0.0

    def round(self) -> None:
        self.rounds += 1
        try:
            self.resent += resume_deploys()
            poll_builds()
        except Exception as exc:  # beat logs a failed run and tries again at the next
            self.errors.append(f"{type(exc).__name__}: {exc}")
            connection.close()
        holders = (
            Deploy.objects.filter(state__in=sorted(SLOT_STATES))
            .values("application_id")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
        )
        self.double_holders += list(holders)

    def until(self, predicate, timeout: float, what, on_round=None):
        """Poll `predicate` often; run a beat round every `interval`; fail at the deadline."""

        def look():
            value = predicate()
            if value:
                return value
            if time.monotonic() - self._last >= self.interval:
                self._last = time.monotonic()
                self.round()
                if on_round:
                    on_round()
            return None

        return wait_until(look, timeout, what, interval=0.1)

    def hold(self, seconds: float) -> None:
        """Keep beat going for `seconds`: how long a fault lasts is the fault's own shape."""
        end = time.monotonic() + seconds
        self.until(lambda: time.monotonic() >= end, seconds + 30, "the fault's time")

    def until_final(self, deploy_ids, timeout: float, on_round=None) -> None:
        ids = list(deploy_ids)
        self.until(
            lambda: not Deploy.objects.filter(pk__in=ids).exclude(state__in=FINAL_STATES).exists(),
            timeout,
            lambda: "every deploy to end:\n" + "\n".join(not_final_timelines(ids)),
            on_round,
        )


def not_final_timelines(ids) -> list[str]:
    waiting = Deploy.objects.filter(pk__in=ids).exclude(state__in=FINAL_STATES)
    return [timeline(d.pk) for d in waiting[:5]] + [f"({waiting.count()} not final)"]


# ---------------------------------------------------------------------------- queueing


def queue(api, app: Application, branch: str, mode: str = Mode.MERGE_ONLY) -> int:
    response = api.post(
        "/api/deploys/", {"application": app.slug, "branch": branch, "mode": mode}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


# ------------------------------------------------------------------------- the checks


def check_invariants(apps: dict[str, tuple[Application, Path, str]], beat: Beat) -> dict:
    """What must hold after any run, faults or not; returns figures for the record.

    `apps` is slug -> (application, its remote, main's sha before the run).
    """
    deploys = list(Deploy.objects.filter(application__slug__in=apps).order_by("id"))
    stranded = [d.pk for d in deploys if d.state not in FINAL_STATES]
    assert not stranded, "\n".join(timeline(pk) for pk in stranded[:5])
    assert not beat.double_holders, beat.double_holders

    by_app: dict[int, list[Deploy]] = defaultdict(list)
    for deploy in deploys:
        by_app[deploy.application_id].append(deploy)
    for slug, (app, remote, main_before) in apps.items():
        mine = by_app[app.pk]
        took = [d for d in mine if d.started_at is not None]
        # FIFO: the slot went to the deploys in the order they were queued.
        assert [d.pk for d in sorted(took, key=lambda d: d.started_at)] == [d.pk for d in took]
        # One holder at a time: each took the slot after the one before it ended.
        for before, after in zip(took, took[1:], strict=False):
            assert after.started_at >= before.finished_at, (slug, before.pk, after.pk)
        # Nothing merged that did not pass its build; and main is exactly the merged candidates.
        merged = [d for d in took if d.state in SUCCESS_STATES]
        for deploy in merged:
            last = deploy.builds.order_by("-attempt").first()
            assert last is not None and last.status == BuildStatus.SUCCEEDED, timeline(deploy.pk)
        chain = first_parent_chain(remote, main_before)
        assert chain == [d.candidate_sha for d in merged], (slug, chain)
        unmerged = {d.candidate_sha for d in took if d.state not in SUCCESS_STATES}
        assert not unmerged & set(chain), slug

    started = [d for d in deploys if d.started_at is not None]
    return {
        "deploys": len(deploys),
        "stranded": len(stranded),
        "outcomes": dict(Counter(d.state for d in deploys)),
        "serial_sum_seconds": round(
            sum((d.finished_at - d.started_at).total_seconds() for d in started), 1
        ),
        "safety_net_resends": beat.resent,
        "safety_net_rounds": beat.rounds,
        "safety_net_errors": len(beat.errors),
    }


def built_elsewhere(machines: Machines, deploys) -> int:
    """Deploys whose candidate was made on one machine and built on another.

    The machine that made a candidate has the merge in its clone's reflog (a resent merging
    step that stood down merges nothing); the one that built it printed its working directory
    (under its own FC_WORK_DIR) at the top of the build's log. A machine that built a candidate
    it did not make could only have it from the remote's refs/fatcontroller/candidates/<id>.
    """
    made_by: dict[str, set[str]] = defaultdict(set)
    for worker in machines.started:
        for clone in machines.work_dir(worker.name).glob("*"):
            if not (clone / ".git").is_dir():
                continue
            log = git(clone, "log", "-g", "--format=%H%x09%gs", "HEAD")
            for line in log.splitlines():
                sha, _, subject = line.partition("\t")
                if subject.startswith("merge "):
                    made_by[sha].add(worker.name)
    count = 0
    for deploy in deploys:
        build = deploy.builds.filter(status=BuildStatus.SUCCEEDED, backend="local").first()
        if build is None or deploy.candidate_sha not in made_by:
            continue
        builders = {
            w.name for w in machines.started if str(machines.work_dir(w.name)) in build.log[:2000]
        }
        if builders and not builders & made_by[deploy.candidate_sha]:
            count += 1
    return count


def recovery(deploy_ids, since: float) -> tuple[float | None, str]:
    """From `since` (the fault, or its end) to the first sign of the deploys moving again:
    an event on a timeline that is not a report of the trouble itself; and that event."""
    events = DeployEvent.objects.filter(
        deploy_id__in=list(deploy_ids), created_at__gt=_aware(since)
    ).order_by("created_at")
    for event in events:
        text = event.message.lower()
        if any(word in text for word in ("trying again", "did not answer", "no answer", "error")):
            continue
        seconds = round(event.created_at.timestamp() - since, 2)
        return seconds, f"#{event.deploy_id} {event.from_state}->{event.to_state}: {event.message}"
    return None, ""


def _aware(ts: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, tz=UTC)


# ----------------------------------------------------------------------------- results

_lock = threading.Lock()


def record(section: str, name: str, figures: dict) -> None:
    """Add figures to build/soak/results.json (results-short.json for the short run)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / ("results-short.json" if SHORT else "results.json")
    with _lock:
        data = json.loads(path.read_text()) if path.exists() else {}
        data.setdefault(section, {})[name] = figures
        data["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
