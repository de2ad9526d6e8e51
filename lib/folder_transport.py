"""The embedded default's broker: a folder on one machine that cannot crash a worker.

kombu's filesystem transport writes a message in place, so a reader can pick up a file that
is still empty (JSONDecodeError, kombu issue #1551: the worker dies "Unrecoverable"), and it
deletes a message as soon as it reads it, so a killed worker loses everything it held. It is
also synchronous, which puts Celery's prefork pool in its threaded mode: the pool's children
share one inbound queue under one lock, an idle child waits for work holding that lock, and a
child SIGKILLed there (the OOM killer's way) leaves it held forever; every replacement child
blocks on it and the worker takes messages it never runs.

This transport keeps kombu's folder layout and exchange tables, and guarantees:

* A message appears whole or not at all: it is written under `incoming/` and renamed into
  `queue/` (a rename is atomic within one file system).
* A message is taken by exactly one consumer: taking it is a rename into the consumer's own
  claim folder (`claimed/<host>:<pid>:<process start>/`); of two racing consumers only one
  rename succeeds.
* A message is not lost with its consumer: it stays in the claim folder until acked. A
  consumer that dies (SIGKILL included) leaves its claims, and any live consumer on the same
  host moves them back into `queue/` once the process is gone (checked by pid and start
  time, so a reused pid is not mistaken for the owner). A consumer that closes cleanly
  hands its unacked messages back itself.
* A file that is not a message (left half-written by the stock transport, or damaged) is
  moved to `bad/` with a warning; it never stops the worker.
* It is asynchronous for Celery: the worker's event loop looks for messages when its
  doorbell rings (lib/doorbells.py: a sender rings every consumer's after putting a message
  in place, a consumer its own after an ack frees room for the next) and, in case a ring
  is lost, every `polling_interval` (0.1 s in the embedded default). So a message waits
  for no poll, and the worker runs the same event-loop prefork pool as on Redis, with one
  pipe per child and no shared lock.

One machine only: claims are recovered by processes on the host that made them.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from queue import Empty

from kombu.transport import TRANSPORT_ALIASES, filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

from . import doorbells
from .processes import holder_is_gone, this_process

log = logging.getLogger(__name__)

# How often a consumer looks for claims left by dead consumers.
RECOVER_EVERY = 5.0
# Messages taken per queue in one event-loop poll, so one busy queue cannot starve the loop.
BATCH = 32


class Channel(filesystem.Channel):
    """Folder channel: atomic puts, claims until ack, recovery of a dead consumer's claims."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._claims: dict[str, Path] = {}  # delivery tag -> the claimed file
        self._recovered_at = 0.0
        for folder in (self.queue_folder, self.incoming_folder, self.claims_root):
            folder.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ folders

    @cached_property
    def root(self) -> Path:
        return Path(self.transport_options["folder"])

    @cached_property
    def queue_folder(self) -> Path:
        return self.root / "queue"

    @cached_property
    def incoming_folder(self) -> Path:
        return self.root / "incoming"

    @cached_property
    def claims_root(self) -> Path:
        return self.root / "claimed"

    @property
    def control_folder(self) -> Path:
        return self.root / "control"

    @cached_property
    def claim_folder(self) -> Path:
        """This process's claims, named for it (host:pid:start time) so that others can tell
        when it is gone, as step leases are."""
        folder = self.claims_root / this_process()
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # ------------------------------------------------------------------ put and get

    def _put(self, queue, payload, **kwargs):
        # A fixed-width time first, so names sort in the order messages were sent.
        name = f"{time.time_ns():020d}_{uuid.uuid4().hex}.{queue}.msg"
        partial = self.incoming_folder / name
        with open(partial, "wb") as f:
            f.write(str_to_bytes(dumps(payload)))
        os.rename(partial, self.queue_folder / name)
        doorbells.ring_all(self.root)

    def _get(self, queue):
        self._recover_dead_claims()
        suffix = f".{queue}.msg"
        for name in sorted(os.listdir(self.queue_folder)):
            if not name.endswith(suffix) or name.partition(".")[2] != suffix[1:]:
                continue
            claimed = self.claim_folder / name
            try:
                os.rename(self.queue_folder / name, claimed)
            except FileNotFoundError:
                continue  # another consumer took it first
            try:
                payload = loads(bytes_to_str(claimed.read_bytes()))
                tag = payload["properties"]["delivery_tag"]
            except (ValueError, KeyError, TypeError) as exc:
                self._set_aside(claimed, exc)
                continue
            self._claims[tag] = claimed
            return payload
        raise Empty()

    def _set_aside(self, path: Path, exc: Exception) -> None:
        bad = self.root / "bad"
        bad.mkdir(exist_ok=True)
        os.replace(path, bad / path.name)
        log.warning("broker: %s is not a message (%s): moved to %s", path.name, exc, bad)

    # ------------------------------------------------------------------ ack, reject, restore

    def basic_ack(self, delivery_tag, multiple=False):
        super().basic_ack(delivery_tag, multiple=multiple)
        self._forget_claim(delivery_tag)
        self._room_freed()

    def basic_reject(self, delivery_tag, requeue=False):
        # With requeue the base class puts the message back first (through _restore).
        super().basic_reject(delivery_tag, requeue=requeue)
        self._forget_claim(delivery_tag)
        self._room_freed()

    def _room_freed(self) -> None:
        # A worker takes no more messages than its prefetch while it holds unacked ones, so
        # a message sent by a running task (the deploy's next step) waits for this ack: the
        # loop looks again now rather than at its next poll.
        doorbell = getattr(self.connection, "doorbell", None)
        if doorbell is not None:
            doorbell.ring()

    def _restore(self, message):
        super()._restore(message)  # a fresh copy into the queue
        self._forget_claim(message.delivery_tag)

    def _forget_claim(self, delivery_tag) -> None:
        claimed = self._claims.pop(delivery_tag, None)
        if claimed is not None:
            claimed.unlink(missing_ok=True)

    def _recover_dead_claims(self) -> None:
        now = time.monotonic()
        if now - self._recovered_at < RECOVER_EVERY:
            return
        self._recovered_at = now
        recover_dead_claims(self.root)

    # ------------------------------------------------------------------ size and purge

    def _messages(self, queue):
        suffix = f"{queue}.msg"
        return [n for n in os.listdir(self.queue_folder) if n.partition(".")[2] == suffix]

    def _size(self, queue):
        return len(self._messages(queue))

    def _purge(self, queue):
        count = 0
        for name in self._messages(queue):
            try:
                os.remove(self.queue_folder / name)
            except FileNotFoundError:
                continue
            count += 1
        return count


