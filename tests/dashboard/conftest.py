import pytest
from django.contrib.auth import get_user_model
from django.test import Client


@pytest.fixture
def staff_client(db) -> Client:
    """A logged-in superuser: staff with every permission, as an operator of the fleet would be."""
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-for-tests")
    client = Client()
    client.force_login(user)
    return client
