"""The manual "roll back to this release" is a restore: mode "rollback" becomes "restore", so
the word "rollback" is left to the automatic one (rolling_back, rolled_back)."""

from django.db import migrations, models


def rename_mode(old: str, new: str):
    def run(apps, schema_editor):
        apps.get_model("deploys", "Deploy").objects.filter(mode=old).update(mode=new)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ('deploys', '0008_step_lease_holder'),
    ]

    operations = [
        migrations.AlterField(
            model_name='deploy',
            name='mode',
            field=models.CharField(choices=[('deploy', 'Deploy'), ('merge_only', 'Merge without deploying'), ('restore', 'Restore an earlier release')], default='deploy', max_length=20),
        ),
        migrations.RunPython(rename_mode("rollback", "restore"), rename_mode("restore", "rollback")),
    ]
