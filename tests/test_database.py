"""How the service talks to Postgres: the hot path's repeated queries are prepared once per connection."""

import pytest
from django.db import connection

from bookings.models import Vehicle


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_query_repeated_on_a_connection_becomes_a_prepared_statement(settings):
    Vehicle.objects.create(external_id="78")

    def prepared() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ['%"bookings_vehicle"%']
            )
            return cursor.fetchone()[0]

    before = prepared()
    for _ in range(settings.DATABASES["default"]["OPTIONS"]["prepare_threshold"] + 1):
        assert Vehicle.objects.get(external_id="78")
    assert prepared() == before + 1
