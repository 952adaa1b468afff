import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

from common.content_types import content_types_relabel

forwards, backwards = content_types_relabel(
    models=['modelversion', 'driftcheck'], old='predictions', new='learning'
)


class Migration(migrations.Migration):
    """The model registry and its drift checks move from predictions to learning (issue 14): state only."""

    dependencies = [
        ('learning', '0003_baseline_idle_observations'),
        ('predictions', '0010_prediction_superseded_index'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            # The tables stay as they are (`db_table` keeps their names): only Django's idea of their app moves.
            state_operations=[
                migrations.CreateModel(
                    name='ModelVersion',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('version', models.CharField(max_length=64, unique=True)),
                        ('kind', models.CharField(default='gap-trip-lgbm', max_length=32)),
                        ('status', models.CharField(choices=[('champion', 'champion (serving)'), ('challenger', 'challenger (evaluated, not promoted)'), ('retired', 'retired (was champion)')], default='challenger', max_length=16)),
                        ('source', models.CharField(help_text='synthetic:<seed> or outcomes', max_length=64)),
                        ('trained_at', models.DateTimeField(auto_now_add=True)),
                        ('promoted_at', models.DateTimeField(blank=True, null=True)),
                        ('window_start', models.DateTimeField(blank=True, null=True)),
                        ('window_end', models.DateTimeField(blank=True, null=True)),
                        ('training_rows', models.JSONField(default=dict, help_text='rows per segment model (gap, trip)')),
                        ('features', models.JSONField(default=dict)),
                        ('hyperparameters', models.JSONField(default=dict)),
                        ('holdout_metrics', models.JSONField(default=dict)),
                        ('champion_metrics', models.JSONField(default=dict, help_text="the champion's figures on the same holdout")),
                        ('calibration', models.JSONField(default=dict, help_text='interval scale fitted on held-out outcomes')),
                        ('feature_reference', models.JSONField(blank=True, default=dict, help_text="per kind and feature: decile bin edges and shares of the training window's newest weeks (what the weekly drift check compares against; empty for models trained before it existed)")),
                        ('training_seconds', models.FloatField(default=0.0)),
                        ('artifact_path', models.CharField(max_length=500)),
                        ('artifact_sha256', models.CharField(max_length=64)),
                        ('notes', models.TextField(blank=True, default='')),
                    ],
                    options={
                        'db_table': 'predictions_modelversion',
                        'ordering': ['-trained_at', '-id'],
                        'constraints': [models.UniqueConstraint(condition=models.Q(('status', 'champion')), fields=('status',), name='one_champion_model')],
                    },
                ),
                migrations.CreateModel(
                    name='DriftCheck',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('checked_at', models.DateTimeField(default=django.utils.timezone.now, help_text='when the check ran')),
                        ('window_start', models.DateTimeField(help_text='recent segments compared: outcome known after this')),
                        ('window_end', models.DateTimeField(help_text='... and up to this')),
                        ('status', models.CharField(choices=[('ok', 'ok (stable)'), ('warn', 'warn (moved: watch it)'), ('drift', 'drift (the model is seeing inputs unlike its training)'), ('insufficient_data', 'insufficient data (too few recent segments to judge)')], max_length=20)),
                        ('outcomes', models.PositiveIntegerField(default=0, help_text='outcomes recorded in the window')),
                        ('rows', models.JSONField(default=dict, help_text='recent segments compared per kind (gap, trip)')),
                        ('max_psi', models.FloatField(blank=True, help_text='the largest PSI among the scored features', null=True)),
                        ('worst_feature', models.CharField(blank=True, default='', help_text='kind.feature of max_psi', max_length=64)),
                        ('features', models.JSONField(default=dict, help_text='per kind and feature: psi, status, recent shares')),
                        ('thresholds', models.JSONField(default=dict, help_text='the PSI thresholds and minimum rows judged by')),
                        ('model_version', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='drift_checks', to='learning.modelversion')),
                    ],
                    options={
                        'db_table': 'predictions_driftcheck',
                        'ordering': ['-checked_at', '-id'],
                        'indexes': [models.Index(fields=['model_version', '-checked_at', '-id'], name='drift_latest_per_model')],
                        'constraints': [models.CheckConstraint(condition=models.Q(('window_start__lt', models.F('window_end'))), name='drift_window_ordered'), models.CheckConstraint(condition=models.Q(('status__in', ['ok', 'warn', 'drift', 'insufficient_data'])), name='drift_status_valid')],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
