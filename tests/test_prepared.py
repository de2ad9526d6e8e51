"""fatcontroller/prepared.py: a query compiled once answers as the ORM does for any values,
and a query whose SQL moves with its values is refused rather than answered wrongly."""

from datetime import timedelta

import pytest
from django.db.models import F, Value
from django.utils import timezone

from deploys.models import Deploy
from fatcontroller.prepared import NotPreparable, Prepared


def by_requester(*, pk: int, requester_id: int):
    return (
        Deploy.objects.filter(pk__gte=pk, requester_id=requester_id)
        .annotate(later=F("created_at"))
        .order_by("pk")
        .values_list("pk", "branch", "later")
    )


@pytest.fixture
def deploys(application, user, other_user):
    made = [
        Deploy.objects.create(application=application, branch=f"b{n}", requester=who)
        for n, who in enumerate([user, other_user, user, user])
    ]
    Deploy.objects.filter(pk=made[0].pk).update(created_at=timezone.now() - timedelta(days=2))
    return made


def test_it_answers_as_the_orm_does_for_every_value(deploys, user, other_user):
    prepared = Prepared(by_requester, "pk", "requester_id")
    for pk in (deploys[0].pk, deploys[2].pk, deploys[-1].pk + 1):
        for person in (user, other_user):
            expected = list(by_requester(pk=pk, requester_id=person.pk))
            assert prepared.rows(pk=pk, requester_id=person.pk) == expected
    first = prepared.rows(pk=deploys[0].pk, requester_id=user.pk)[0]
    assert first[2] == Deploy.objects.get(pk=deploys[0].pk).created_at  # a datetime, aware


def test_it_takes_exactly_its_arguments(deploys, user):
    prepared = Prepared(by_requester, "pk", "requester_id")
    with pytest.raises(TypeError):
        prepared.rows(pk=1)


def test_a_query_whose_other_parameters_move_with_its_values_is_refused(db):
    def doubled(*, pk: int):
        return Deploy.objects.filter(pk=pk).annotate(twice=Value(pk * 2)).values_list("twice")

    with pytest.raises(NotPreparable):
        Prepared(doubled, "pk").rows(pk=1)


def test_a_value_the_query_does_not_hold_is_refused(db):
    def ignoring(*, pk: int):
        return Deploy.objects.values_list("pk")

    with pytest.raises(NotPreparable):
        Prepared(ignoring, "pk").rows(pk=1)
