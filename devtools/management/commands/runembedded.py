"""manage.py runembedded: the embedded default's processes (what `make run` starts), kept up.

Web (runserver), a Celery worker and Celery beat run as separate processes under one
Supervisor (lib/supervisor.py); unless AWS_ENDPOINT_URL says where AWS is, the simulated AWS
(runmoto) runs too, started first and waited for, since nothing may start a rollout before
the services it deploys to are there.

- A child that dies is started again after a backoff (1 s doubling to 30 s, back to 1 s
  after a minute up), with a line on stderr saying which, how and when.
- Everything stops on Ctrl-C or SIGTERM (SIGTERM to each child, 10 s, then SIGKILL), or when
  one child dies 5 times within 60 s: then the command exits with status 1.
- On Linux no child outlives this command, even when it is SIGKILLed.

A restarted simulated AWS makes the demo's ECR repository, base image, clusters and
services again as it starts (runmoto does that at every start), so deploys queued after it
is back go out as before. What it held in memory is lost: the images builds pushed before,
the task definitions deploys registered, and deployments under way: a deploy rolling out
at that moment may fail or roll back, and a restore to a task definition registered before
the restart finds none (tests/test_embedded_supervisor.py shows a deploy queued after the
restart going out and merging).
"""

import os
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from lib.supervisor import ChildSpec, Supervisor

PROCESSES = {
    "web": ["manage.py", "runserver", "--noreload"],
    "worker": [
        "-m", "celery", "-A", "fatcontroller", "worker", "--loglevel=INFO",
        "--concurrency=2", "--without-mingle", "--without-gossip", "--without-heartbeat",
    ],
    "beat": ["-m", "celery", "-A", "fatcontroller", "beat", "--loglevel=INFO"],
}  # fmt: skip
# How long the simulated AWS may take to answer with the demo's services made.
MOTO_START_TIMEOUT = 60.0
# AWS settings that must not reach the simulated AWS's clients: a profile would be looked
# up (and may not exist), a session token belongs to real credentials.
NOT_FOR_MOTO = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION")


class Command(BaseCommand):
    help = (
        "Run web, a Celery worker and Celery beat together until Ctrl-C, restarting one that "
        "dies. Unless AWS_ENDPOINT_URL says where AWS is, a simulated AWS (runmoto) runs too "
        "and the others deploy to it."
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
            where = f"the simulated AWS at {endpoint}"
            moto = ChildSpec(
                "moto", [sys.executable, "manage.py", "runmoto", "--port", str(port)], env=env
            )
            children.append(moto)
        for name, argv in PROCESSES.items():
            argv = [sys.executable, *argv] + ([addrport] if name == "web" else [])
            children.append(ChildSpec(name, argv, env=env))

        with Supervisor(children) as supervisor:
            if moto is not None:
                supervisor.start(moto.name)
                if not self._wait_for_moto(supervisor, endpoint, aws, demo_aws_ready):
                    return  # Ctrl-C while waiting: the supervisor stops moto on the way out
            for name in PROCESSES:
                supervisor.start(name)
            self.stdout.write(
                self.style.SUCCESS(
                    f"Fat Controller is on http://{addrport}/; deploys go to {where}"
                )
            )
            self.stdout.flush()
            status = supervisor.run()
        if status != 0:
            raise CommandError(f"{supervisor.gave_up_on} kept dying: everything is stopped")

    def _wait_for_moto(self, supervisor, endpoint, aws, ready) -> bool:
        """Wait until the simulated AWS answers with the demo made; False on Ctrl-C.

        Its first start is not restarted: a simulated AWS that cannot start (its port taken)
        will not start a second later either.
        """
        process = supervisor.process("moto")
        started = time.monotonic()
        deadline = started + MOTO_START_TIMEOUT
        while not ready(endpoint, aws):
            if supervisor.stop_requested:
                return False
            if process.poll() is not None:
                raise CommandError(
                    f"the simulated AWS (runmoto) stopped with exit code {process.returncode}: "
                    "see above"
                )
            if time.monotonic() > deadline:
                raise CommandError(
                    f"the simulated AWS did not answer at {endpoint} within "
                    f"{MOTO_START_TIMEOUT:g} s"
                )
            time.sleep(0.2)
        self.stdout.write(f"The simulated AWS answered in {time.monotonic() - started:.1f} s")
        return True
