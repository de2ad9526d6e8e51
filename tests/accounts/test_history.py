"""Every saved version of the configuration rows (applications, services, placements,
clusters) is kept with who saved it: django-simple-history, shown by each one's History
button in the admin."""

import pytest

from appconfig.apply import apply_app_config
from appconfig.parse import parse_app_config
from clusters.models import Cluster, Placement, Service
from tests.appconfig.files import BASE, changed


def load(text):
    apply_app_config(parse_app_config(text))


@pytest.mark.django_db
def test_a_config_load_keeps_one_version_per_row_it_changes(application):
    load(changed(lambda data: None))
    worker = Service.objects.get(application=application, name="worker")
    assert [v.history_type for v in worker.history.all()] == ["+"]
    assert Placement.history.filter(service_id=worker.pk).count() == 1
    assert Cluster.history.filter(name="demo").count() == 1

    load(changed(lambda data: data["services"][0].update(phase=3)))
    newest, first = worker.history.all()
    assert (newest.history_type, newest.phase, first.phase) == ("~", 3, 1)
    assert [(c.field, c.old, c.new) for c in newest.diff_against(first).changes] == [
        ("phase", 1, 3)
    ]
    # What the load did not change kept its one version.
    web = Service.objects.get(application=application, name="web")
    assert web.history.count() == 1
    assert Cluster.history.filter(name="demo").count() == 1


@pytest.mark.django_db
def test_a_removed_row_keeps_its_versions(application):
    load(changed(lambda data: None))
    web = Service.objects.get(application=application, name="web")
    load(changed(lambda data: data["services"].pop()))
    assert not Service.objects.filter(pk=web.pk).exists()
    assert [v.history_type for v in Service.history.filter(id=web.pk)] == ["-", "+"]


@pytest.fixture
def staff(client, user):
    user.is_staff = user.is_superuser = True
    user.save()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_an_admin_edit_is_kept_with_who_made_it(application, staff, user):
    load(changed(lambda data: None))
    cluster = Cluster.objects.get(name="demo")
    form = {
        "name": cluster.name,
        "kind": cluster.kind,
        "region": "eu-west-1",
        "arn": cluster.arn,
        "docker_host": "",
        "reserved_memory_minimum": 512,
    }
    answer = staff.post(f"/admin/clusters/cluster/{cluster.pk}/change/", form)
    assert answer.status_code == 302, answer.content.decode()[:2000]

    newest = cluster.history.first()
    assert (newest.region, newest.reserved_memory_minimum, newest.history_user) == (
        "eu-west-1",
        512,
        user,
    )
    page = staff.get(f"/admin/clusters/cluster/{cluster.pk}/history/").content.decode()
    assert user.username in page and "eu-west-1" in page


@pytest.mark.django_db
def test_the_history_pages_are_for_staff(application, client, user):
    load(changed(lambda data: None))
    client.force_login(user)  # a maintainer, not staff
    cluster = Cluster.objects.get(name=next(iter(BASE["clusters"])))
    answer = client.get(f"/admin/clusters/cluster/{cluster.pk}/history/")
    assert answer.status_code == 302 and "/admin/login/" in answer["Location"]
