from django.db import migrations


class Migration(migrations.Migration):
    """The outbox went to `callbacks` and the registry and drift checks to `learning` (issue 14).

    Predictions forgets them; their tables, kept by the apps that now own them, are not touched.
    """

    dependencies = [
        ('predictions', '0010_prediction_superseded_index'),
        ('callbacks', '0001_initial'),
        ('learning', '0004_model_registry_from_predictions'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(model_name='callbackattempt', name='outbox'),
                migrations.RemoveField(model_name='callbackitem', name='outbox'),
                migrations.RemoveField(model_name='driftcheck', name='model_version'),
                migrations.DeleteModel(name='EndpointCircuit'),
                migrations.DeleteModel(name='CallbackAttempt'),
                migrations.DeleteModel(name='CallbackItem'),
                migrations.DeleteModel(name='CallbackOutbox'),
                migrations.DeleteModel(name='DriftCheck'),
                migrations.DeleteModel(name='ModelVersion'),
            ],
            database_operations=[],
        ),
    ]
