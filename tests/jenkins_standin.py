"""The stand-in Jenkins, where the tests have always found it: it lives in devtools/ now.

The embedded default runs it too (`manage.py runjenkins`, the demo's legacy deploy jobs), so
it moved into devtools/jenkins_standin.py, which production code never imports; read that
module's docstring before trusting a result.
"""

from devtools.jenkins_standin import (
    CRUMB_FIELD,
    JENKINS_VERSION,
    OUTCOMES,
    BuildRecord,
    JenkinsStandin,
    OnBuildFinished,
    Script,
    ScriptOf,
    SeenRequest,
)

__all__ = [
    "CRUMB_FIELD",
    "JENKINS_VERSION",
    "OUTCOMES",
    "BuildRecord",
    "JenkinsStandin",
    "OnBuildFinished",
    "Script",
    "ScriptOf",
    "SeenRequest",
]
