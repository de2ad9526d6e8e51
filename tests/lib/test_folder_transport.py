"""The embedded broker (lib/folder_transport.py), through kombu as Celery uses it.

Each test makes its own broker folder. Consumers in other processes are real processes
(multiprocessing), since "another consumer" and "a consumer that died" are what it is about.
"""

import multiprocessing
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Queue
from kombu.asynchronous import Hub

from lib import doorbells, folder_transport, processes
from tests.waiting import wait_until

folder_transport.register()

EXCHANGE = Exchange("deploys", type="direct")
QUEUE = Queue("deploys", EXCHANGE, routing_key="deploys")


def connection(root: Path) -> Connection:
    return Connection("folder://", transport_options={"folder": str(root), "polling_interval": 0})


def publish(root: Path, *bodies) -> None:
    with connection(root) as conn:
        producer = conn.Producer()
        for body in bodies:
            producer.publish(body, exchange=EXCHANGE, routing_key="deploys", declare=[QUEUE])


class Consumer:
    """A consumer that stays connected (closing hands back what it holds, as it should)."""

    def __init__(self, root: Path):
        self.connection = connection(root)
        self.queue = QUEUE.bind(self.connection.default_channel)
        self.queue.declare()

    def take(self, *, ack: bool):
        """One message, or None if there is none."""
        message = self.queue.get(no_ack=False)
        if message is not None and ack:
            message.ack()
        return message

    def close(self):
        self.connection.close()


@pytest.fixture
def consumer(tmp_path):
    made = Consumer(tmp_path)
    yield made
    made.close()


def take(root: Path, *, ack: bool):
    """One message from a consumer that then closes: only acked messages stay taken."""
    one_off = Consumer(root)
    try:
        message = one_off.take(ack=ack)
        return None if message is None else message.payload
    finally:
        one_off.close()


def queued(root: Path) -> list[str]:
    return sorted(os.listdir(root / "queue"))


def claimed(root: Path) -> list[Path]:
    return [p for folder in (root / "claimed").iterdir() for p in folder.iterdir()]


def test_a_message_is_delivered_whole_and_acked_once(tmp_path, consumer):
    publish(tmp_path, {"n": 1})
    message = consumer.take(ack=False)
    assert message.payload == {"n": 1}
    assert queued(tmp_path) == []
    assert len(claimed(tmp_path)) == 1  # held until acked
    message.ack()
    assert claimed(tmp_path) == []


def test_a_file_that_is_not_a_message_is_set_aside_not_fatal(tmp_path):
    publish(tmp_path, {"n": 1})  # declares the folders and the exchange
    take(tmp_path, ack=True)
    # What the stock transport left when a reader met a file still being written.
    (tmp_path / "queue" / "00000000000000000001_x.deploys.msg").write_bytes(b"")
    publish(tmp_path, {"n": 2})
    assert take(tmp_path, ack=True) == {"n": 2}
    assert os.listdir(tmp_path / "bad") == ["00000000000000000001_x.deploys.msg"]


def test_a_reader_never_sees_a_message_being_written(tmp_path):
    """Writers and a reader race on one folder: every message read is whole and none is lost."""
    publish(tmp_path, {"n": -1})
    take(tmp_path, ack=True)
    big = "x" * 200_000  # large enough that a write is not one system call
    count = 200
    writer = threading.Thread(
        target=publish, args=(tmp_path, *({"n": n, "pad": big} for n in range(count)))
    )
    writer.start()
    seen = []
    with connection(tmp_path) as conn:
        queue = QUEUE.bind(conn.default_channel)

        def read_all():
            while (message := queue.get()) is not None:
                seen.append(message.payload["n"])
                message.ack()
            return len(seen) == count

        wait_until(read_all, 60, lambda: f"{count} messages, read {len(seen)}", interval=0)
    writer.join()
    assert sorted(seen) == list(range(count))
    assert not (tmp_path / "bad").exists()


def _consume_forever(root: str, ready) -> None:
    with connection(Path(root)) as conn:
        queue = QUEUE.bind(conn.default_channel)
        queue.get(no_ack=False)  # takes one and never acks it
        ready.set()
        signal.pause()


def test_what_a_dead_consumer_held_is_delivered_again_once(tmp_path):
    publish(tmp_path, {"n": 1})
    ready = multiprocessing.get_context("fork").Event()
    consumer = multiprocessing.get_context("fork").Process(
        target=_consume_forever, args=(str(tmp_path), ready)
    )
    consumer.start()
    assert ready.wait(30)
    assert take(tmp_path, ack=False) is None  # it is held, by a live consumer
    os.kill(consumer.pid, signal.SIGKILL)
    consumer.join(10)

    folder_transport.RECOVER_EVERY, saved = 0.0, folder_transport.RECOVER_EVERY
    try:
        assert take(tmp_path, ack=True) == {"n": 1}
        assert take(tmp_path, ack=True) is None  # once
    finally:
        folder_transport.RECOVER_EVERY = saved
    assert claimed(tmp_path) == []  # the dead consumer's folder was emptied


def test_a_live_consumers_claims_are_never_taken(tmp_path, consumer):
    publish(tmp_path, {"n": 1})
    held = consumer.take(ack=False)  # this process is alive
    assert held is not None
    assert folder_transport.recover_dead_claims(tmp_path) == 0
    assert take(tmp_path, ack=False) is None


