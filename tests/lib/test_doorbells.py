"""lib/doorbells.py: a consumer's named pipe, rung by senders and by itself."""

import os
import select

from lib import doorbells


def readable(doorbell: doorbells.Doorbell) -> bool:
    return bool(select.select([doorbell.fileno()], [], [], 0)[0])


def test_a_ring_is_heard_once(tmp_path):
    doorbell = doorbells.Doorbell(tmp_path)
    try:
        assert not readable(doorbell)
        assert doorbells.ring_all(tmp_path) == 1
        assert readable(doorbell)
        assert doorbell.heard()
        assert not doorbell.heard()
        assert not readable(doorbell)
    finally:
        doorbell.close()


def test_every_doorbell_is_rung_and_its_own_ring_reaches_only_itself(tmp_path):
    first, second = doorbells.Doorbell(tmp_path), doorbells.Doorbell(tmp_path)
    try:
        assert doorbells.ring_all(tmp_path) == 2
        assert first.heard() and second.heard()
        first.ring()
        assert first.heard()
        assert not second.heard()
    finally:
        first.close()
        second.close()


def test_rings_nobody_hears_yet_never_block_the_sender(tmp_path):
    doorbell = doorbells.Doorbell(tmp_path)
    try:
        for _ in range(100_000):  # far more than a pipe holds
            doorbells.ring_all(tmp_path)
            doorbell.ring()
        assert doorbell.heard()
        assert not doorbell.heard()
    finally:
        doorbell.close()


def test_a_doorbell_nobody_reads_is_taken_down_by_the_next_ring(tmp_path):
    folder = tmp_path / doorbells.FOLDER
    folder.mkdir()
    os.mkfifo(folder / "left-by-a-killed-consumer")
    live = doorbells.Doorbell(tmp_path)
    try:
        assert doorbells.ring_all(tmp_path) == 1
        assert os.listdir(folder) == [live.path.name]
    finally:
        live.close()


def test_a_closed_doorbell_is_gone_and_ringing_nobody_is_no_error(tmp_path):
    assert doorbells.ring_all(tmp_path) == 0  # no folder yet
    doorbell = doorbells.Doorbell(tmp_path)
    doorbell.close()
    assert os.listdir(tmp_path / doorbells.FOLDER) == []
    assert doorbells.ring_all(tmp_path) == 0
