"""The pages bench's database: 100,000 deploys over 1, 10 or 50 applications (bench/pages.py).

Written with bulk_create in batches in one transaction, the same data every run for the same
number of applications:
- 50 people (no passwords: each viewer's session is made with the test client's force_login
  and its cookie handed to the HTTP client);
- the applications, each with three services in phases 1 to 3 on one cluster; 100,000
  deploys over them, newest last, about 6 minutes apart (a year of history), mostly final
  (succeeded, merged, cancelled, merge_conflict, rolled_back, failed, abandoned,
  rollback_failed), each with 1-3 commits; per application one slot holder (building,
  deploying or verifying) and 3 queued;
- the newest 3,000 final deploys with a timeline (5-8 events) and one build with a short log;
- the deploy page's deploy: a finished (succeeded) deploy of the first application, 20
  events, 2 builds (a failed one with a 120 KB log, longer than the page's 64 KB tail, and a
  succeeded one with 40 KB) and a rollout per service of its application, phase by phase.
"""

import random
from datetime import timedelta

DEPLOYS = 100_000
PEOPLE = 50
TOPICS = "checkout basket search payments login invoices emails cache images api".split()
KINDS = ("web", "api", "worker", "jobs", "admin")  # with TOPICS: up to 50 applications
HOLDER_STATES = ("deploying", "building", "verifying")  # one per application, in turn
QUEUED_PER_APPLICATION = 3
WITH_TIMELINE = 3_000  # the newest final deploys with events and a build
BATCH = 5_000
SPACING = timedelta(minutes=6)
NOTES = ("hotfix for the checkout", "needs the migration first", "after the freeze")
FINAL_WEIGHTS = {
    "succeeded": 52,
    "merged": 18,
    "cancelled": 8,
    "merge_conflict": 7,
    "rolled_back": 5,
    "failed": 4,
    "abandoned": 4,
    "rollback_failed": 2,
}


def application_names(count: int) -> list[tuple[str, str]]:
    """(slug, name) of `count` applications: checkout-web, basket-web, ... then -api, ..."""
    if not 1 <= count <= len(TOPICS) * len(KINDS):
        raise ValueError(f"1 to {len(TOPICS) * len(KINDS)} applications, not {count}")
    pairs = [(topic, kind) for kind in KINDS for topic in TOPICS][:count]
    return [(f"{topic}-{kind}", f"{topic.capitalize()} {kind}") for topic, kind in pairs]


