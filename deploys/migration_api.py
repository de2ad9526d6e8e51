"""The migration plan's API: GET an application's plan, POST a move of one of its phases.

The figures are the page's (deploys.migration_page), the rules clusters.migration's: a move
a rule refuses is a 409 with its message, bad input a 400, and neither changes anything.
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.fields import DateTimeField
from rest_framework.response import Response

from clusters import migration
from clusters.models import MigrationMove, MigrationPhase, MigrationPlan
from fatcontroller.api_schema import errors
from fatcontroller.apiviews import APIView

from . import roles
from .api_errors import Conflict
from .api_requests import MigrationMoveRequest
from .api_schema import MigrationPhaseSerializer, MigrationPlanSerializer
from .migration_page import MigrationPage, PhaseRow, migration_page, no_plan_message
from .models import Application


def plan_of(slug: str) -> Application:
    """The application, if it has a plan: 404 with how to add one when it has none."""
    application = get_object_or_404(Application, slug=slug)
    if not MigrationPlan.objects.filter(application=application).exists():
        raise NotFound(no_plan_message(application))
    return application


class MigrationPlanView(APIView):
    @extend_schema(
        operation_id="applications_migration_plan",
        summary="An application's migration plan",
        description="Its phases, where each stands, what blocks its next move and the ECS "
        "side's proof so far. 404 when the application has no plan.",
        responses={200: MigrationPlanSerializer, **errors(401, 404)},
    )
    def get(self, request, slug: str):
        page = migration_page(plan_of(slug), request.user)
        return Response(plan_data(page))


class MigrationMoveView(APIView):
    """POST {"to": state, "reason": text, "force": false}: move the phase one step on."""

    @extend_schema(
        operation_id="applications_migration_move",
        summary="Move a migration phase",
        description="Move the phase one step on, recorded with who, when and why (maintainers "
        "of the application; forcing one out of order is staff's). A move a rule refuses is a "
        "409 saying which.",
        request=MigrationMoveRequest,
        responses={200: MigrationPhaseSerializer, **errors(400, 401, 403, 404, 409, 415)},
    )
    def post(self, request, slug: str, position: int):
        application = plan_of(slug)
        phase = get_object_or_404(MigrationPhase, plan__application=application, position=position)
        roles.check(request.user, "move_phase", application)
        body = MigrationMoveRequest(data=request.data)
        body.is_valid(raise_exception=True)
        to_state, reason, force = (body.validated_data[k] for k in ("to", "reason", "force"))
        try:
            migration.move(phase, to_state, actor=request.user, reason=reason, force=force)
        except migration.MigrationRefused as exc:
            raise Conflict(str(exc)) from None
        page = migration_page(application, request.user)
        row = next(row for row in page.phases if row.phase.pk == phase.pk)
        return Response(phase_data(row, [m for m in page.moves if m.phase_id == phase.pk]))


def plan_data(page: MigrationPage) -> dict:
    """The plan as the API answers it: the page's figures, as JSON."""
    plan = page.plan
    moves_of: dict[int, list[MigrationMove]] = {}
    for move in page.moves:
        moves_of.setdefault(move.phase_id, []).append(move)
    return {
        "application": page.application.slug,
        "proof": {"deploys": plan.proof_deploys, "hours": plan.proof_hours},
        "phases": [phase_data(row, moves_of.get(row.phase.pk, [])) for row in page.phases],
    }


def phase_data(row: PhaseRow, moves: list[MigrationMove]) -> dict:
    phase = row.phase
    return {
        "position": phase.position,
        "name": phase.name,
        "state": phase.state,
        "state_since": _time(phase.state_since),
        "services": [{"name": s.service.name, "runs_on": s.runs_on} for s in row.services],
        "next_state": row.next_state,
        "blockers": row.blockers,
        # Whether the asker may force the next move (the order is the only rule in its way).
        "may_force": row.can_force,
        "proof": [
            {
                "service": proof.service,
                "deploys": proof.deploys,
                "deploys_needed": proof.deploys_needed,
                "hours": round(proof.hours, 1),
                "hours_needed": proof.hours_needed,
                "proven": proof.proven,
            }
            for proof in row.proofs
        ],
        "moves": [
            {
                "by": move.actor_name,
                "at": _time(move.at),
                "from": move.from_state,
                "to": move.to_state,
                "reason": move.reason,
                "forced": move.forced,
            }
            for move in moves
        ],
    }


def _time(value) -> str:
    return DateTimeField().to_representation(value)
