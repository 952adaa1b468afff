"""The outbox's move to `callbacks` and the registry's to `learning` (issue 14) keep an existing database's rows and
the permissions staff were granted on them."""

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from callbacks.models import CallbackOutbox, CallbackStatus
from learning.models import ModelVersion

# The last migrations before the move; `callbacks` did not exist.
BEFORE = [
    ("predictions", "0010_prediction_superseded_index"),
    ("learning", "0003_baseline_idle_observations"),
    ("callbacks", None),
]


def _permissions_present() -> None:
    """The permissions a migrated database has (created by post_migrate under the current app labels)."""
    for model, codename in [(CallbackOutbox, "redeliver_callbackoutbox"), (ModelVersion, "change_modelversion")]:
        content_type = ContentType.objects.get_for_model(model)
        Permission.objects.get_or_create(content_type=content_type, codename=codename, defaults={"name": codename})
    ContentType.objects.clear_cache()


@pytest.mark.django_db(transaction=True)
def test_an_outbox_row_a_model_and_staff_permissions_survive_the_move_out_of_predictions(django_user_model):
    _permissions_present()
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state([node for node in BEFORE if node[1] is not None]).apps

    # As an existing database has them: the models under `predictions`, a callback owed, staff who may redeliver.
    assert not ContentType.objects.filter(app_label__in=["callbacks"]).exists()
    old.get_model("predictions", "CallbackOutbox").objects.create(
        endpoint="http://laravel.internal/api/ml/predictions-updated",
        body='{"id": "kept"}',
        status="failed",
        attempts=9,
        created_at=datetime(2026, 11, 30, tzinfo=UTC),
    )
    old.get_model("predictions", "ModelVersion").objects.create(
        version="v-kept", status="champion", source="outcomes", artifact_path="v-kept.txt", artifact_sha256="0" * 64
    )
    staff = Group.objects.create(name="staff")
    staff.permissions.add(
        Permission.objects.get(content_type__app_label="predictions", codename="redeliver_callbackoutbox"),
        Permission.objects.get(content_type__app_label="predictions", codename="change_modelversion"),
    )
    clerk = django_user_model.objects.create_user("clerk", "clerk@example.com", None, is_staff=True)
    clerk.groups.add(staff)

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    ContentType.objects.clear_cache()

    row = CallbackOutbox.objects.get()
    assert (row.body, row.status, row.attempts) == ('{"id": "kept"}', CallbackStatus.FAILED, 9)
    assert ModelVersion.objects.get().version == "v-kept"
    assert set(staff.permissions.values_list("content_type__app_label", "codename")) == {
        ("callbacks", "redeliver_callbackoutbox"),
        ("learning", "change_modelversion"),
    }
    clerk = django_user_model.objects.get(pk=clerk.pk)  # a fresh permission cache
    assert clerk.has_perm("callbacks.redeliver_callbackoutbox") and clerk.has_perm("learning.change_modelversion")
    assert not ContentType.objects.filter(
        app_label="predictions", model__in=["callbackoutbox", "callbackattempt", "modelversion", "driftcheck"]
    ).exists()
    assert ContentType.objects.get_for_model(CallbackOutbox).app_label == "callbacks"
