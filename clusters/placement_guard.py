"""Who uses a placement, and so whether what it is and where it runs may change.

A placement's kind and its target (cluster and ECS service, or legacy job) are fixed, and it
cannot be deleted, while it is in use:

* a running deploy (one not in a final state) has a rollout on it: the rollout's ledger
  names it, and a restore must find the same target;
* its service is in a migration plan: the plan's phases say which side a deploy touches, so
  the sides must not change behind the plan's back. The admin counts a planned phase too; a
  config file counts only a phase beyond planned (the file is where a planned phase's
  services and placements are set, and a planned phase has touched no ECS side yet).

uses_of is the one place that says so; the admin (clusters/admin.py) and the config file's
apply (appconfig/apply.py) both ask it. The running deploys are read through the placement's
rollouts, as clusters/migration.py does: deploys know clusters, not the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from deploys.states import FINAL_STATES

from .models import MigrationPhase, MigrationState, Placement

# Where a person changes a placement that is fixed, said wherever one is refused.
WHERE_TO_CHANGE = (
    "change it in the application's config file (docs/app-config.md), "
    "or move its phase on the migration page (/applications/{slug}/migration/)"
)


@dataclass(frozen=True)
class PlacementUse:
    """What holds one placement in place: running deploys and its service's migration phase."""

    placement: Placement
    deploys: tuple[int, ...]  # running deploys with a rollout on it, by id
    phase: MigrationPhase | None  # the migration phase of its service, if any

    @property
    def in_flight(self) -> bool:
        """Is its service's migration phase beyond planned?"""
        return self.phase is not None and self.phase.state != MigrationState.PLANNED

    def reasons(self, *, planned_too: bool) -> list[str]:
        """Why it is fixed ([] when it is not); planned_too counts a planned phase as well."""
        reasons = [f"deploy #{pk} is rolling it out" for pk in self.deploys]
        if self.phase is not None and (planned_too or self.in_flight):
            reasons.append(
                f"its service {self.placement.service.name!r} is in phase "
                f"{self.phase.position} ({self.phase.name}) of the migration plan, which is "
                f"{self.phase.get_state_display().lower()}"
            )
        return reasons

    def where_to_change(self) -> str:
        return WHERE_TO_CHANGE.format(slug=self.placement.service.application.slug)


def uses_of(placements: Iterable[Placement]) -> dict[int, PlacementUse]:
    """Each placement's use, by id, read fresh from the database in two queries."""
    ids = [p.pk for p in placements if p.pk is not None]
    rollouts = Placement._meta.get_field("rollouts").related_model
    running: dict[int, set[int]] = {}
    for placement_id, deploy_id in (
        rollouts.objects.filter(placement_id__in=ids)
        .exclude(deploy__state__in=FINAL_STATES)
        .values_list("placement_id", "deploy_id")
    ):
        running.setdefault(placement_id, set()).add(deploy_id)
    return {
        p.pk: PlacementUse(
            placement=p,
            deploys=tuple(sorted(running.get(p.pk, ()))),
            phase=p.service.migration_phase,
        )
        for p in Placement.objects.filter(pk__in=ids).select_related(
            "service__migration_phase", "service__application"
        )
    }


def use_of(placement: Placement) -> PlacementUse:
    return uses_of([placement])[placement.pk]
