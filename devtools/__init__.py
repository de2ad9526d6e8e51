"""What runs Fat Controller without real AWS: for the embedded default (`make run`) and tests.

The ECS deployment simulator (ecs_simulator.py, on top of moto), the stand-in Jenkins
(jenkins_standin.py) and the demo's legacy deploy jobs on it (legacy_jobs.py), the demo
application (demo.py, demo_migration.py, demo-shop.fatcontroller.yml) and the commands that
start them (`manage.py demo`, `runmoto`, `runjenkins`, `runembedded`). Production code never
imports this package, and the production image installs no moto (it is in the `devtools`
dependency group), so settings lists this app only where moto can be imported.
"""