def seed(applications: int) -> dict:
    """The database described in the module's docstring; returns what the pages need."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction
    from django.db.models import F
    from django.db.models.functions import Coalesce
    from django.utils import timezone

    from builds.models import Build
    from clusters.models import Cluster, Placement, ProcessType, Service
    from deploys.models import Application, Deploy, DeployEvent

    rng = random.Random(20261127)  # the same data every run
    now = timezone.now().replace(microsecond=0)
    User = get_user_model()
    with transaction.atomic():
        names = [f"{first}.{last}" for first, last in _people(rng)]
        User.objects.bulk_create(
            User(username=name, email=f"{name}@example.com", password=make_password(None))
            for name in names
        )
        people = list(User.objects.order_by("id"))
        # Some people deploy much more than others.
        weights = [1 / (n + 1) ** 0.7 for n in range(len(people))]
        apps = [
            Application.objects.create(
                slug=slug,
                name=name,
                git_remote_url=f"git@example.com:acme/{slug}.git",
                image_repository=f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/{slug}",
            )
            for slug, name in application_names(applications)
        ]

        active = len(apps) * (1 + QUEUED_PER_APPLICATION)
        finals = DEPLOYS - active
        target_index = finals - 40  # a recent finished deploy
        states, state_weights = zip(*FINAL_WEIGHTS.items(), strict=True)
        batch = []
        for n in range(DEPLOYS):
            if n < finals:
                finished = now - SPACING * (finals - n) + timedelta(seconds=rng.randint(0, 300))
                state = rng.choices(states, state_weights)[0]
                app = rng.choice(apps)
                deploy = _final_deploy(rng, app, state, finished, people, weights)
                if n == target_index:
                    _make_target(deploy, apps[0], people, rng)
            else:
                k = n - finals
                app, place = apps[k % len(apps)], k // len(apps)
                deploy = Deploy(
                    application=app,
                    branch=f"feature/{app.slug}-next-{place}",
                    mode="deploy",
                    requester=rng.choices(people, weights)[0],
                    state=HOLDER_STATES[k % len(HOLDER_STATES)] if place == 0 else "queued",
                    started_at=now - timedelta(minutes=4) if place == 0 else None,
                    commits=_commits(rng, people),
                )
            batch.append(deploy)
            if len(batch) == BATCH:
                Deploy.objects.bulk_create(batch)
                batch = []
        Deploy.objects.bulk_create(batch)
        # created_at and updated_at are set to now by bulk_create: give the history its times.
        Deploy.objects.filter(finished_at__isnull=False).update(
            created_at=Coalesce("started_at", "finished_at"), updated_at=F("finished_at")
        )
        ids = list(Deploy.objects.order_by("id").values_list("id", flat=True))
        target = Deploy.objects.get(pk=ids[target_index])

        timeline = list(
            Deploy.objects.filter(finished_at__isnull=False)
            .exclude(pk=target.pk)
            .order_by("-id")
            .values_list("id", "state", "requester_id")[:WITH_TIMELINE]
        )
        events, builds = [], []
        for deploy_id, state, requester_id in timeline:
            events.extend(_events(deploy_id, state, requester_id))
            builds.append(
                Build(
                    deploy_id=deploy_id,
                    attempt=1,
                    status="failed" if state == "failed" else "succeeded",
                    image_tag=f"deploy-{deploy_id}-1",
                    summary="make test: exit 0",
                    log=_log(rng, 2_000),
                )
            )
        DeployEvent.objects.bulk_create(events, batch_size=BATCH)
        Build.objects.bulk_create(builds, batch_size=1_000)

        _target_timeline(target, people, rng)
        cluster = Cluster.objects.create(name="production", region="eu-west-1")
        for app in apps:
            for phase, (name, kind) in enumerate(
                (
                    ("worker", ProcessType.WORKER),
                    ("static", ProcessType.STATIC),
                    ("web", ProcessType.WEB),
                ),
                start=1,
            ):
                service = Service.objects.create(
                    application=app, name=f"{app.slug}-{name}", process_type=kind, phase=phase
                )
                Placement.objects.create(
                    service=service,
                    cluster=cluster,
                    ecs_service_name=service.name,
                    container_name="app",
                )
        _target_rollouts(target, apps[0], rng)
        holders = dict(
            Deploy.objects.filter(state__in=HOLDER_STATES).values_list("application_id", "pk")
        )
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return {
        "people": people,
        "applications": apps,
        "target": target,
        "holders": [holders[app.pk] for app in apps],
    }


def _target_rollouts(target, app, rng) -> None:
    """The deploy page's rollouts: one per service of its application, done, phase by phase."""
    from clusters.models import Placement
    from deploys.models import ServiceRollout

    placements = Placement.objects.filter(service__application=app).select_related("service")
    for n, placement in enumerate(placements.order_by("service__phase")):
        service = placement.service
        family = f"arn:aws:ecs:eu-west-1:123456789012:task-definition/{service.name}"
        ServiceRollout.objects.create(
            deploy=target,
            placement=placement,
            phase=service.phase,
            status="done",
            revision_before=f"{family}:{411 + n}",
            revision_made=f"{family}:{412 + n}",
            image=f"{app.image_repository}:deploy-{target.pk}-2",
            start_handle=f"ecs-svc/{rng.getrandbits(60)}",
            running_count=4,
            desired_count=4,
            message="steady",
            started_at=target.finished_at - timedelta(minutes=12 - 3 * n),
            finished_at=target.finished_at - timedelta(minutes=10 - 3 * n),
        )


def _final_deploy(rng, app, state, finished, people, weights):
    from deploys.models import Deploy

    if state == "merged":
        mode = "merge_only"
    elif state == "succeeded" and rng.random() < 0.02:
        mode = "restore"
    elif state in ("rolled_back", "rollback_failed") or rng.random() < 0.8:
        mode = "deploy"
    else:
        mode = "merge_only"
    never_started = state == "cancelled" and rng.random() < 0.6
    started = finished - timedelta(seconds=rng.randint(120, 1800))
    return Deploy(
        application=app,
        branch=_branch(rng),
        mode=mode,
        requester=rng.choices(people, weights)[0],
        note=rng.choice(NOTES) if rng.random() < 0.1 else "",
        state=state,
        head_sha="" if never_started else f"{rng.getrandbits(160):040x}",
        candidate_sha="" if never_started or mode == "restore" else f"{rng.getrandbits(160):040x}",
        commits=[] if never_started else _commits(rng, people),
        started_at=None if never_started else started,
        finished_at=finished,
    )


def _make_target(deploy, app, people, rng) -> None:
    deploy.application = app
    deploy.branch = "feature/checkout-address-lookup"
    deploy.mode = "deploy"
    deploy.state = "succeeded"
    deploy.requester = people[1]
    deploy.note = "address lookup behind the flag; retried after a flaky test"
    deploy.head_sha = f"{rng.getrandbits(160):040x}"
    deploy.candidate_sha = f"{rng.getrandbits(160):040x}"
    deploy.commits = _commits(rng, people, count=6)
    deploy.started_at = deploy.finished_at - timedelta(minutes=40)


