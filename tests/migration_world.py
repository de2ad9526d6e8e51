"""A migration plan to test with, built as the config file would make it, and the proof a
cut over needs made as deploys make it: succeeded deploys whose rollout rows on the ECS
placements are done."""

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from clusters.models import (
    Cluster,
    MigrationPhase,
    MigrationPlan,
    Placement,
    PlacementKind,
    ProcessType,
    Service,
)
from deploys.models import Application, Deploy, RolloutStatus, ServiceRollout
from deploys.states import State

# The real plan's shape: one low-risk process, the workers, the pollers, static and webs last.
PHASES = (
    ("low-risk", [("cron", ProcessType.OTHER)]),
    ("workers", [("worker", ProcessType.WORKER)]),
    ("pollers", [("poller", ProcessType.POLLER)]),
    ("static and webs", [("static", ProcessType.STATIC), ("web", ProcessType.WEB)]),
)


@dataclass
class World:
    application: Application
    plan: MigrationPlan
    phases: list[MigrationPhase]
    services: dict[str, Service]
    ecs: dict[str, Placement]
    legacy: dict[str, Placement]

    def phase(self, position: int) -> MigrationPhase:
        return MigrationPhase.objects.get(plan=self.plan, position=position)


def make_world(
    slug: str = "shop", *, proof_deploys: int = 3, proof_hours: int = 24, phases=PHASES
) -> World:
    application = Application.objects.create(
        slug=slug, name=slug.title(), git_remote_url="/nowhere.git"
    )
    cluster, _ = Cluster.objects.get_or_create(name="prod-eu", region="eu-west-1")
    plan = MigrationPlan.objects.create(
        application=application, proof_deploys=proof_deploys, proof_hours=proof_hours
    )
    made_phases, services, ecs, legacy = [], {}, {}, {}
    for position, (name, members) in enumerate(phases, start=1):
        phase = MigrationPhase.objects.create(plan=plan, position=position, name=name)
        made_phases.append(phase)
        for service_name, process_type in members:
            service = Service.objects.create(
                application=application,
                name=service_name,
                process_type=process_type,
                phase=position,
                migration_phase=phase,
            )
            services[service_name] = service
            ecs[service_name] = Placement.objects.create(
                service=service,
                cluster=cluster,
                ecs_service_name=f"{slug}-{service_name}",
                container_name="app",
            )
            legacy[service_name] = Placement.objects.create(
                service=service, kind=PlacementKind.LEGACY, legacy_job=f"deploy-{service_name}"
            )
    return World(application, plan, made_phases, services, ecs, legacy)


def deploy_of(world: World, user, placements, *, state=State.SUCCEEDED, status=None) -> Deploy:
    """A deploy in `state` with a rollout row on each placement (done, unless `status`)."""
    final = state in (State.SUCCEEDED, State.ROLLED_BACK, State.FAILED)
    now = timezone.now()
    deploy = Deploy.objects.create(
        application=world.application,
        branch=f"feature/{Deploy.objects.count() + 1}",
        requester=user,
        state=state,
        candidate_sha="c" * 40,
        started_at=now,
        finished_at=now if final else None,
    )
    for placement in placements:
        ServiceRollout.objects.create(
            deploy=deploy,
            placement=placement,
            phase=placement.service.phase,
            status=status or (RolloutStatus.DONE if final else RolloutStatus.UPDATING),
            started_at=now,
            finished_at=now if final else None,
        )
    return deploy


def prove(world: World, user, position: int, *, deploys: int | None = None, hours=None) -> None:
    """Give the phase's ECS side its proof: `deploys` succeeded deploys on both sides of each
    of its services (the plan's number unless said), and its dual running begun `hours` ago
    (the plan's hours and one more unless said)."""
    phase = world.phase(position)
    hours = world.plan.proof_hours + 1 if hours is None else hours
    MigrationPhase.objects.filter(pk=phase.pk).update(
        state_since=timezone.now() - timedelta(hours=hours)
    )
    placements = [
        placement
        for service in phase.services.all()
        for placement in (world.ecs[service.name], world.legacy[service.name])
    ]
    for _ in range(world.plan.proof_deploys if deploys is None else deploys):
        deploy_of(world, user, placements)
