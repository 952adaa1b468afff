"""Moving a model between apps in a migration, with its content type, so what hangs on it follows."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def content_types_relabel(*, models: Sequence[str], old: str, new: str) -> tuple[Callable, Callable]:
    """`RunPython` forwards and backwards functions that relabel `models`' content types from app `old` to `new`.

    Permissions granted on a model (redelivering a callback, promoting a model) and admin log entries point at
    its content type: relabelling it in place keeps them; a new one would leave them behind. A fresh database
    has none yet (post_migrate creates them under the new label). A content type already created under the
    target label (by a post_migrate after a partial migrate) is empty and gives way.
    """

    def move(apps, schema_editor, source: str, target: str) -> None:
        ContentType = apps.get_model("contenttypes", "ContentType")
        db = schema_editor.connection.alias
        for model in models:
            moving = ContentType.objects.using(db).filter(app_label=source, model=model).first()
            if moving is None:
                continue
            ContentType.objects.using(db).filter(app_label=target, model=model).delete()
            moving.app_label = target
            moving.save(update_fields=["app_label"])
        ContentType.objects.clear_cache()

    def forwards(apps, schema_editor) -> None:
        move(apps, schema_editor, old, new)

    def backwards(apps, schema_editor) -> None:
        move(apps, schema_editor, new, old)

    return forwards, backwards
