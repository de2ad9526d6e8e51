"""The merge slot and the state machine hold under any interleaving of what can happen.

Hypothesis plays people, backends, ECS, beat and dying workers against two applications at
once, in random order, and after every step checks what the design promises:

* at most one deploy per application holds the slot, in the rows and in the timeline (the
  database's partial unique index is there and refuses a second holder when asked);
* the slot goes to the oldest queued deploy, every time (FIFO, replayed from the events);
* every deploy is final or waiting for a reason: queued behind a holder or a lock (or behind
  a handoff a dead process lost, which the safety net makes good), holding the slot with its
  step queued, with a build out at the backend, or with a step a dead worker lost that the
  safety net resends once it looks stalled, or in build_failed with a hold window;
* nothing reaches the default branch, or merged/succeeded, without a passed build and, for a
  deploy mode application with ECS services, a rollout and soak (verifying ->
  merging_to_default) before it; and the push happens from merging_to_default;
* every move is in the table and the timeline is one unbroken chain; a final state never
  changes again; a finished deploy leaves no build running (bar an abort on its way).

At the end of each example everything is driven to rest (unlocked, builds green, ECS happy,
hold windows run out) and every deploy must be final.

Steps run through the same functions a worker runs (the Celery tasks, applied in this
process against the real database, committing as a worker does); people act through
deploys.actions and deploys.applications. Only the boundaries are fakes (slot_world.py):
git, the build backend and the body of each rollout step.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar
from unittest import mock

import pytest
from celery import current_app
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from builds import building, hooks
from builds.models import UNFINISHED_BUILD_STATUSES, Build, BuildStatus
from deploys import actions, applications, pipeline, statemachine
from deploys.actions import CANCELLABLE, QUEUEABLE_MODES, DeployRequestError
from deploys.dispatch import STEP_TASKS, WATCHING_STATES
from deploys.models import Application, Deploy, DeployEvent
from deploys.resume import resume_deploys
from deploys.rollout import back, forward, soak
from deploys.statemachine import IllegalTransition, transition
from deploys.states import (
    ACTIVE_STATES,
    FINAL_STATES,
    SLOT_STATES,
    SUCCESS_STATES,
    Mode,
    State,
    is_allowed,
)
from tests.people import maintainer

from .slot_world import (
    ECS_ANSWERS,
    FakeBuildBackend,
    FakeEcs,
    FakeRemote,
    FakeRepository,
    sha_of,
)

# Two applications, so one's slot never leaks into the other's: shop rolls out to ECS and
# retries a red build once by itself; blog has no ECS service, so even deploy mode merges
# straight after the build.
APPS = {
    "shop": {"rollout": True, "build_auto_retries": 1},
    "blog": {"rollout": False, "build_auto_retries": 0},
}
PUSHED = ("feature/a", "feature/b", "feature/c", "conflict/prices")
# "main" is the default branch and feature/unpushed is not on the remote: both are refused.
BRANCHES = (*PUSHED, "feature/unpushed", "main")
HOOK_SECRET = "s3cret-for-tests"
# The messages a dead worker takes with it: every step and the build sync. (abort_builds is
# not a step: it is what a cancel asked for, and no safety net would send it again.)
STEP_MESSAGES = frozenset(STEP_TASKS.values()) | {"builds.tasks.sync_build"}
A_DAY = timedelta(days=1)

# Across all examples, for the report (printed at the end, `pytest -s` shows it).
FIGURES: Counter[str] = Counter()


@dataclass
class Env:
    """The pytest fixtures the machine needs; set once per test run."""

    sent: object  # conftest's SentTasks


@dataclass
class Replay:
    """The timeline replayed event by event: the states, the holders and the queues it shows."""

    last_event_id: int = 0
    state: dict[int, str] = field(default_factory=dict)
    holder: dict[str, int | None] = field(default_factory=dict)
    queued: dict[str, list[int]] = field(default_factory=dict)
    soaked: set[int] = field(default_factory=set)  # verifying -> merging_to_default
    built_to_merge: set[int] = field(default_factory=set)  # building -> merging_to_default


class SlotMachine(RuleBasedStateMachine):
    env: ClassVar[Env]
    current: ClassVar[SlotMachine | None] = None

    def __init__(self):
        super().__init__()
        SlotMachine.current = self
        # Each example starts from an empty database (a failed one may have left rows).
        forget_everything()
        self.env.sent.sent.clear()
        self.env.sent.later.clear()
        self.users = [maintainer("alice"), maintainer("bob")]
        self.apps = {
            slug: Application.objects.create(
                slug=slug,
                name=slug.title(),
                git_remote_url=f"https://git.example.com/{slug}.git",
                default_branch="main",
                build_backend="jenkins",
                build_auto_retries=facts["build_auto_retries"],
                build_hold_minutes=10,
            )
            for slug, facts in APPS.items()
        }
        self.remotes = {
            slug: FakeRemote("main", {b: sha_of(slug, b) for b in PUSHED}) for slug in APPS
        }
        self.verdicts: dict[int, bool] = {}
        self.aborted: list[int] = []
        self.backend = FakeBuildBackend(self.verdicts, self.aborted)
        self.ecs = FakeEcs()
        self.app_of: dict[int, str] = {}  # every deploy this example queued
        self.rows: dict[int, dict] = {}
        self.finals: dict[int, str] = {}
        # Deploys whose step messages a dead worker took with it (until the safety net runs).
        self.lost: set[int] = set()
        # Applications whose handoff died with its process after a final move.
        self.lost_handoff: set[str] = set()
        self.locked: set[str] = set()
        self.awaiting_report: list[int] = []  # running builds out at the backend
        self.replay = Replay(
            holder={slug: None for slug in APPS}, queued={slug: [] for slug in APPS}
        )
        FIGURES["examples"] += 1

    # ------------------------------------------------------------------------- plumbing

    def count(self, name: str) -> None:
        FIGURES["steps"] += 1
        FIGURES[f"rule {name}"] += 1

    def run_task(self, name: str, deploy_id: int) -> None:
        """One message taken by a worker: its task applied here, committing as it goes."""
        current_app.tasks[name].apply(args=[deploy_id], throw=True)

    def deploy(self, pk: int) -> Deploy:
        return Deploy.objects.select_related("application").get(pk=pk)

    def in_state(self, *states) -> list[int]:
        return sorted(pk for pk, row in self.rows.items() if row["state"] in states)

    def pick(self, data, preferred: list[int]) -> int:
        """A deploy, more often one the rule can act on, sometimes any (to be refused)."""
        anyone = st.sampled_from(sorted(self.app_of))
        if preferred:
            return data.draw(st.one_of(st.sampled_from(preferred), anyone))
        return data.draw(anyone)

    def messages(self) -> set[tuple[str, int]]:
        return set(self.env.sent.sent) | set(self.env.sent.later)

    def beat(self) -> None:
        """What beat runs: the safety net and the build poller."""
        resume_deploys()
        building.poll_builds()
        self.lost_handoff -= {s for s in APPS if s not in self.locked}

    # -------------------------------------------------------------------------- people

    @rule(
        app=st.sampled_from(sorted(APPS)),
        branch=st.sampled_from(BRANCHES),
        mode=st.sampled_from(QUEUEABLE_MODES),
        who=st.integers(0, 1),
    )
    def queue(self, app, branch, mode, who):
        self.count("queue")
        busy = Deploy.objects.filter(
            application=self.apps[app], branch=branch, state__in=ACTIVE_STATES
        ).exists()
        refused = branch == "main" or branch not in self.remotes[app].branches or busy
        try:
            deploy = actions.queue_deploy(
                application=app, branch=branch, mode=mode, requester=self.users[who]
            )
        except DeployRequestError as exc:
            assert refused, f"queueing {branch} on {app} was refused: {exc}"
            FIGURES["queue refused"] += 1
            return
        assert not refused, f"{branch} on {app} should have been refused"
        self.app_of[deploy.pk] = app
        self.lost_handoff.discard(app)  # queueing hands a free slot on after commit
        FIGURES["deploys"] += 1

    # The people's rules act when there is something to act on; `pick` still offers them any
    # deploy half the time, to check the refusals too.
    @precondition(lambda self: self.in_state(*CANCELLABLE))
    @rule(data=st.data(), who=st.integers(0, 1))
    def cancel(self, data, who):
        self.count("cancel")
        pk = self.pick(data, self.in_state(*CANCELLABLE))
        before = self.rows[pk]["state"]
        try:
            actions.cancel(self.deploy(pk), actor=self.users[who])
        except IllegalTransition:
            assert before not in CANCELLABLE | {State.CANCELLED}, f"#{pk} {before}"
            return
        assert before in CANCELLABLE | {State.CANCELLED}, f"#{pk} was {before}"
        assert self.deploy(pk).state == State.CANCELLED
        if before != State.CANCELLED:
            self.lost_handoff.discard(self.app_of[pk])

    @precondition(lambda self: self.in_state(State.BUILD_FAILED))
    @rule(data=st.data(), who=st.integers(0, 1))
    def abandon(self, data, who):
        self.count("abandon")
        pk = self.pick(data, self.in_state(State.BUILD_FAILED))
        before = self.rows[pk]["state"]
        try:
            actions.abandon(self.deploy(pk), actor=self.users[who])
        except IllegalTransition:
            assert before not in (State.BUILD_FAILED, State.ABANDONED), f"#{pk} {before}"
            return
        assert before in (State.BUILD_FAILED, State.ABANDONED), f"#{pk} was {before}"
        assert self.deploy(pk).state == State.ABANDONED

    @precondition(lambda self: self.in_state(State.BUILD_FAILED))
    @rule(data=st.data(), who=st.integers(0, 1))
    def retry_build(self, data, who):
        self.count("retry_build")
        pk = self.pick(data, self.in_state(State.BUILD_FAILED))
        before = self.rows[pk]["state"]
        attempts = Build.objects.filter(deploy_id=pk).count()
        try:
            actions.retry_build(self.deploy(pk), actor=self.users[who])
        except IllegalTransition:
            assert before not in (State.BUILD_FAILED, State.BUILDING), f"#{pk} {before}"
            return
        deploy = self.deploy(pk)
        assert before in (State.BUILD_FAILED, State.BUILDING), f"#{pk} was {before}"
        assert deploy.state == State.BUILDING
        if before == State.BUILD_FAILED:
            assert deploy.held_until is None
            assert deploy.builds.count() == attempts + 1  # the same candidate, built again

    @precondition(lambda self: self.app_of)
    @rule(app=st.sampled_from(sorted(APPS)), who=st.integers(0, 1))
    def lock_or_unlock(self, app, who):
        """A maintainer locks the application, or unlocks it; a second lock is refused."""
        self.count("lock_or_unlock")
        if app in self.locked:
            assert applications.unlock_application(self.apps[app], actor=self.users[who])
            self.lost_handoff.discard(app)  # unlocking hands the slot on after commit
            return
        applications.lock_application(self.apps[app], actor=self.users[who], reason="incident")
        with pytest.raises(applications.AlreadyLocked):
            applications.lock_application(self.apps[app], actor=self.users[who], reason="again")

    # ---------------------------------------------------------- backends, ECS, git

    @precondition(lambda self: self.awaiting_report)
    @rule(data=st.data(), passed=st.booleans(), twice=st.booleans(), at_once=st.booleans())
    def build_reports(self, data, passed, twice, at_once):
        """The backend ends a build; its notification asks for a sync (maybe twice over),
        which an idle worker may run at once."""
        self.count("build_reports")
        build = Build.objects.select_related("deploy__application").get(
            pk=data.draw(st.sampled_from(self.awaiting_report))
        )
        self.verdicts[build.pk] = passed
        payload = {
            "application": build.deploy.application.slug,
            "deploy_id": build.deploy_id,
            "attempt": build.attempt,
        }
        for _ in range(2 if twice else 1):
            hooks.accept_build_notification(payload, HOOK_SECRET)
        if at_once:
            self.run_messages([len(self.env.sent.sent) - 1])

    @precondition(lambda self: self.in_state(*WATCHING_STATES))
    @rule(data=st.data())
    def ecs_answers(self, data):
        """What the services of one rollout now do; its paused ticks fall due to see it."""
        self.count("ecs_answers")
        pk = data.draw(st.sampled_from(self.in_state(*WATCHING_STATES)))
        state = self.rows[pk]["state"]
        self.ecs.answers[(pk, state)] = data.draw(st.sampled_from(ECS_ANSWERS[state]))
        recorder = self.env.sent
        recorder.sent.extend(m for m in recorder.later if m[1] == pk)
        recorder.later[:] = [m for m in recorder.later if m[1] != pk]

    @precondition(lambda self: self.env.sent.later)
    @rule()
    def time_passes(self):
        """Every rollout's paused ticks fall due."""
        self.count("time_passes")
        self.env.sent.release_later()

    @precondition(lambda self: self.app_of)
    # One branch comes and goes (more would mostly make queueing refused).
    @rule(app=st.sampled_from(sorted(APPS)), branch=st.sampled_from((None, "feature/c")))
    def the_remote_changes(self, app, branch):
        """Someone pushes a hotfix to the default branch (a candidate's push must then be
        refused, never forced), or deletes or pushes a branch."""
        self.count("remote_changes")
        remote = self.remotes[app]
        if branch is None:
            remote.commit_on_default("hotfix")
        elif branch in remote.branches:
            del remote.branches[branch]
        else:
            remote.push_branch(branch)

    # -------------------------------------------------------------------------- workers

    # Workers are the busiest actors, and a deploy needs a dozen of their steps to ship: three
    # ways for them to take messages keep them from being crowded out by the other rules.
    @precondition(lambda self: self.env.sent.sent)
    @rule()
    def a_worker_takes_the_oldest_message(self):
        self.count("work_oldest")
        self.run_messages([0])

    @precondition(lambda self: self.env.sent.sent)
    @rule(data=st.data())
    def workers_take_messages(self, data):
        """A few messages run, in any order: several workers take from the broker at once."""
        self.count("work_any_order")
        sent = self.env.sent.sent
        for _ in range(data.draw(st.integers(1, 8))):
            if not sent:
                return
            self.run_messages([data.draw(st.integers(0, len(sent) - 1))])

    def run_messages(self, positions: list[int]) -> None:
        for position in positions:
            FIGURES["tasks run"] += 1
            self.run_task(*self.env.sent.sent.pop(position))

    @precondition(lambda self: self.env.sent.sent)
    @rule()
    def workers_catch_up(self):
        """The workers run every message there is, and every one those ask for, to rest
        (bar the rollout's paused ticks)."""
        self.count("work_catch_up")
        while self.env.sent.sent:
            self.run_messages([0])

    @precondition(lambda self: self.env.sent.sent)
    @rule(data=st.data())
    def a_message_is_delivered_twice(self, data):
        """acks_late: a worker that dies after the work but before the ack gets it again."""
        self.count("redeliver")
        sent = self.env.sent.sent
        sent.append(sent[data.draw(st.integers(0, len(sent) - 1))])

    @precondition(lambda self: self.env.sent.sent or self.env.sent.later)
    @rule(mid_claim=st.booleans(), mid_tick=st.booleans())
    def a_worker_dies(self, mid_claim, mid_tick):
        """Every queued step message is lost unrun; perhaps one build was claimed, perhaps a
        tick held its lease, when the worker died."""
        self.count("worker_dies")
        recorder = self.env.sent
        dropped = [m for m in recorder.sent + recorder.later if m[0] in STEP_MESSAGES]
        recorder.sent[:] = [m for m in recorder.sent if m[0] not in STEP_MESSAGES]
        recorder.later.clear()
        self.lost |= {pk for _, pk in dropped}
        FIGURES["messages lost"] += len(dropped)
        if mid_claim:
            for name, pk in dropped:
                if name == STEP_TASKS[State.BUILDING]:
                    deploy = self.deploy(pk)
                    if deploy.state == State.BUILDING and building.claim_pending_build(deploy):
                        # A step at work holds the deploy's step lease; a dead one keeps it.
                        Deploy.objects.filter(pk=pk).update(
                            step_lease_until=timezone.now() + django_settings.FC_STALL_AFTER
                        )
                        FIGURES["died holding a claimed build"] += 1
                        break
        if mid_tick:
            watching = [pk for name, pk in dropped if pk in self.in_state(*WATCHING_STATES)]
            Deploy.objects.filter(pk__in=watching).update(
                step_lease_until=timezone.now() + django_settings.FC_ROLLOUT_LEASE
            )

    @precondition(lambda self: self.app_of)
    @rule()
    def beat_runs(self):
        """Beat at any moment, nothing stalled: it must never do harm."""
        self.count("beat")
        self.beat()

    # Only after a death: a quiet day with nothing lost is the beat rule plus redeliveries.
    @precondition(lambda self: self.lost or self.lost_handoff)
    @rule()
    def a_day_passes_quietly_then_the_safety_net(self):
        """Every deploy looks stalled (updated_at, leases and heartbeats a day old); the
        safety net must pick each lost step up again."""
        self.count("safety_net")
        self.stall_everything()
        self.beat()
        self.lost.clear()  # the invariants now insist every holder has its step again

    def stall_everything(self) -> None:
        active = Deploy.objects.filter(pk__in=list(self.app_of), state__in=ACTIVE_STATES)
        active.update(updated_at=F("updated_at") - A_DAY)
        active.filter(step_lease_until__isnull=False).update(
            step_lease_until=F("step_lease_until") - A_DAY
        )
        Build.objects.filter(
            deploy_id__in=list(self.app_of),
            status=BuildStatus.RUNNING,
            heartbeat_at__isnull=False,
        ).update(heartbeat_at=F("heartbeat_at") - A_DAY)

    @precondition(lambda self: self.in_state(State.BUILD_FAILED))
    @rule(data=st.data())
    def a_hold_window_runs_out(self, data):
        self.count("hold_expires")
        pk = data.draw(st.sampled_from(self.in_state(State.BUILD_FAILED)))
        Deploy.objects.filter(pk=pk).update(held_until=F("held_until") - A_DAY)
        self.beat()
        assert self.deploy(pk).state == State.ABANDONED

    @precondition(lambda self: self.in_state(State.BUILD_FAILED))
    @rule(data=st.data(), who=st.integers(0, 1))
    def abandoned_but_the_handoff_dies(self, data, who):
        """The abandon commits, and its process dies before handing the slot on."""
        self.count("handoff_lost")
        pk = data.draw(st.sampled_from(self.in_state(State.BUILD_FAILED)))
        with mock.patch.object(statemachine, "_after_transition", lambda *args: None):
            actions.abandon(self.deploy(pk), actor=self.users[who])
        self.lost_handoff.add(self.app_of[pk])

    @precondition(
        lambda self: any(
            self.replay.holder[app] is not None and self.replay.queued[app] for app in APPS
        )
    )
    @rule(data=st.data())
    def a_second_grant_races_the_first(self, data):
        """Another process grants the slot past every check: the database must refuse it."""
        self.count("racing_grant")
        app = data.draw(
            st.sampled_from(
                [a for a in sorted(APPS) if self.replay.holder[a] and self.replay.queued[a]]
            )
        )
        with pytest.raises(IntegrityError), transaction.atomic():
            transition(
                self.replay.queued[app][0],
                State.MERGING,
                from_states=frozenset({State.QUEUED}),
                message="a racing grant",
            )

    # ----------------------------------------------------------------------- invariants

    @invariant()
    def what_the_design_promises(self):
        self.refresh()
        self.check_timeline()
        # A handoff lost while the slot was free is made good by any later advance.
        for app in list(self.lost_handoff):
            if self.replay.holder[app] is not None or not self.replay.queued[app]:
                self.lost_handoff.discard(app)
        self.check_one_holder()
        self.check_finals_stay_final()
        self.check_everyone_waits_for_a_reason()
        self.check_nothing_merged_unearned()

    def refresh(self) -> None:
        self.rows = {
            row["id"]: row
            for row in Deploy.objects.filter(application__in=list(self.apps.values())).values(
                "id", "state", "mode", "branch", "held_until", "candidate_sha"
            )
        }
        assert set(self.rows) == set(self.app_of), "a deploy appeared that nobody queued"
        self.locked = set(
            Application.objects.filter(
                pk__in=[a.pk for a in self.apps.values()], locked=True
            ).values_list("slug", flat=True)
        )
        # Each deploy's build attempts, oldest first: (id, status, queue_id).
        self.builds = {}
        for build_id, pk, status, queue_id in (
            Build.objects.filter(deploy_id__in=list(self.app_of))
            .order_by("attempt")
            .values_list("pk", "deploy_id", "status", "queue_id")
        ):
            self.builds.setdefault(pk, []).append((build_id, status, queue_id))
        self.awaiting_report = [
            build_id
            for pk in self.in_state(State.BUILDING)
            for build_id, status, queue_id in self.builds.get(pk, [])
            if status == BuildStatus.RUNNING and queue_id
        ]

    def check_timeline(self) -> None:
        """Replay the new events: the table, the chain, one holder, FIFO."""
        replay = self.replay
        events = (
            DeployEvent.objects.filter(deploy_id__in=list(self.app_of), id__gt=replay.last_event_id)
            .exclude(from_state=F("to_state"))  # notes on the timeline
            .order_by("id")
            .values_list("id", "deploy_id", "from_state", "to_state")
        )
        for event_id, pk, from_state, to_state in events:
            app, mode = self.app_of[pk], self.rows[pk]["mode"]
            replay.last_event_id = event_id
            FIGURES[f"move {from_state or '-'} -> {to_state}"] += 1
            if not from_state:
                assert to_state == State.QUEUED and pk not in replay.state, (pk, to_state)
                replay.state[pk] = to_state
                replay.queued[app].append(pk)
                continue
            assert replay.state.get(pk) == from_state, f"#{pk}: chain broken at {event_id}"
            assert from_state not in FINAL_STATES, f"#{pk} moved on from final {from_state}"
            assert is_allowed(from_state, to_state, mode), f"#{pk} {from_state}->{to_state}"
            if from_state == State.QUEUED:
                assert replay.queued[app][0] == pk or to_state == State.CANCELLED, (
                    f"#{pk} took {app}'s slot ahead of {replay.queued[app][0]}"
                )
                replay.queued[app].remove(pk)
            if to_state in SLOT_STATES and from_state not in SLOT_STATES:
                assert replay.holder[app] is None, (
                    f"#{pk} took {app}'s slot while #{replay.holder[app]} held it"
                )
                replay.holder[app] = pk
            if from_state in SLOT_STATES and to_state not in SLOT_STATES:
                replay.holder[app] = None
            if (from_state, to_state) == (State.VERIFYING, State.MERGING_TO_DEFAULT):
                replay.soaked.add(pk)
            if (from_state, to_state) == (State.BUILDING, State.MERGING_TO_DEFAULT):
                replay.built_to_merge.add(pk)
            replay.state[pk] = to_state
        for pk, row in self.rows.items():
            assert replay.state[pk] == row["state"], f"#{pk}: row and timeline disagree"

    def check_one_holder(self) -> None:
        doubled = (
            Deploy.objects.filter(pk__in=list(self.app_of), state__in=SLOT_STATES)
            .values("application")
            .annotate(holders=Count("id"))
            .filter(holders__gt=1)
        )
        assert not doubled.exists(), list(doubled)

    def check_finals_stay_final(self) -> None:
        for pk, row in self.rows.items():
            if pk in self.finals:
                assert row["state"] == self.finals[pk], f"#{pk} left {self.finals[pk]}"
            elif row["state"] in FINAL_STATES:
                self.finals[pk] = row["state"]

    def check_everyone_waits_for_a_reason(self, *, allow_lost: bool = True) -> None:
        messages = self.messages()
        lost = self.lost if allow_lost else set()
        for pk, row in self.rows.items():
            state, app = row["state"], self.app_of[pk]
            unfinished = [
                (status, queue_id)
                for _, status, queue_id in self.builds.get(pk, [])
                if status in UNFINISHED_BUILD_STATUSES
            ]
            assert len(unfinished) <= 1, f"#{pk} runs two builds at once: {unfinished}"
            if state in FINAL_STATES:
                # A cancel's abort may still be on its way; nothing else leaves a build running.
                assert not unfinished or ("builds.tasks.abort_builds", pk) in messages, (
                    f"#{pk} is {state} with build {unfinished} left running"
                )
                continue
            if state == State.QUEUED:
                assert (
                    app in self.locked
                    or self.replay.holder[app] is not None
                    or app in self.lost_handoff
                ), f"#{pk} waits in {app}'s queue with the slot free and unlocked"
            elif state == State.BUILD_FAILED:
                assert row["held_until"] is not None, f"#{pk} holds the slot with no window"
            elif state == State.BUILDING:
                pending = any(s == BuildStatus.PENDING for s, _ in unfinished)
                at_backend = any(s == BuildStatus.RUNNING and q for s, q in unfinished)
                claimed = any(s == BuildStatus.RUNNING and not q for s, q in unfinished)
                step_queued = (STEP_TASKS[state], pk) in messages
                assert (
                    (pending and (step_queued or pk in lost))
                    or at_backend  # the notification or the build poller will end it
                    or (claimed and pk in lost)
                ), f"#{pk} is building with nothing to build it: {unfinished}"
            else:
                assert (STEP_TASKS[state], pk) in messages or pk in lost, (
                    f"#{pk} holds {app}'s slot in {state} with no step on its way"
                )

    def check_nothing_merged_unearned(self) -> None:
        for app, remote in self.remotes.items():
            pushed = Counter(p.deploy_id for p in remote.pushes)
            for push in remote.pushes:
                assert push.deploy_id is not None, "a candidate nobody owns was pushed"
                assert self.app_of[push.deploy_id] == app
                assert push.state == State.MERGING_TO_DEFAULT, f"pushed from {push.state}"
                assert push.build_passed, f"#{push.deploy_id} pushed without a passed build"
                if self.rows[push.deploy_id]["mode"] == Mode.DEPLOY and APPS[app]["rollout"]:
                    assert push.soaked, f"#{push.deploy_id} pushed before its rollout and soak"
                assert self.rows[push.deploy_id]["state"] in SUCCESS_STATES
                assert pushed[push.deploy_id] == 1, f"#{push.deploy_id} pushed twice"
        for pk in self.in_state(*SUCCESS_STATES):
            app, row = self.app_of[pk], self.rows[pk]
            assert self.remotes[app].contains(row["candidate_sha"]), f"#{pk} not on main"
            latest = self.builds.get(pk, [(None, "no build", None)])[-1][1]
            assert latest == BuildStatus.SUCCEEDED, f"#{pk} shipped, its last build {latest}"
            if row["mode"] == Mode.DEPLOY and APPS[app]["rollout"]:
                assert pk in self.replay.soaked, f"#{pk} succeeded without a soak"
            else:
                assert pk in self.replay.built_to_merge, f"#{pk} merged without its build"

    # ------------------------------------------------------------------------- teardown

    def teardown(self):
        try:
            if sys.exc_info()[0] is None:  # a failing step is reported as it is
                self.drain()
        finally:
            forget_everything()
            SlotMachine.current = None

    def drain(self) -> None:
        """Everything to rest: people unlock, builds pass, ECS is happy, holds run out."""
        self.stall_everything()
        self.beat()
        self.lost.clear()
        self.come_to_rest()
        # At rest, only a failed build keeps its slot, with its queue behind it.
        for pk, row in self.rows.items():
            holder = self.replay.holder[self.app_of[pk]]
            behind_a_red_build = (
                row["state"] == State.QUEUED
                and holder is not None
                and self.rows[holder]["state"] == State.BUILD_FAILED
            )
            assert (
                row["state"] in FINAL_STATES
                or row["state"] == State.BUILD_FAILED
                or behind_a_red_build
            ), f"#{pk} rests in {row['state']}"
        for _ in range(len(self.app_of) + 1):
            held = self.in_state(State.BUILD_FAILED)
            if not held:
                break
            Deploy.objects.filter(pk__in=held).update(held_until=F("held_until") - A_DAY)
            self.beat()
            self.come_to_rest()
        for pk, row in self.rows.items():
            assert row["state"] in FINAL_STATES, f"#{pk} never finished: {row['state']}"
            FIGURES[f"ended {row['state']}"] += 1

    def come_to_rest(self) -> None:
        for _ in range(500):
            progressed = False
            for app in sorted(self.locked):
                applications.unlock_application(self.apps[app], actor=self.users[1])
                progressed = True
            for build_id in self.awaiting_report:
                if build_id not in self.verdicts:
                    self.verdicts[build_id] = True
                    build = Build.objects.get(pk=build_id)
                    payload = {
                        "application": self.app_of[build.deploy_id],
                        "deploy_id": build.deploy_id,
                        "attempt": build.attempt,
                    }
                    hooks.accept_build_notification(payload, HOOK_SECRET)
                    progressed = True
            # ECS says yes, but every third rollout fails first and every other rollback is
            # stuck, so the drain walks the rollback paths as well.
            for pk in self.in_state(*WATCHING_STATES):
                state = self.rows[pk]["state"]
                answer = {
                    State.DEPLOYING: "fails" if pk % 3 == 0 else "out",
                    State.VERIFYING: "soak_over",
                    State.ROLLING_BACK: "stuck" if pk % 2 == 0 else "restored",
                }[state]
                if self.ecs.answers.get((pk, state)) != answer:
                    self.ecs.answers[(pk, state)] = answer
                    progressed = True
            if self.env.sent.release_later():
                progressed = True
            while self.env.sent.sent:
                self.run_task(*self.env.sent.sent.pop(0))
                progressed = True
            self.what_the_design_promises()
            self.check_everyone_waits_for_a_reason(allow_lost=False)
            if not progressed:
                return
        raise AssertionError("the deploys did not come to rest")


