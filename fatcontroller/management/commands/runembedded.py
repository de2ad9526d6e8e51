import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand, CommandError

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
        "Run web, a Celery worker and Celery beat together until Ctrl-C; one dies, all stop. "
        "Unless AWS_ENDPOINT_URL says where AWS is, a simulated AWS (runmoto) runs too and "
        "the others deploy to it."
    )

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args, addrport, **options):
        from .runmoto import CREDENTIALS, REGION, demo_aws, demo_aws_ready, endpoint_for, moto_port

        children = {}
        env = dict(os.environ)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
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
                children["moto"] = subprocess.Popen(
                    [sys.executable, "manage.py", "runmoto", "--port", str(port)], env=env
                )
                # Nothing may start a rollout before the services it deploys to are there.
                self._wait_for_moto(children["moto"], endpoint, aws, demo_aws_ready)
            for name, argv in PROCESSES.items():
                argv = [sys.executable, *argv] + ([addrport] if name == "web" else [])
                children[name] = subprocess.Popen(argv, env=env)
            self.stdout.write(
                self.style.SUCCESS(
                    f"Fat Controller is on http://{addrport}/; deploys go to {where}"
                )
            )
            while all(child.poll() is None for child in children.values()):
                time.sleep(0.5)
            dead = [name for name, child in children.items() if child.poll() is not None]
            self.stderr.write(f"{', '.join(dead)} stopped: stopping the rest")
        except KeyboardInterrupt:
            pass
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.terminate()
            for child in children.values():
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()

    def _wait_for_moto(self, process, endpoint, aws, ready) -> None:
        started = time.monotonic()
        deadline = started + MOTO_START_TIMEOUT
        while not ready(endpoint, aws):
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
