import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand

PROCESSES = {
    "web": ["manage.py", "runserver", "--noreload"],
    "worker": [
        "-m", "celery", "-A", "fatcontroller", "worker", "--loglevel=INFO",
        "--concurrency=2", "--without-mingle", "--without-gossip", "--without-heartbeat",
    ],
    "beat": ["-m", "celery", "-A", "fatcontroller", "beat", "--loglevel=INFO"],
}  # fmt: skip


class Command(BaseCommand):
    help = "Run web, a Celery worker and Celery beat together until Ctrl-C; one dies, all stop."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args, addrport, **options):
        children = {}
        for name, argv in PROCESSES.items():
            argv = [sys.executable, *argv] + ([addrport] if name == "web" else [])
            children[name] = subprocess.Popen(argv)
        self.stdout.write(self.style.SUCCESS(f"Fat Controller is on http://{addrport}/"))
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
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
