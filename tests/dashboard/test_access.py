"""Every staff page and action refuses anonymous and non-staff users; staff without a permission cannot act."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.factories import VehicleFactory

PAGES = [
    "/admin/dashboard/accuracy/",
    "/admin/dashboard/cars/7/timeline/",
    "/admin/dashboard/models/",
    "/admin/dashboard/deliveries/",
    "/admin/dashboard/operations/",
]
ACTIONS = ["/admin/dashboard/models/retrain/", "/admin/dashboard/deliveries/redeliver/"]


@pytest.fixture
def car(db):
    return VehicleFactory(external_id="7")


def _login(**flags) -> Client:
    user = get_user_model().objects.create_user("someone", password="pw-for-tests", **flags)
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("url", PAGES + ACTIONS)
def test_anonymous_users_are_sent_to_the_login(url, car, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued:
        response = Client().post(url) if url in ACTIONS else Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert queued == []


@pytest.mark.django_db
@pytest.mark.parametrize("url", PAGES + ACTIONS)
def test_non_staff_users_are_refused(url, car, django_capture_on_commit_callbacks):
    client = _login(is_staff=False)
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(url) if url in ACTIONS else client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert queued == []


@pytest.mark.django_db
@pytest.mark.parametrize("url", ACTIONS)
def test_staff_without_the_permission_cannot_retrain_or_redeliver(url, car, django_capture_on_commit_callbacks):
    client = _login(is_staff=True)
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(url)
    assert response.status_code == 403
    assert queued == []


@pytest.mark.django_db
@pytest.mark.parametrize("url", PAGES)
def test_staff_see_every_page(url, car, staff_client):
    response = staff_client.get(url)
    assert response.status_code == 200
    assert b'class="dashboard-nav"' in response.content


@pytest.mark.django_db
def test_the_admin_index_links_every_dashboard(staff_client):
    html = staff_client.get("/admin/").content.decode()
    for url in PAGES:
        if "/cars/" not in url:
            assert f'href="{url}"' in html


@pytest.mark.django_db
def test_pages_load_scripts_and_styles_only_from_the_app(car, staff_client):
    import re

    for url in ["/admin/dashboard/accuracy/", "/admin/dashboard/cars/7/timeline/"]:
        html = staff_client.get(url).content.decode()
        sources = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
        assert any("chart.umd.min.js" in s for s in sources)
        assert all(s.startswith("/static/") for s in sources), sources
        assert staff_client.get(next(s for s in sources if "chart.umd" in s)).status_code == 200
