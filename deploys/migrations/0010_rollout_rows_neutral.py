"""ServiceRollout's columns say what they hold for any target, not for ECS only.

Renames carry every row over as it is: on ECS a revision is a task definition ARN and a
handle a deployment id, which is what the old columns held.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("deploys", "0009_restore_mode")]

    operations = [
        migrations.RenameField("servicerollout", "previous_task_definition", "revision_before"),
        migrations.RenameField("servicerollout", "new_task_definition", "revision_made"),
        migrations.RenameField("servicerollout", "deployment_id", "start_handle"),
        migrations.RenameField("servicerollout", "rollback_deployment_id", "restore_handle"),
        migrations.AddField(
            model_name="servicerollout",
            name="detail",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
