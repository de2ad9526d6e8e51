"""manage.py runembedded: the embedded default's processes (what `make run` starts), kept up.

Web (gunicorn: WEB_WORKERS processes of WEB_THREADS threads each), a Celery worker and
Celery beat run as separate processes under one Supervisor (lib/supervisor.py); unless
AWS_ENDPOINT_URL says where AWS is, the simulated AWS (runmoto) runs too, started first and
waited for, since nothing may start a rollout before the services it deploys to are there.
Unless FC_LEGACY_JENKINS_URL says where the legacy Jenkins is, the stand-in Jenkins
(runjenkins) runs too, with the demo's legacy deploy jobs, started next and waited for: web
and worker are given FC_LEGACY_JENKINS_URL, _USER and _TOKEN to reach it, credentials made
up for this run (the token is random, in the children's environment only, never printed).

- A child that dies is started again after a backoff (1 s doubling to 30 s, back to 1 s
  after a minute up), with a line on stderr saying which, how and when.
- Everything stops on Ctrl-C or SIGTERM (SIGTERM to each child, 10 s, then SIGKILL), or when
  one child dies 5 times within 60 s: then the command exits with status 1.
- On Linux no child outlives this command, even when it is SIGKILLed.

A restarted stand-in Jenkins has the demo's jobs again, and the same credentials, but no
builds: a deploy following a legacy build at that moment finds it gone.

A restarted simulated AWS makes the demo's ECR repository, base image, clusters and
services again as it starts (runmoto does that at every start), so deploys queued after it
is back go out as before. What it held in memory is lost: the images builds pushed before,
the task definitions deploys registered, and deployments under way: a deploy rolling out
at that moment may fail or roll back, and a restore to a task definition registered before
the restart finds none (tests/test_embedded_supervisor.py shows a deploy queued after the
restart going out and merging).
"""

import http.client
import os
import secrets
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from lib.supervisor import ChildSpec, Supervisor
from lib.urls import redact

# Fifty people keeping the dashboard open poll it every 2 s: a threaded production server,
# not runserver (one process, a thread per connection, a listen queue of 10). Two processes
# for the two cores the GIL would otherwise keep to one; SQLite takes them (WAL, and the
# write lock waited for: settings.py). No access log: a webhook's path holds its token.
WEB_WORKERS = 2
WEB_THREADS = 8
# A poll answers in milliseconds: on Ctrl-C, the answers being written are done within it.
WEB_GRACEFUL_SECONDS = 5
# No control socket: gunicorn's default is one path in $HOME for every gunicorn the user
# runs, so a second `make run` (or the tests' servers) would take it from the first.
PROCESSES = {
    "web": [
        "-m", "gunicorn", "fatcontroller.wsgi", "--workers", str(WEB_WORKERS),
        "--threads", str(WEB_THREADS), "--graceful-timeout", str(WEB_GRACEFUL_SECONDS),
        "--no-control-socket", "--bind",
    ],
    "worker": [
        "-m", "celery", "-A", "fatcontroller", "worker", "--loglevel=INFO",
        "--concurrency=2", "--without-mingle", "--without-gossip", "--without-heartbeat",
    ],
    "beat": ["-m", "celery", "-A", "fatcontroller", "beat", "--loglevel=INFO"],
}  # fmt: skip
# How long the simulated AWS may take to answer with the demo's services made.
MOTO_START_TIMEOUT = 60.0
JENKINS_START_TIMEOUT = 60.0
WEB_START_TIMEOUT = 60.0
# AWS settings that must not reach the simulated AWS's clients: a profile would be looked
# up (and may not exist), a session token belongs to real credentials.
NOT_FOR_MOTO = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION")


