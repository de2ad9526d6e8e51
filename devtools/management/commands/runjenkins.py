"""manage.py runjenkins: the embedded default's stand-in Jenkins, the demo's legacy side.

devtools.jenkins_standin (a Jenkins 2.462 look-alike, honest to its REST API) on 127.0.0.1,
port FC_JENKINS_PORT (default 8002, beside moto's 8001) or --port, serving the demo's legacy
deploy jobs (devtools.legacy_jobs): one per legacy placement of demo-shop.fatcontroller.yml,
or the jobs named with --job. Its user and API token are FC_LEGACY_JENKINS_USER and
FC_LEGACY_JENKINS_TOKEN, the credentials web and worker use to reach the legacy Jenkins;
`runembedded` makes them up for each run and gives them to both, through the environment
only: they are never printed. A build asks the AWS at AWS_ENDPOINT_URL (the simulated AWS in
the embedded default) about the image it deploys.

Jenkins' state is in memory, as moto's is: a restarted stand-in has every job again but no
builds, and numbers them from 1 again, so a deploy following a legacy build at that moment
finds its build gone (its queue item and build answer 404), as it would on a Jenkins whose
disk was lost.
"""

import logging
import os
import signal
import sys
import time

import requests
from django.core.management.base import BaseCommand, CommandError

from devtools.demo import demo_config
from devtools.jenkins_standin import JenkinsStandin
from devtools.legacy_jobs import BUILD_SECONDS, legacy_jobs, serve_demo_jobs

from .runmoto import HOST, check_free, port_setting, seconds_setting

DEFAULT_PORT = 8002
DEFAULT_USER = "fatcontroller"
# Jenkins' quiet period is 5 s by default; a demo waits one.
QUEUE_DELAY = 1.0
USER_SETTING, TOKEN_SETTING = "FC_LEGACY_JENKINS_USER", "FC_LEGACY_JENKINS_TOKEN"
JOB_SECONDS_SETTING = "FC_LEGACY_JOB_SECONDS"


def jenkins_port() -> int:
    """FC_JENKINS_PORT, or DEFAULT_PORT."""
    return port_setting("FC_JENKINS_PORT", DEFAULT_PORT)


def job_seconds() -> float:
    """FC_LEGACY_JOB_SECONDS, or BUILD_SECONDS: how long a demo legacy job's steps take (the
    tests shorten them; a demo phase on the legacy side takes seconds either way)."""
    return seconds_setting(JOB_SECONDS_SETTING, BUILD_SECONDS)


def url_for(port: int) -> str:
    return f"http://{HOST}:{port}/"


def demo_legacy_jobs() -> list[str]:
    """The demo's legacy deploy jobs: one per legacy placement of its configuration file."""
    return legacy_jobs(demo_config())


def jenkins_ready(url: str, user: str, token: str, jobs: list[str] | None = None) -> bool:
    """Does the Jenkins at `url` take these credentials, and has it every job of `jobs`?"""
    try:
        answer = requests.get(f"{url.rstrip('/')}/api/json", auth=(user, token), timeout=2)
    except requests.RequestException:
        return False
    if answer.status_code != 200:
        return False
    try:
        names = {job.get("name") for job in answer.json().get("jobs", [])}
    except (ValueError, AttributeError):
        return False
    return set(jobs or ()) <= names


class Command(BaseCommand):
    help = (
        "Run the stand-in Jenkins on 127.0.0.1 with the demo's legacy deploy jobs, until "
        "stopped; its credentials are FC_LEGACY_JENKINS_USER and FC_LEGACY_JENKINS_TOKEN."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--port",
            type=int,
            default=None,
            help=f"default: FC_JENKINS_PORT, else {DEFAULT_PORT}",
        )
        parser.add_argument(
            "--job",
            action="append",
            dest="jobs",
            default=None,
            help="a job to serve (again for more); default: the demo's legacy deploy jobs",
        )
        parser.add_argument(
            "--build-seconds",
            type=float,
            default=None,
            help=f"how long a deploy job's steps take (default: {JOB_SECONDS_SETTING}, "
            f"else {BUILD_SECONDS:g})",
        )

    def handle(self, *args, port=None, jobs=None, build_seconds=None, **options):
        user = os.environ.get(USER_SETTING, "").strip() or DEFAULT_USER
        token = os.environ.get(TOKEN_SETTING, "")
        if not token:
            raise CommandError(
                f"set {TOKEN_SETTING} (and {USER_SETTING}, default {DEFAULT_USER!r}): the API "
                "token the stand-in Jenkins accepts"
            )
        if build_seconds is None:
            build_seconds = job_seconds()
        if build_seconds < 0:
            raise CommandError("--build-seconds cannot be negative")
        port = port if port is not None else jenkins_port()
        jobs = jobs or demo_legacy_jobs()
        if not jobs:
            raise CommandError("no job to serve: the demo has no legacy placement")
        check_free(port, "FC_JENKINS_PORT", "the stand-in Jenkins")

        standin = JenkinsStandin(
            user, token, jobs=(), full_name="Fat Controller", port=port, remember_requests=False
        )
        standin.queue_delay = QUEUE_DELAY
        standin.executors = len(jobs)  # the jobs of one rollout phase run side by side
        serve_demo_jobs(standin, jobs, seconds=build_seconds)
        # The stand-in logs a failed script itself; the HTTP server logs nothing per request.
        logging.getLogger("devtools.jenkins_standin").setLevel(logging.WARNING)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            standin.start()
            self.stdout.write(
                self.style.SUCCESS(
                    f"Stand-in Jenkins on {standin.url}, as {user}: {', '.join(jobs)}"
                )
            )
            self.stdout.flush()
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            standin.stop()
