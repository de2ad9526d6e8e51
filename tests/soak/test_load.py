"""Load: hundreds of deploys queued at once across many applications, three workers.

300 deploys across 30 applications (FC_SOAK_SHORT=1: 30 across 5) are queued through the API
in one go, interleaved, ten branches per application (six in the short run). Most are
merge_only on copies of feature/clean-merge; some applications build on the stand-in Jenkins,
a few roll out to the simulated ECS in deploy mode; a few branches fail their build, conflict,
or run out of memory on ECS, so every ending is met under load. Three prefork workers
(--concurrency=2), each with its own FC_WORK_DIR, share the work; beat's safety net and build
poller run from the test's loop.

Every deploy must reach exactly the ending its branch calls for (none stranded, none lost),
the slot invariants must hold (one holder, FIFO), nothing unbuilt is merged, each remote's
main is exactly its merged candidates, and some candidates were built on a machine that did
not make them (fetched from refs/fatcontroller/candidates/<id>).
"""

import time

import pytest

from deploys.models import Deploy
from deploys.states import Mode, State
from devtools.demo import OOM_BRANCH

from . import world

pytestmark = [pytest.mark.soak, pytest.mark.soak_short]

if world.SHORT:
    APPS, PER_APP, ECS_APPS, TIMEOUT = 5, 6, 1, 180
else:
    APPS, PER_APP, ECS_APPS, TIMEOUT = 30, 10, 3, 900

BROKEN, CONFLICTING = "feature/broken-build", "feature/conflicting-prices"


def plan_applications(soak):
    """slug -> (application, mode, [(branch, expected ending)])."""
    plans = {}
    for i in range(APPS):
        slug = f"soak-{i:02d}"
        clean = [world.clean_branch(n) for n in range(1, PER_APP + 1)]
        if i < ECS_APPS:
            app = soak.application(slug, ecs=True)
            branches = [(b, State.SUCCEEDED) for b in clean]
            if i == 0:
                branches[2] = (OOM_BRANCH, State.ROLLED_BACK)  # its tasks run out of memory
            plans[slug] = (app, Mode.DEPLOY, branches)
        elif i % 3 == 1:
            app = soak.application(slug, backend="jenkins")
            # Jenkins' 4th build of the job fails: that deploy's slot is held, then given up.
            soak.jenkins.plan(
                app.jenkins_job_name, "succeed", "succeed", "succeed", "fail", "succeed"
            )
            branches = [(b, State.MERGED) for b in clean]
            branches[3] = (branches[3][0], State.ABANDONED)
            plans[slug] = (app, Mode.MERGE_ONLY, branches)
        else:
            app = soak.application(slug)
            branches = [(b, State.MERGED) for b in clean]
            if i % 4 == 3:
                branches[1] = (BROKEN, State.ABANDONED)  # its unit tests fail
                branches[4] = (CONFLICTING, State.MERGE_CONFLICT)
            plans[slug] = (app, Mode.MERGE_ONLY, branches)
    return plans


def test_hundreds_of_deploys_queued_at_once_all_end_as_their_branches_say(soak):
    plans = plan_applications(soak)
    soak.machines.start_ready("machine-a", "machine-b", "machine-c")

    expected = {}
    began = time.monotonic()
    for n in range(PER_APP):  # interleaved: every application's first, then every second...
        for app, mode, branches in plans.values():
            branch, ending = branches[n]
            expected[world.queue(soak.api, app, branch, mode)] = ending
    queued_in = time.monotonic() - began

    soak.beat.until_final(expected, TIMEOUT)
    wall = time.monotonic() - began

    endings = dict(Deploy.objects.filter(pk__in=expected).values_list("pk", "state"))
    lost = sorted(set(expected) - set(endings))
    assert not lost
    wrong = {pk: (endings[pk], want) for pk, want in expected.items() if endings[pk] != want}
    assert not wrong, "\n".join(world.timeline(pk) for pk in list(wrong)[:5])
    figures = world.check_invariants(soak.apps, soak.beat)
    deploys = list(Deploy.objects.filter(pk__in=expected))
    elsewhere = world.built_elsewhere(soak.machines, deploys)
    assert elsewhere > 0  # candidates made on one machine were built on another
    assert all(w.process.poll() is None for w in soak.machines.started)

    figures.update(
        {
            "applications": APPS,
            "deploys_queued": len(expected),
            "lost": len(lost),
            "workers": len(soak.machines.started),
            "worker_concurrency": 2,
            "queued_in_seconds": round(queued_in, 1),
            "wall_seconds": round(wall, 1),
            "speedup_serial_over_wall": round(figures["serial_sum_seconds"] / wall, 2),
            "built_on_another_machine": elsewhere,
            "local_builds": sum(1 for d in deploys if d.builds.filter(backend="local").exists()),
            "jenkins_builds": sum(
                1 for d in deploys if d.builds.filter(backend="jenkins").exists()
            ),
            "ecs_rollouts": sum(1 for d in deploys if d.rollouts.exists()),
        }
    )
    world.record("load", "queued_at_once", figures)
