import django.db.models.deletion
import uuid
from django.db import migrations, models

from common.content_types import content_types_relabel

forwards, backwards = content_types_relabel(
    models=['callbackoutbox', 'callbackattempt', 'callbackitem', 'endpointcircuit'], old='predictions', new='callbacks'
)


class Migration(migrations.Migration):
    """The callback outbox moves from predictions to its own app (issue 14): state only, the tables and rows stay."""

    initial = True

    dependencies = [
        ('predictions', '0010_prediction_superseded_index'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            # The tables stay as they are (`db_table` keeps their names): only Django's idea of their app moves.
            state_operations=[
                migrations.CreateModel(
                    name='CallbackOutbox',
                    fields=[
                        ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ('event', models.CharField(default='predictions.updated', max_length=64)),
                        ('endpoint', models.URLField(help_text='Where it goes: ML_CALLBACK_URL when it was written.', max_length=500)),
                        ('body', models.TextField(help_text='The JSON body exactly as sent and signed (UTF-8).')),
                        ('triggered_by', models.CharField(blank=True, default='', max_length=64)),
                        ('status', models.CharField(choices=[('pending', 'pending'), ('delivered', 'delivered'), ('failed', 'failed (retries exhausted)'), ('superseded', 'superseded (newer numbers owed or sent)')], default='pending', max_length=16)),
                        ('attempts', models.PositiveIntegerField(default=0)),
                        ('next_attempt_at', models.DateTimeField(blank=True, help_text='Due from then while pending.', null=True)),
                        ('created_at', models.DateTimeField(db_index=True)),
                        ('delivered_at', models.DateTimeField(blank=True, null=True)),
                        ('last_error', models.TextField(blank=True, default='')),
                    ],
                    options={
                        'verbose_name': 'callback',
                        'db_table': 'predictions_callbackoutbox',
                        'ordering': ['-created_at'],
                        'permissions': [('redeliver_callbackoutbox', 'Can redeliver a callback now')],
                        'indexes': [models.Index(fields=['status', 'next_attempt_at', 'created_at'], name='callback_due'), models.Index(fields=['status', 'delivered_at'], name='callback_last_delivered')],
                        'constraints': [models.CheckConstraint(condition=models.Q(('status__in', ['pending', 'delivered', 'failed', 'superseded'])), name='callback_status_valid'), models.CheckConstraint(condition=models.Q(models.Q(('status', 'pending'), _negated=True), ('next_attempt_at__isnull', False), _connector='OR'), name='callback_pending_has_next_attempt')],
                    },
                ),
                migrations.CreateModel(
                    name='EndpointCircuit',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('endpoint', models.URLField(max_length=500, unique=True)),
                        ('state', models.CharField(choices=[('closed', 'closed (delivering)'), ('open', 'open (waiting for the cool-down)'), ('half_open', 'half-open (one probe in flight)')], default='closed', max_length=16)),
                        ('consecutive_failures', models.PositiveIntegerField(default=0)),
                        ('opened_at', models.DateTimeField(blank=True, null=True)),
                        ('next_probe_at', models.DateTimeField(blank=True, null=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        'verbose_name': 'callback endpoint circuit',
                        'db_table': 'predictions_endpointcircuit',
                        'ordering': ['endpoint'],
                        'constraints': [models.CheckConstraint(condition=models.Q(('state__in', ['closed', 'open', 'half_open'])), name='circuit_state_valid')],
                    },
                ),
                migrations.CreateModel(
                    name='CallbackItem',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('booking_external_id', models.CharField(max_length=64)),
                        ('sequence', models.BigIntegerField()),
                        ('outbox', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='items', to='callbacks.callbackoutbox')),
                    ],
                    options={
                        'verbose_name': 'callback item',
                        'db_table': 'predictions_callbackitem',
                        'indexes': [models.Index(fields=['booking_external_id', 'sequence'], name='callback_item_booking_seq')],
                    },
                ),
                migrations.CreateModel(
                    name='CallbackAttempt',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('number', models.PositiveIntegerField(help_text='1 for the first attempt of the callback.')),
                        ('started_at', models.DateTimeField()),
                        ('webhook_timestamp', models.BigIntegerField(help_text='The webhook-timestamp header sent (Unix seconds).')),
                        ('duration_ms', models.PositiveIntegerField(blank=True, null=True)),
                        ('status_code', models.PositiveSmallIntegerField(blank=True, null=True)),
                        ('response_excerpt', models.TextField(blank=True, default='', help_text='The first 500 characters of the answer.')),
                        ('error', models.TextField(blank=True, default='')),
                        ('next_attempt_at', models.DateTimeField(blank=True, help_text='When the next attempt was scheduled.', null=True)),
                        ('outbox', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='attempt_log', to='callbacks.callbackoutbox')),
                    ],
                    options={
                        'db_table': 'predictions_callbackattempt',
                        'ordering': ['outbox', 'number'],
                        'constraints': [models.UniqueConstraint(fields=('outbox', 'number'), name='one_attempt_per_number')],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
