"""Viewers asking for pages over HTTP as browser tabs do, for bench/pages.py.

A tab asks for its path every `period` seconds; it never has two requests out: an answer
later than its next turn sends the next request at once (and counts it late), and none is
started after the run's end (those out then are waited for and counted). A new connection
per request, as the figures were always taken.

A conditional tab behaves as static/js/live.js does: it sends back the ETag of its last
full answer in If-None-Match (a 304 is "unchanged") and, where the fragment takes one, the
last X-Live-Cursor as ?since= (only the rows changed since come back).
"""

import math
import re
import threading
import time
from dataclasses import dataclass, field
from http.client import HTTPConnection
from urllib.parse import quote

TIMING = re.compile(r"\bapp;dur=([0-9.]+)")
ANSWERED = (200, 304)


@dataclass(frozen=True)
class Tab:
    name: str  # the figure's name: "dashboard", "dashboard-live fragment"
    path: str
    conditional: bool = False  # If-None-Match, as live.js
    sends_since: bool = False  # and ?since= (the dashboard's fragment)


@dataclass
class Answer:
    status: int
    server_ms: float | None  # the server's own time, from Server-Timing
    client_ms: float  # connect to the last byte
    size: int
    etag: str | None
    cursor: str | None  # X-Live-Cursor


def get(port: int, path: str, cookie: str, headers: dict[str, str] | None = None) -> Answer:
    started = time.perf_counter()
    connection = HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path, headers={**({"Cookie": cookie} if cookie else {}),
                                                 **(headers or {})})  # fmt: skip
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    timing = TIMING.search(response.getheader("Server-Timing") or "")
    return Answer(
        status=response.status,
        server_ms=float(timing.group(1)) if timing else None,
        client_ms=(time.perf_counter() - started) * 1000,
        size=len(body),
        etag=response.getheader("ETag"),
        cursor=response.getheader("X-Live-Cursor"),
    )


def alone(
    port: int,
    cookie: str,
    path: str,
    *,
    warm_up: int,
    requests: int,
    seconds: float,
    etag: str | None = None,
) -> list[float]:
    """One client, one request after another: a request's cost without contention. With
    `etag`, sent back in If-None-Match: what an unchanged poll costs (304s only)."""
    samples = []
    deadline = None
    headers = {"If-None-Match": etag, "X-Requested-With": "fetch"} if etag else {}
    wanted = 304 if etag else 200
    for n in range(warm_up + requests):
        answer = get(port, path, cookie, headers)
        if answer.status not in (200, wanted) or answer.server_ms is None:
            raise SystemExit(f"bench: {path} answered {answer.status} ({answer.server_ms})")
        if answer.status != wanted:  # changed meanwhile: the new ETag, and on
            headers["If-None-Match"] = answer.etag or ""
            continue
        if n >= warm_up:
            samples.append(answer.server_ms)
            deadline = deadline or time.monotonic() + seconds
            if time.monotonic() > deadline:
                break
    return samples


@dataclass
class TabFigures:
    # server and client ms, by the kind of answer: "full" (200) and "unchanged" (304)
    server: dict[str, list[float]] = field(default_factory=lambda: {"full": [], "unchanged": []})
    client: dict[str, list[float]] = field(default_factory=lambda: {"full": [], "unchanged": []})
    sizes: list[int] = field(default_factory=list)  # of the full answers
    errors: list[str] = field(default_factory=list)
    asked: int = 0  # requests sent
    late: int = 0  # of them, answered after the tab's next turn


@dataclass
class LoadResult:
    tabs: dict[str, TabFigures]
    viewers: int
    period: float
    duration: float
    turns: int  # the requests the tabs' turns asked for in the run
    took: float  # from the start to the last answer

    @property
    def asked_per_second(self) -> float:
        return self.turns / self.duration

    @property
    def answered(self) -> int:
        return sum(len(t.server["full"]) + len(t.server["unchanged"]) for t in self.tabs.values())

    @property
    def served_per_second(self) -> float:
        return self.answered / self.took

    @property
    def late(self) -> int:
        return sum(t.late for t in self.tabs.values())

    @property
    def errors(self) -> int:
        return sum(len(t.errors) for t in self.tabs.values())

    @property
    def kept_up(self) -> bool:
        """Served what was asked: no errors, every turn's request answered (none skipped
        for a late answer) and 99 in 100 answers in time for the next turn."""
        return self.errors == 0 and self.answered >= self.turns and self.late <= self.turns / 100


def load(
    port: int, cookies: list[str], tabs: list[Tab], *, period: float, duration: float
) -> LoadResult:
    """Every viewer (a session cookie each) has every tab open, polling in a thread of its
    own; the viewers' starts, and a viewer's tabs, spread evenly over the period."""
    figures = {tab.name: TabFigures() for tab in tabs}
    lock = threading.Lock()
    start = time.monotonic() + 0.5
    stop = start + duration
    # Every tab of every viewer a turn of its own, spread evenly over one period.
    tabs_open = len(cookies) * len(tabs)
    offsets = [
        [period * (viewer * len(tabs) + number) / tabs_open for number in range(len(tabs))]
        for viewer in range(len(cookies))
    ]
    # The turns that fall in the run: what an instant server would have answered.
    turns = sum(math.ceil((duration - offset) / period) for row in offsets for offset in row)
    last_answer = [start]

    def poll(viewer: int, number: int) -> None:
        tab, cookie = tabs[number], cookies[viewer]
        mine = figures[tab.name]
        etag = since = None
        due = start + offsets[viewer][number]
        while True:
            time.sleep(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            if now >= stop:
                return
            path, headers = tab.path, {}
            if tab.conditional:
                headers["X-Requested-With"] = "fetch"
                if etag:
                    headers["If-None-Match"] = etag
                if tab.sends_since and since:
                    path += ("&" if "?" in path else "?") + f"since={quote(since)}"
            try:
                answer = get(port, path, cookie, headers)
            except OSError as exc:
                with lock:
                    mine.errors.append(f"{type(exc).__name__}: {exc}")
                    mine.asked += 1
            else:
                kind = "unchanged" if answer.status == 304 else "full"
                with lock:
                    mine.asked += 1
                    # Answered after the tab's next turn: the server kept it waiting.
                    mine.late += time.monotonic() > due + period
                    last_answer[0] = max(last_answer[0], time.monotonic())
                    if answer.status in ANSWERED and answer.server_ms is not None:
                        mine.server[kind].append(answer.server_ms)
                        mine.client[kind].append(answer.client_ms)
                        if kind == "full":
                            mine.sizes.append(answer.size)
                    else:
                        mine.errors.append(
                            f"HTTP {answer.status}, Server-Timing {answer.server_ms}"
                        )
                if answer.status == 200:
                    etag, since = answer.etag, answer.cursor
            due = max(due + period, time.monotonic())

    threads = [
        threading.Thread(target=poll, args=(viewer, number))
        for viewer in range(len(cookies))
        for number in range(len(tabs))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(
        tabs=figures,
        viewers=len(cookies),
        period=period,
        duration=duration,
        turns=turns,
        took=max(duration, last_answer[0] - start),
    )
