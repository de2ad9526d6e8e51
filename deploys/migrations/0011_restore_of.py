"""A restore names the release it puts back `restore_of` (it was `rollback_of`, the word of
the automatic rollback). A rename: every row keeps its value."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("deploys", "0010_rollout_rows_neutral")]

    operations = [
        migrations.RenameField("deploy", "rollback_of", "restore_of"),
        migrations.AlterField(
            model_name="deploy",
            name="restore_of",
            field=models.ForeignKey(
                blank=True,
                help_text="For a restore: the release whose revisions it puts back.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="restores",
                to="deploys.deploy",
            ),
        ),
    ]