class Command(BaseCommand):
    help = (
        "Run web, a Celery worker and Celery beat together until Ctrl-C, restarting one that "
        "dies. Unless AWS_ENDPOINT_URL says where AWS is, a simulated AWS (runmoto) runs too "
        "and the others deploy to it; unless FC_LEGACY_JENKINS_URL says where the legacy "
        "Jenkins is, a stand-in Jenkins (runjenkins) runs the demo's legacy deploy jobs."
    )

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args, addrport, **options):
        from .runmoto import CREDENTIALS, REGION, demo_aws, demo_aws_ready, endpoint_for, moto_port

        env = dict(os.environ)
        children = []
        moto = None
        if env.get("AWS_ENDPOINT_URL"):
            where = f"the AWS at {env['AWS_ENDPOINT_URL']} (AWS_ENDPOINT_URL)"
            self.stdout.write(f"AWS_ENDPOINT_URL is set: deploys go to {where}")
        else:
            port = moto_port()
            endpoint = endpoint_for(port)
            aws = demo_aws()
            for name in NOT_FOR_MOTO:
                env.pop(name, None)
            env.update(
                AWS_ENDPOINT_URL=endpoint,
                AWS_ACCESS_KEY_ID=CREDENTIALS["aws_access_key_id"],
                AWS_SECRET_ACCESS_KEY=CREDENTIALS["aws_secret_access_key"],
                AWS_DEFAULT_REGION=REGION,
            )
            # The demo cluster's disconnected agent shows on its page within a minute, not
            # after production's five (README, "Cluster health"); what is set stays.
            env.setdefault("FC_AGENT_WATCH_SECONDS", "10")
            env.setdefault("FC_AGENT_GRACE_SECONDS", "20")
            where = f"the simulated AWS at {endpoint}"
            moto = ChildSpec(
                "moto", [sys.executable, "manage.py", "runmoto", "--port", str(port)], env=env
            )
            children.append(moto)
        jenkins = None
        if env.get("FC_LEGACY_JENKINS_URL"):
            legacy = f"the Jenkins at {redact(env['FC_LEGACY_JENKINS_URL'])}"
            self.stdout.write(f"FC_LEGACY_JENKINS_URL is set: legacy deploy jobs run on {legacy}")
        else:
            jenkins = legacy_jenkins(env)
            children.append(jenkins)
        for name, argv in PROCESSES.items():
            argv = [sys.executable, *argv] + ([addrport] if name == "web" else [])
            children.append(ChildSpec(name, argv, env=env))

        with Supervisor(children) as supervisor:
            # The simulated AWS, the stand-in Jenkins and web load at once (each takes
            # seconds to import and make what it serves); the worker and beat, which deploy
            # and watch clusters through the first two, start once both answer.
            for spec in (moto, jenkins):
                if spec is not None:
                    supervisor.start(spec.name)
            supervisor.start("web")
            if moto is not None and not self._wait_for_moto(
                supervisor, endpoint, aws, demo_aws_ready
            ):
                return  # Ctrl-C while waiting: the supervisor stops what started on the way out
            if jenkins is not None and not self._wait_for_jenkins(supervisor, env):
                return
            for name in PROCESSES:
                if name != "web":
                    supervisor.start(name)
            if not self._wait_for_web(supervisor, addrport):
                return
            self.stdout.write(
                self.style.SUCCESS(
                    f"Fat Controller is on http://{addrport}/; deploys go to {where}"
                )
            )
            if jenkins is not None:
                url = env["FC_LEGACY_JENKINS_URL"]
                self.stdout.write(f"Legacy deploy jobs run on the stand-in Jenkins at {url}")
            self.stdout.flush()
            status = supervisor.run()
        if status != 0:
            raise CommandError(f"{supervisor.gave_up_on} kept dying: everything is stopped")

    def _wait_for_moto(self, supervisor, endpoint, aws, ready) -> bool:
        """Wait until the simulated AWS answers with the demo made; False on Ctrl-C."""
        return self._wait_for(
            supervisor,
            "moto",
            "the simulated AWS",
            "runmoto",
            endpoint,
            lambda: ready(endpoint, aws),
            MOTO_START_TIMEOUT,
        )

    def _wait_for_jenkins(self, supervisor, env) -> bool:
        """Wait until the stand-in Jenkins takes its credentials; False on Ctrl-C."""
        from .runjenkins import jenkins_ready

        url = env["FC_LEGACY_JENKINS_URL"]
        user, token = env["FC_LEGACY_JENKINS_USER"], env["FC_LEGACY_JENKINS_TOKEN"]
        return self._wait_for(
            supervisor,
            "jenkins",
            "the stand-in Jenkins",
            "runjenkins",
            url,
            lambda: jenkins_ready(url, user, token),
            JENKINS_START_TIMEOUT,
        )

    def _wait_for_web(self, supervisor, addrport) -> bool:
        """Wait until the web server answers, so the address printed next works at once
        (gunicorn listens before its workers have loaded Django); False on Ctrl-C."""
        return self._wait_for(
            supervisor, "web", "the web server", "gunicorn", f"http://{addrport}/login/",
            lambda: answers(addrport, "/login/"),
            WEB_START_TIMEOUT,
        )  # fmt: skip

    def _wait_for(self, supervisor, name, what, command, where, ready, timeout) -> bool:
        """Wait until the child `name` is `ready()`; False on Ctrl-C.

        Its first start is not restarted: a child that cannot start (its port taken) will
        not start a second later either.
        """
        process = supervisor.process(name)
        started = time.monotonic()
        deadline = started + timeout
        while not ready():
            if supervisor.stop_requested:
                return False
            if process.poll() is not None:
                raise CommandError(
                    f"{what} ({command}) stopped with exit code {process.returncode}: see above"
                )
            if time.monotonic() > deadline:
                raise CommandError(f"{what} did not answer at {where} within {timeout:g} s")
            time.sleep(0.2)
        self.stdout.write(
            f"{what[0].upper()}{what[1:]} answered in {time.monotonic() - started:.1f} s"
        )
        return True


def answers(addrport: str, path: str) -> bool:
    """Whether an HTTP server answers GET `path` at `addrport`, whatever the status."""
    host, _, port = addrport.rpartition(":")
    connection = http.client.HTTPConnection(host or "127.0.0.1", int(port), timeout=2)
    try:
        connection.request("GET", path)
        connection.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def legacy_jenkins(env: dict[str, str]) -> ChildSpec:
    """The stand-in Jenkins as a child (`runjenkins` on FC_JENKINS_PORT), and `env` given the
    FC_LEGACY_JENKINS_* settings that reach it, with a token made up for this run."""
    from .runjenkins import DEFAULT_USER, jenkins_port, url_for

    port = jenkins_port()
    env.update(
        FC_LEGACY_JENKINS_URL=url_for(port),
        FC_LEGACY_JENKINS_USER=DEFAULT_USER,
        FC_LEGACY_JENKINS_TOKEN=secrets.token_urlsafe(24),
    )
    return ChildSpec(
        "jenkins", [sys.executable, "manage.py", "runjenkins", "--port", str(port)], env=env
    )