def forget_everything() -> None:
    Deploy.objects.all().delete()  # their events, builds and rollouts go with them
    Application.objects.all().delete()
    get_user_model().objects.filter(username__in=["alice", "bob"]).delete()


def slot_index_definition() -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = %s",
                ["one_slot_holder_per_application"],
            )
        else:
            cursor.execute(
                "SELECT sql FROM sqlite_master WHERE name = %s",
                ["one_slot_holder_per_application"],
            )
        row = cursor.fetchone()
    return row[0] if row else ""


# Real commits, not the usual test transaction: every atomic block in the code is a savepoint
# inside it, and after a few thousand of them PostgreSQL's subtransaction cache overflows and
# each query slows tenfold. Committing also runs on_commit callbacks exactly where a worker's
# commit would. Each example deletes its rows instead (forget_everything).
@pytest.mark.django_db(transaction=True)
def test_the_slot_and_the_state_machine_hold_under_any_interleaving(monkeypatch, sent_tasks):
    # The one-holder rule is the database's, not only Python's: a partial unique index.
    index = slot_index_definition().upper()
    assert "UNIQUE" in index and "WHERE" in index, index

    def machine():
        assert SlotMachine.current is not None
        return SlotMachine.current

    # The boundaries: git, the build backend, ECS. Everything inside them is the real code.
    def fake_repository(app):
        return FakeRepository(machine().remotes[app.slug])

    monkeypatch.setattr(pipeline, "repository_for", fake_repository)
    monkeypatch.setattr(actions, "repository_for", fake_repository)
    monkeypatch.setattr(building, "backend_for", lambda name: machine().backend)
    monkeypatch.setattr(forward, "has_rollout_target", lambda app: APPS[app.slug]["rollout"])
    monkeypatch.setattr(forward, "deploy_step", lambda d: machine().ecs.deploy_step(d))
    monkeypatch.setattr(soak, "verify_step", lambda d: machine().ecs.verify_step(d))
    monkeypatch.setattr(back, "rollback_step", lambda d: machine().ecs.rollback_step(d))
    for slug in APPS:
        monkeypatch.setenv(f"FC_HOOK_SECRET_{slug.upper()}", HOOK_SECRET)
    for name in list(os.environ):
        if name.startswith("FC_WEBHOOK_URL_"):
            monkeypatch.delenv(name)  # no chat posts: not what this test is about
    current_app.loader.import_default_modules()  # the tasks, as a worker loads them

    SlotMachine.env = Env(sent=sent_tasks)
    FIGURES.clear()
    run_state_machine_as_test(
        SlotMachine,
        settings=settings(
            # About 750 steps: some 25 s on two quiet cores, PostgreSQL included; make soak
            # asks for 150 examples.
            max_examples=int(os.environ.get("SLOT_EXAMPLES", "25")),
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    print("\nslot stateful figures:")
    for name, value in sorted(FIGURES.items()):
        print(f"  {name}: {value}")
    # For docs/reliability.md.
    figures_dir = django_settings.BASE_DIR / "build" / "reliability"
    figures_dir.mkdir(parents=True, exist_ok=True)
    (figures_dir / "slot-stateful.json").write_text(
        json.dumps(dict(sorted(FIGURES.items())), indent=2) + "\n"
    )
    # Not a vacuous run: the drain alone makes most of these, the rules the rest.
    for seen in ("ended merged", "ended succeeded", "ended merge_conflict", "ended cancelled"):
        assert FIGURES[seen], f"no example {seen}: {dict(FIGURES)}"
