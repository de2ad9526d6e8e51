"""bench/pages_load.py says when a server kept up with the viewers and when it did not: the
bench's figures are only honest if that does."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench import pages_load


def serving(seconds_per_answer: float, *, threads: bool):
    """A server that takes `seconds_per_answer` (its own work, as a slow page's) per answer,
    with a thread per connection or one answer at a time."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            time.sleep(seconds_per_answer)
            etag = '"same"'
            unchanged = self.headers.get("If-None-Match") == etag
            self.send_response(304 if unchanged else 200)
            self.send_header("ETag", etag)
            self.send_header("Server-Timing", f"app;dur={seconds_per_answer * 1000:.1f}")
            self.send_header("Content-Length", "0" if unchanged else "2")
            self.end_headers()
            if not unchanged:
                self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = (ThreadingHTTPServer if threads else OneAtATime)(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


class OneAtATime(ThreadingHTTPServer):
    daemon_threads = True

    def process_request(self, request, client_address):
        self.finish_request(request, client_address)
        self.shutdown_request(request)


@pytest.fixture
def server_of():
    made = []

    def make(seconds: float, *, threads: bool):
        made.append(serving(seconds, threads=threads))
        return made[-1].server_address[1]

    yield make
    for server in made:
        server.shutdown()
        server.server_close()


def test_a_server_that_answers_in_time_kept_up(server_of):
    port = server_of(0.0, threads=True)
    tabs = [pages_load.Tab("page", "/"), pages_load.Tab("poll", "/live/", conditional=True)]

    # A period long enough that only an answer a second late misses a turn, busy or not.
    result = pages_load.load(port, ["a=1"] * 5, tabs, period=1.0, duration=3.0)

    assert result.turns == 5 * 2 * 3
    assert result.answered == result.turns
    assert result.kept_up
    assert len(result.tabs["poll"].server["unchanged"]) == result.turns // 2 - 5  # ETag sent back


def test_a_server_slower_than_the_turns_did_not_keep_up(server_of):
    # One answer at a time, each 0.1 s: 10 a second served of the 20 asked.
    port = server_of(0.1, threads=False)

    result = pages_load.load(port, ["a=1"] * 5, [pages_load.Tab("page", "/")], period=0.25,
                             duration=2.0)  # fmt: skip

    assert result.turns == 5 * 8
    assert result.answered < result.turns
    assert result.served_per_second < result.asked_per_second
    assert not result.kept_up