def test_a_rejected_message_is_queued_again_and_its_claim_dropped(tmp_path, consumer):
    publish(tmp_path, {"n": 1})
    message = consumer.take(ack=False)
    message.reject(requeue=True)
    assert claimed(tmp_path) == []
    assert consumer.take(ack=True).payload == {"n": 1}


def test_a_consumer_that_closes_hands_back_what_it_held(tmp_path):
    publish(tmp_path, {"n": 1})
    closing = Consumer(tmp_path)
    assert closing.take(ack=False) is not None
    closing.close()
    assert claimed(tmp_path) == []
    assert take(tmp_path, ack=True) == {"n": 1}


def test_two_consumers_racing_take_each_message_once(tmp_path):
    count = 100
    publish(tmp_path, *({"n": n} for n in range(count)))
    context = multiprocessing.get_context("fork")
    results = context.Queue()

    def drain():
        got = []
        with connection(tmp_path) as conn:
            queue = QUEUE.bind(conn.default_channel)
            while (message := queue.get()) is not None:
                got.append(message.payload["n"])
                message.ack()
        results.put(got)

    racers = [context.Process(target=drain) for _ in range(3)]
    for racer in racers:
        racer.start()
    taken = [n for _ in racers for n in results.get(timeout=60)]
    for racer in racers:
        racer.join(10)
    assert sorted(taken) == list(range(count))


def test_the_process_start_time_tells_a_reused_pid_from_its_owner():
    start = processes.process_start_time(os.getpid())
    assert start and processes.process_alive(os.getpid(), start)
    assert not processes.process_alive(os.getpid(), start + "0")


@pytest.mark.parametrize(
    "holder, gone",
    [
        (f"{socket.gethostname()}:{2**22 + 12345}:0", True),  # no process has that pid
        (processes.this_process(), False),
        ("host.example.com:42:", False),  # another machine's: not for this one to judge
        ("garbage", False),
    ],
)
def test_claim_folders_name_their_holder_as_leases_do(holder, gone):
    assert processes.holder_is_gone(holder) is gone


def test_messages_sort_in_the_order_they_were_sent(tmp_path):
    publish(tmp_path, *({"n": n} for n in range(20)))
    assert len(queued(tmp_path)) == 20
    assert [take(tmp_path, ack=True)["n"] for _ in range(20)] == list(range(20))


# A consumer on an event loop, as Celery's worker runs it. Its poll is an hour, so a message
# that arrives within the deadline was brought by the doorbell.
HOUR = 3600


class LoopConsumer:
    """A consumer driven by kombu's event loop with a prefetch of one, as a worker of one
    process: it holds what it was given until `ack`."""

    def __init__(self, root: Path, polling_interval: float = HOUR):
        self.connection = Connection(
            "folder://",
            transport_options={"folder": str(root), "polling_interval": polling_interval},
        )
        self.hub = Hub()
        self.connection.register_with_event_loop(self.hub)
        self.held = []
        self.consumer = self.connection.Consumer(
            QUEUE, callbacks=[lambda body, message: self.held.append(message)], accept=["json"]
        )
        self.consumer.qos(prefetch_count=1)
        self.consumer.consume()

    def wait_for(self, count: int):
        deadline = time.monotonic() + 10
        while len(self.held) < count:
            assert time.monotonic() < deadline, f"{count} messages, got {len(self.held)}"
            self.hub.run_once()
        return self.held[count - 1]

    def close(self):
        self.connection.close()


def test_a_message_wakes_a_consumer_on_an_event_loop_at_once(tmp_path):
    consumer = LoopConsumer(tmp_path)
    try:
        publish(tmp_path, {"n": 1})
        assert consumer.wait_for(1).payload == {"n": 1}
    finally:
        consumer.close()


def test_an_ack_lets_the_message_sent_meanwhile_in_at_once(tmp_path):
    """A deploy's next step is sent while its step runs, so the worker still holds the step's
    message (acks_late) and takes no more: the ack must let the next one in, not the poll."""
    consumer = LoopConsumer(tmp_path)
    try:
        publish(tmp_path, {"n": 1})
        first = consumer.wait_for(1)
        publish(tmp_path, {"n": 2})
        consumer.hub.run_once()  # the loop hears the ring while the prefetch is full
        assert queued(tmp_path) and len(consumer.held) == 1  # so it waits
        first.ack()
        assert consumer.wait_for(2).payload == {"n": 2}
    finally:
        consumer.close()


def test_a_consumer_that_closes_takes_its_doorbell_down(tmp_path):
    consumer = LoopConsumer(tmp_path)
    assert len(os.listdir(tmp_path / doorbells.FOLDER)) == 1
    consumer.close()
    assert os.listdir(tmp_path / doorbells.FOLDER) == []


def test_without_a_doorbell_the_consumer_still_takes_messages_at_its_poll(tmp_path, monkeypatch):
    def no_named_pipes(*args, **kwargs):
        raise PermissionError("no named pipes here")

    monkeypatch.setattr(os, "mkfifo", no_named_pipes)
    consumer = LoopConsumer(tmp_path, polling_interval=0.05)
    try:
        publish(tmp_path, {"n": 1})
        assert consumer.wait_for(1).payload == {"n": 1}
    finally:
        consumer.close()