def _target_timeline(target, people, rng) -> None:
    """20 events, 2 builds (the first failed, retried by its owner), over 40 minutes."""
    from builds.models import Build
    from deploys.models import DeployEvent

    owner = target.requester
    steps = [
        ("", "queued", owner, "queued feature/checkout-address-lookup (deploy)"),
        ("queued", "merging", None, "took the merge slot"),
        ("merging", "merging", None, "fetched origin: 6 commits ahead of main"),
        ("merging", "building", None, f"candidate {target.candidate_sha[:12]} made"),
        ("building", "building", None, "build 1 started on the local build runner"),
        ("building", "build_failed", None, "build 1 failed: make test: exit 2"),
        ("build_failed", "build_failed", None, "the slot is held for 10 minutes"),
        ("build_failed", "building", owner, "build 2 started (retry)"),
        ("building", "building", None, f"image pushed: deploy-{target.pk}-2"),
        ("building", "deploying", None, "build 2 passed"),
        ("deploying", "deploying", None, "the image is in the repository"),
        ("deploying", "deploying", None, "phase 1: shop-web, shop-worker updating"),
        ("deploying", "deploying", None, "phase 1: shop-web 4/4 running"),
        ("deploying", "deploying", None, "phase 1: shop-worker 4/4 running"),
        ("deploying", "deploying", None, "phase 2: shop-web-eu, shop-worker-eu updating"),
        ("deploying", "deploying", None, "phase 2: shop-web-eu 4/4 running"),
        ("deploying", "verifying", None, "phase 2 done: soaking for 60 s"),
        ("verifying", "verifying", None, "health checks green for 60 s"),
        ("verifying", "merging_to_default", None, "soak over"),
        ("merging_to_default", "succeeded", None, "main is now " + target.candidate_sha[:12]),
    ]
    events = DeployEvent.objects.bulk_create(
        DeployEvent(deploy=target, from_state=f, to_state=t, actor=a, message=m)
        for f, t, a, m in steps
    )
    for n, event in enumerate(events):
        at = target.started_at + (target.finished_at - target.started_at) * n / len(events)
        DeployEvent.objects.filter(pk=event.pk).update(created_at=at)
    Build.objects.bulk_create(
        [
            Build(
                deploy=target,
                attempt=1,
                status="failed",
                image_tag=f"deploy-{target.pk}-1",
                summary="make test: exit 2",
                log=_log(rng, 120_000, fail=True),
                started_at=target.started_at + timedelta(minutes=2),
                finished_at=target.started_at + timedelta(minutes=12),
            ),
            Build(
                deploy=target,
                attempt=2,
                status="succeeded",
                image_tag=f"deploy-{target.pk}-2",
                summary="make test: exit 0",
                log=_log(rng, 40_000),
                started_at=target.started_at + timedelta(minutes=15),
                finished_at=target.started_at + timedelta(minutes=25),
            ),
        ]
    )


def _events(deploy_id: int, state: str, requester_id: int):
    from deploys.models import DeployEvent

    path = {
        "succeeded": ["merging", "building", "deploying", "verifying", "merging_to_default"],
        "merged": ["merging", "building", "merging_to_default"],
        "rolled_back": ["merging", "building", "deploying", "rolling_back"],
        "rollback_failed": ["merging", "building", "deploying", "rolling_back"],
        "merge_conflict": ["merging"],
        "failed": ["merging", "building"],
        "abandoned": ["merging", "building", "build_failed"],
        "cancelled": [],
    }[state]
    moves = ["queued", *path, state]
    events = [
        DeployEvent(
            deploy_id=deploy_id,
            actor_id=requester_id,
            from_state="",
            to_state="queued",
            message="queued",
        )
    ]
    for before, after in zip(moves, moves[1:], strict=False):
        events.append(
            DeployEvent(deploy_id=deploy_id, from_state=before, to_state=after, message=f"{after}")
        )
        if after == "building":
            events.append(
                DeployEvent(
                    deploy_id=deploy_id,
                    from_state=after,
                    to_state=after,
                    message="build 1 started on the local build runner",
                )
            )
    return events


def _people(rng):
    first = "ada alan barbara claude dennis edsger frances grace guido ken".split()
    last = "lovelace turing liskov shannon ritchie dijkstra allen hopper rossum thompson".split()
    pairs = [(f, n) for f in first for n in last]
    rng.shuffle(pairs)
    return pairs[:PEOPLE]


def _branch(rng) -> str:
    kind = rng.choice(("feature", "feature", "fix", "chore", "hotfix"))
    topic = rng.choice(
        "checkout basket search payments login invoices emails cache images api".split()
    )
    return f"{kind}/{topic}-{rng.randint(1, 9999)}"


def _commits(rng, people, count: int | None = None) -> list[dict]:
    subjects = (
        "Fix the rounding of totals",
        "Add the address lookup",
        "Say why the payment was refused",
        "Cache the search facets",
        "Bump boto3",
        "Test the refund path",
    )
    return [
        {
            "sha": f"{rng.getrandbits(160):040x}",
            "author": rng.choice(people).username,
            "subject": rng.choice(subjects),
        }
        for _ in range(count or rng.randint(1, 3))
    ]


def _log(rng, chars: int, *, fail: bool = False) -> str:
    lines, size, n = [], 0, 0
    while size < chars:
        n += 1
        line = f"tests/test_module_{n // 40:03d}.py::test_case_{n:05d} PASSED [{n % 100:3d}%]"
        lines.append(line)
        size += len(line) + 1
    if fail:
        lines.append("FAILED tests/test_checkout.py::test_address_lookup - TimeoutError")
    return "\n".join(lines) + "\n"