def recover_dead_claims(root: Path) -> int:
    """Move the claims of this host's dead consumers back into the queue; returns how many."""
    moved = 0
    claims_root = root / "claimed"
    if not claims_root.is_dir():
        return 0
    for folder in claims_root.iterdir():
        if not holder_is_gone(folder.name):
            continue  # alive, or of another host: not for this one to judge
        for claimed in folder.iterdir():
            try:
                os.rename(claimed, root / "queue" / claimed.name)
            except FileNotFoundError:
                continue  # another consumer is recovering it
            moved += 1
        try:
            folder.rmdir()
        except OSError:
            pass
    if moved:
        log.warning("broker: %d message(s) held by a consumer that died are queued again", moved)
    return moved


class Transport(filesystem.Transport):
    """The folder transport; asynchronous for Celery through its event loop's timer."""

    Channel = Channel
    implements = virtual.Transport.implements.extend(
        asynchronous=True, exchange_type=frozenset(["direct", "topic", "fanout"])
    )
    driver_type = "folder"
    driver_name = "folder"
    # kombu's filesystem transport keeps one declaration state per process; two folders in
    # one process (tests) would then skip writing each other's exchange tables.
    states_by_folder: dict[str, virtual.BrokerState] = {}

    def __init__(self, client, **kwargs):
        super().__init__(client, **kwargs)
        folder = str(client.transport_options["folder"])
        self.state = self.states_by_folder.setdefault(folder, virtual.BrokerState())

    doorbell: doorbells.Doorbell | None = None
    _loop = None

    def register_with_event_loop(self, connection, loop):
        # The loop looks when the doorbell rings, and on a timer in case a ring was lost:
        # what the synchronous loop did, without blocking the loop or the pool.
        def poll():
            for _ in range(BATCH):
                try:
                    self.drain_events(connection, timeout=0)
                except (TimeoutError, Empty):
                    return

        def answer():
            if self.doorbell is not None and self.doorbell.heard():
                poll()

        self.unregister_from_event_loop(connection, loop)  # registered again
        try:
            self.doorbell = doorbells.Doorbell(Path(self.client.transport_options["folder"]))
        except OSError as exc:  # a file system without named pipes: the poll alone, slower
            log.warning("broker: no doorbell (%s): messages wait for the poll", exc)
        else:
            self._loop = loop
            loop.add_reader(self.doorbell.fileno(), answer)
        self._poller = loop.call_repeatedly(self.polling_interval, poll)

    def unregister_from_event_loop(self, connection, loop):
        poller = getattr(self, "_poller", None)
        if poller is not None:
            poller.cancel()
            self._poller = None
        self._take_doorbell_down()

    def close_connection(self, connection):
        # A worker shutting down (or reconnecting) closes its connection without leaving
        # the loop first.
        super().close_connection(connection)
        self._take_doorbell_down()

    def _take_doorbell_down(self) -> None:
        if self.doorbell is None:
            return
        if self._loop is not None:
            # Out of the loop before its descriptor closes and its number is given again.
            self._loop.remove_reader(self.doorbell.fileno())
            self._loop = None
        self.doorbell.close()
        self.doorbell = None


def register() -> None:
    """Make `folder://` a broker URL kombu (and so Celery) knows."""
    TRANSPORT_ALIASES["folder"] = f"{__name__}:Transport"
