"""A deploy's rollout as the pages show it: per service, the side (or both sides, while the
service dual runs) each rollout row is on, with a legacy job's build link, result and log.

The deploy page lists every service of the rollout with its sides; the dashboard shows only
the services that run on both, beside the holder's progress bar.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clusters.models import LegacyRun, PlacementKind

from .docker_batches import Batch, batches_of
from .models import RolloutStatus, ServiceRollout

# How much of the end of a legacy job's log the deploy page shows: the end says why it failed,
# and the rollout part of the page is sent again on every live refresh.
LEGACY_LOG_TAIL_CHARS = 2 * 1024


@dataclass
class Side:
    rollout: ServiceRollout
    kind: str  # "ecs", "legacy", "docker"
    where: str  # "demo-shop-web on demo", "legacy job deploy-web", "web on docker host box-1"
    run: LegacyRun | None = None  # the legacy job's latest run for this deploy
    log_tail: str = ""
    log_cut: bool = False

    @property
    def is_legacy(self) -> bool:
        return self.kind == PlacementKind.LEGACY

    @property
    def side_word(self) -> str:
        return self.rollout.placement.side

    @property
    def out(self) -> bool:
        return self.rollout.status == RolloutStatus.DONE

    @property
    def is_docker(self) -> bool:
        return self.kind == PlacementKind.DOCKER

    @property
    def batches(self) -> list[Batch]:
        """A Docker placement's container batches, from what the target wrote on the row."""
        return batches_of(self.rollout.detail) if self.is_docker else []


@dataclass
class ServiceSides:
    name: str
    phase: int
    sides: list[Side] = field(default_factory=list)

    @property
    def both(self) -> bool:
        """On the legacy side and another at once: the service dual runs in this deploy."""
        kinds = {side.is_legacy for side in self.sides}
        return kinds == {True, False}


def where(rollout: ServiceRollout) -> str:
    placement = rollout.placement
    if placement.kind == PlacementKind.LEGACY:
        return f"legacy job {placement.legacy_job}"
    if placement.kind == PlacementKind.ECS:
        cluster = placement.cluster.name if placement.cluster else "?"
        return f"{placement.ecs_service_name} on {cluster}"
    if placement.kind == PlacementKind.DOCKER:
        cluster = placement.cluster.name if placement.cluster else "?"
        return f"{placement.service.name} on docker host {cluster}"
    return placement.get_kind_display()


def services_of(
    rollouts: list[ServiceRollout],
    *,
    with_logs: bool = True,
    runs: dict[int, LegacyRun] | None = None,
) -> list[ServiceSides]:
    """The rollout's services by phase, each with its sides (the ECS side first). `runs`:
    the legacy runs already read, by rollout row (else read here)."""
    if runs is None:
        runs = _legacy_runs(rollouts, with_logs=with_logs)
    grouped: dict[tuple[int, str], ServiceSides] = {}
    for rollout in sorted(rollouts, key=_order):
        service = rollout.placement.service
        entry = grouped.setdefault(
            (rollout.phase, service.name), ServiceSides(service.name, rollout.phase)
        )
        side = Side(rollout, rollout.placement.kind, where(rollout), runs.get(rollout.pk))
        if side.run is not None and with_logs:
            log = side.run.log or ""
            side.log_tail = log[-LEGACY_LOG_TAIL_CHARS:]
            side.log_cut = len(log) > LEGACY_LOG_TAIL_CHARS
        entry.sides.append(side)
    return list(grouped.values())


def dual_services_of(
    rollouts_by_deploy: dict[int, list[ServiceRollout]],
) -> dict[int, list[ServiceSides]]:
    """Each deploy's services that go out on both sides (the dashboard's holders), their
    legacy runs read in one query for all of them, not one per deploy."""
    every = [rollout for rollouts in rollouts_by_deploy.values() for rollout in rollouts]
    runs = _legacy_runs(every, with_logs=False)
    return {
        deploy_id: [s for s in services_of(rollouts, with_logs=False, runs=runs) if s.both]
        for deploy_id, rollouts in rollouts_by_deploy.items()
    }


def _order(rollout: ServiceRollout) -> tuple:
    return (rollout.phase, rollout.placement.service.name, rollout.placement.kind == "legacy")


def _handles(rollout: ServiceRollout) -> list[int]:
    """The legacy runs a row's handles name, the restore's first (it is the later run)."""
    return [int(h) for h in (rollout.restore_handle, rollout.start_handle) if h.isdigit()]


def _legacy_runs(rollouts: list[ServiceRollout], *, with_logs: bool) -> dict[int, LegacyRun]:
    """Each legacy row's latest run, in one query."""
    wanted = {r.pk: _handles(r) for r in rollouts if r.placement.kind == PlacementKind.LEGACY}
    ids = {run_id for found in wanted.values() for run_id in found}
    if not ids:
        return {}
    runs = LegacyRun.objects.filter(pk__in=ids)
    if not with_logs:
        runs = runs.defer("log")
    by_id = {run.pk: run for run in runs}
    latest = {}
    for rollout_id, found in wanted.items():
        for run_id in found:
            if run_id in by_id:
                latest[rollout_id] = by_id[run_id]
                break
    return latest
