import threading
import time

import pytest
from django.db import IntegrityError, connection, transaction

from deploys import slot
from deploys.models import Deploy
from deploys.statemachine import IllegalTransition, transition
from deploys.states import FINAL_STATES, SLOT_STATES, State


def queue(application, user, branch: str) -> Deploy:
    with transaction.atomic():
        deploy = Deploy.objects.create(application=application, branch=branch, requester=user)
        slot.record_queued(deploy)
    return deploy


def holders(application):
    return list(Deploy.objects.filter(application=application, state__in=SLOT_STATES))


def test_the_first_queued_deploy_takes_the_slot_and_the_rest_wait_in_order(application, user):
    first, second, third = (queue(application, user, f"feature/{n}") for n in "abc")
    assert slot.advance(application.pk) == first
    assert slot.advance(application.pk) is None  # the slot is taken
    holder, waiting = slot.queue_of(application)
    assert holder == first
    assert waiting == [second, third]
    first.refresh_from_db()
    assert [slot.queue_position(d) for d in (first, second, third)] == [None, 1, 2]


def test_the_database_refuses_a_second_holder(application, user):
    queue(application, user, "feature/a")
    slot.advance(application.pk)
    second = queue(application, user, "feature/b")
    with pytest.raises(IntegrityError), transaction.atomic():
        Deploy.objects.filter(pk=second.pk).update(state=State.BUILDING)


def test_a_locked_application_queues_but_starts_nothing(application, user):
    slot.lock(application, actor=user, reason="incident 42")
    deploy = queue(application, user, "feature/a")
    assert slot.advance(application.pk) is None
    deploy.refresh_from_db()
    assert deploy.state == State.QUEUED
    application.refresh_from_db()
    slot.unlock(application)
    assert slot.advance(application.pk) == deploy


def test_cancelling_a_queued_deploy_leaves_the_others_in_order(application, user):
    deploys = [queue(application, user, f"feature/{n}") for n in "abcd"]
    slot.advance(application.pk)
    transition(deploys[2].pk, State.CANCELLED, actor=user)
    holder, waiting = slot.queue_of(application)
    assert holder == deploys[0]
    assert waiting == [deploys[1], deploys[3]]
    assert slot.queue_position(deploys[3]) == 2


@pytest.mark.django_db(transaction=True)
def test_many_threads_queueing_and_finishing_never_make_two_holders(application, user):
    """Producers queue while finishers end whoever holds the slot, and watchers look on."""
    producers, per_producer = 6, 8
    total = producers * per_producer
    errors: list[BaseException] = []
    seen_two_holders = threading.Event()
    all_queued = threading.Barrier(producers + 1)
    stop = threading.Event()

    def guarded(fn):
        def run(*args):
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                errors.append(exc)
            finally:
                connection.close()

        return run

    @guarded
    def produce(n):
        for i in range(per_producer):
            queue(application, user, f"feature/p{n}-{i}")
            slot.advance(application.pk)
        all_queued.wait(timeout=60)

    @guarded
    def finish():
        while not stop.is_set():
            for holder in holders(application):
                try:
                    transition(holder.pk, State.CANCELLED, message="done")
                except IllegalTransition:
                    pass  # another finisher got there first

    @guarded
    def watch():
        while not stop.is_set():
            if len(holders(application)) > 1:
                seen_two_holders.set()

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(producers)]
    threads += [threading.Thread(target=finish) for _ in range(3)]
    threads += [threading.Thread(target=watch)]
    for thread in threads:
        thread.start()
    all_queued.wait(timeout=60)
    # Every deploy must reach a final state: poll with a deadline, never a fixed sleep.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if Deploy.objects.filter(state__in=FINAL_STATES).count() == total:
            break
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors, errors
    assert not seen_two_holders.is_set()
    assert Deploy.objects.filter(application=application).count() == total
    assert Deploy.objects.filter(state__in=FINAL_STATES).count() == total


@pytest.mark.django_db(transaction=True)
def test_racing_handoffs_grant_the_slot_in_queue_order(application, user):
    """With the queue built, many threads finishing and advancing at once keep FIFO."""
    slot.lock(application, actor=user, reason="building the queue")
    deploys = [queue(application, user, f"feature/q{n:02d}") for n in range(30)]
    application.refresh_from_db()
    slot.unlock(application)
    errors: list[BaseException] = []
    granted: list[int] = []
    granted_lock = threading.Lock()

    def worker():
        try:
            while Deploy.objects.filter(state=State.QUEUED).exists() or holders(application):
                for holder in holders(application):
                    try:
                        transition(holder.pk, State.CANCELLED)
                    except IllegalTransition:
                        pass
                got = slot.advance(application.pk)
                if got is not None:
                    with granted_lock:
                        granted.append(got.pk)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors, errors
    # The order the slot was taken in, as the events recorded it.
    order = list(
        Deploy.objects.filter(events__to_state=State.MERGING)
        .order_by("events__id")
        .values_list("pk", flat=True)
    )
    assert order == [d.pk for d in deploys]
    assert granted, "the threads' own handoffs should have granted some of the slots"
