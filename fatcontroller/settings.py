"""Settings, read from the environment.

With nothing set, this is the embedded default: SQLite and a broker kept in
files under var/, so `make run` needs neither PostgreSQL nor Redis. Set
DATABASE_URL and REDIS_URL for the production shape. A bad value fails at start.
The devtools app (the demo and the simulated AWS) is installed only where moto is.
"""

import importlib.util
import re
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from fatcontroller import sso
from lib import folder_transport

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
VAR_DIR = Path(env.str("FC_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    key = env.str("SECRET_KEY", default="")
    if key:
        return key
    if not env.bool("FC_EMBEDDED", default=False):
        raise ImproperlyConfigured(
            "SECRET_KEY must be set (or FC_EMBEDDED=1 for the embedded default)"
        )
    # The embedded default keeps one random key per install, never in the repository.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    # The API's OpenAPI schema (/api/schema/) and its docs page (/api/docs/), whose scripts
    # come from the sidecar's static files: the page needs no CDN.
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # Failed logins throttled per user name and address (below).
    "axes",
    # Saved versions of the configuration rows (applications, services, placements,
    # clusters) with who saved them.
    "simple_history",
    "fatcontroller",
    "accounts",
    "deploys",
    "builds",
    "clusters",
    "monitoring",
]
# The developer tools (`manage.py demo`, `runmoto`, `runembedded`) need moto, which the
# production image does not install (it is in the devtools dependency group): listed only
# where it is there. find_spec only looks: it imports neither.
if all(importlib.util.find_spec(name) for name in ("moto", "devtools")):
    INSTALLED_APPS.append("devtools")

MIDDLEWARE = [
    # First and last: django-prometheus times the whole request (HTTP metrics on /metrics).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "fatcontroller.middleware.ServerTimingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The request's address, for the audit log (accounts/audit.py).
    "accounts.audit.AuditAddressMiddleware",
    # Who saved a history row (simple_history) when a request saved it.
    "simple_history.middleware.HistoryRequestMiddleware",
    # Every page needs a login unless a view says otherwise (the login page, the API,
    # which answers 401/403 itself).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # The deploy id of /deploys/<pk>/ and /api/deploys/<pk>/ requests, for their log lines.
    "monitoring.middleware.DeployContextMiddleware",
    # Last before the metrics: it answers a locked-out login (429) and counts the failures.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# Login throttling (django-axes): FC_LOGIN_FAILURE_LIMIT wrong passwords for one user name
# from one address lock that pair out for FC_LOGIN_COOLOFF_MINUTES; a right password while
# locked out is refused too, and one after the window resets the count. Each failure is kept
# (axes' access attempts, in the admin) with the address and when.
# Single sign-on (accounts/oidc.py), off unless FC_OIDC_ISSUER is set: the provider's endpoints
# are read from <issuer>/.well-known/openid-configuration at the first SSO login of each
# process, not here, so a provider that is down stops SSO logins only, never the start.
FC_OIDC_ISSUER = env.str("FC_OIDC_ISSUER", default="").rstrip("/")
FC_OIDC_CLIENT_ID = env.str("FC_OIDC_CLIENT_ID", default="")
FC_OIDC_CLIENT_SECRET = env.str("FC_OIDC_CLIENT_SECRET", default="")
FC_OIDC_SCOPES = env.str("FC_OIDC_SCOPES", default="openid email profile")
# Lower-cased; empty: any address the provider vouches for.
FC_OIDC_ALLOWED_DOMAINS = [
    domain.strip().lower().lstrip("@")
    for domain in env.list("FC_OIDC_ALLOWED_DOMAINS", default=[])
    if domain.strip()
]
# The claim whose values are the person's Django groups, set at each login; empty: groups are
# left to the admin.
FC_OIDC_GROUPS_CLAIM = env.str("FC_OIDC_GROUPS_CLAIM", default="")
FC_OIDC_TIMEOUT = env.float("FC_OIDC_TIMEOUT", default=10.0)
# Off: Django's own passwords no longer log anyone in (the login page offers SSO only).
FC_LOCAL_PASSWORDS = env.bool("FC_LOCAL_PASSWORDS", default=True)
AUTHENTICATION_BACKENDS = sso.authentication_backends(
    issuer=FC_OIDC_ISSUER,
    client_id=FC_OIDC_CLIENT_ID,
    client_secret=FC_OIDC_CLIENT_SECRET,
    local_passwords=FC_LOCAL_PASSWORDS,
)
# How long a new API token lasts unless its maker says (accounts/tokens.py; at most 365).
FC_TOKEN_DAYS = env.int("FC_TOKEN_DAYS", default=90)
FC_LOGIN_FAILURE_LIMIT = env.int("FC_LOGIN_FAILURE_LIMIT", default=5)
FC_LOGIN_COOLOFF_MINUTES = env.int("FC_LOGIN_COOLOFF_MINUTES", default=15)
AXES_FAILURE_LIMIT = FC_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=FC_LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_ENABLE_ACCESS_FAILURE_LOG = True
# A refused SSO login counts against the address the provider gave, not against "no name":
# one person refused five times must not lock out everyone's SSO from a shared address.
AXES_USERNAME_CALLABLE = "accounts.audit.tried_name"
# axes' own two, and an SSO callback's one-time code and state: masked in the failure log.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "code", "state"]

ROOT_URLCONF = "fatcontroller.urls"
WSGI_APPLICATION = "fatcontroller.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'fatcontroller.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one SQLite file: take the write lock at BEGIN so two
    # writers queue on the lock instead of failing, and wait for it rather than erroring.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Each process's own memory: the branch lists and estimates (a minute), and the dashboard's
# rows (until they change, deploys/board_rows.py), never worth a round trip to share.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "board-rows": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "board-rows",
        # Rows of a few hundred applications and their older versions, dropped in 2 minutes.
        "OPTIONS": {"MAX_ENTRIES": 2000},
    },
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Served over HTTPS (README, "Production settings"): FC_HTTPS=1 sends plain HTTP to HTTPS,
# keeps the cookies off plain HTTP and sends HSTS. The probes stay on plain HTTP, where load
# balancers and Prometheus ask them. Behind a proxy that ends TLS, FC_PROXY_SSL_HEADER names
# the header it sets to "https" (X-Forwarded-Proto); without it every request looks plain
# and is redirected for ever. Only set it where the proxy always sets or strips that header.
FC_HTTPS = env.bool("FC_HTTPS", default=False)
SECURE_SSL_REDIRECT = FC_HTTPS
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("FC_HSTS_SECONDS", default=31536000 if FC_HTTPS else 0)
# includeSubDomains covers only names under this tool's own host (deploys.example.com),
# never its parents. Preloading is a promise to browser makers, so only by choice.
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env.bool("FC_HSTS_PRELOAD", default=False)
if not SECURE_HSTS_PRELOAD:
    SILENCED_SYSTEM_CHECKS = ["security.W021"]  # preload not asked for: a choice, above


def _proxy_ssl_header(name: str) -> tuple[str, str] | None:
    if not name:
        return None
    if not re.fullmatch(r"[A-Za-z0-9-]+", name):
        raise ImproperlyConfigured(
            f"FC_PROXY_SSL_HEADER must be a header name like X-Forwarded-Proto, not {name!r}"
        )
    return "HTTP_" + name.upper().replace("-", "_"), "https"


SECURE_PROXY_SSL_HEADER = _proxy_ssl_header(env.str("FC_PROXY_SSL_HEADER", default=""))

SESSION_COOKIE_HTTPONLY = True
# SECURE_COOKIES is the older switch, kept for the deployments that set it.
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=FC_HTTPS)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "deploys.api_errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Bad input is a 400: no NUL, no lone surrogate, no JSON nested past 64 levels.
    "DEFAULT_PARSER_CLASSES": [
        "fatcontroller.parsers.StrictJSONParser",
        "fatcontroller.parsers.StrictFormParser",
        "fatcontroller.parsers.StrictMultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Fat Controller API",
    "VERSION": "1",
    "DESCRIPTION": (
        "Queue, follow and steer deploys. Log in (a session) or send "
        "`Authorization: Token <key>` with a token made at /tokens/. Every error answers "
        '`{"errors": {field: [messages]}}`: the fields of the request that were refused, or '
        "`detail` (401, 403, 404) or `state` (409) when none is to blame."
    ),
    # Request bodies get their own components: a deploy's answer is not what queueing takes.
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/",
    # The schema and the docs page need a login, like everything else.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SERVE_INCLUDE_SCHEMA": False,
    # <id:...> (fatcontroller/converters.py) matches 1 to a bigint's largest, nothing else.
    # <slug:...> is Django's: letters, digits, - and _. Anything else matches no URL.
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        "slug": {"type": "string", "pattern": "^[-a-zA-Z0-9_]+$"},
    },
    # The choice sets named once each, where several fields share a name ("state", "mode").
    "ENUM_NAME_OVERRIDES": {
        "DeployStateEnum": "deploys.states.State",
        "DeployModeEnum": "deploys.states.Mode",
        "QueueableModeEnum": "deploys.actions.QUEUEABLE_MODES",
        "MigrationStateEnum": "clusters.models.MigrationState",
        "BuildStatusEnum": "builds.models.BuildStatus",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery. Without REDIS_URL the broker is a folder (lib/folder_transport.py): a real separate
# worker process, no server to install; messages are written atomically, held until acked and
# picked up about 0.1 s after they are sent.
REDIS_URL = env.str("REDIS_URL", default="")
# The longest a step task may run (its hard time limit); a local build is bounded by the
# application's build timeout instead, and a redelivered build finds its attempt taken.
FC_STEP_TIME_LIMIT = env.int("FC_STEP_TIME_LIMIT", default=900)
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # A message a dead worker took comes back after this: as long as the longest step, not an
    # hour (the safety net resends a lost step sooner anyway). Countdowns stay far below it.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": FC_STEP_TIME_LIMIT + 60}
else:
    folder_transport.register()
    BROKER_DIR = VAR_DIR / "broker"
    CELERY_BROKER_URL = "folder://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {"folder": str(BROKER_DIR), "polling_interval": 0.1}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
# A task whose pool process died (the OOM killer) is put back only where running it twice is
# safe: the steps say so themselves (deploys/tasks.py); a chat message is not sent twice.
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A pool process that grew past this (KiB) is replaced after its task, before the kernel's OOM
# killer picks one mid-task.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env.int("FC_WORKER_MAX_MEMORY_KB", default=512_000)
CELERY_TASK_DEFAULT_QUEUE = "deploys"
# A worker started without -Q serves all three.
CELERY_TASK_QUEUES = [Queue(name) for name in ("deploys", "builds", "clusters")]
CELERY_TASK_ROUTES = {
    "deploys.*": {"queue": "deploys"},
    "builds.*": {"queue": "builds"},
    "clusters.*": {"queue": "clusters"},
}
# The safety net for a missed Jenkins notification, and what keeps a Jenkins log live.
FC_BUILD_POLL_SECONDS = env.float("FC_BUILD_POLL_SECONDS", default=5.0)
# The agent watch (clusters/health/agents.py): how often each ECS cluster's container instances
# are looked at, and how long an agent may stay disconnected before it is reported (short
# disconnects are normal).
FC_AGENT_WATCH_SECONDS = env.float("FC_AGENT_WATCH_SECONDS", default=60.0)
FC_AGENT_GRACE_SECONDS = env.float("FC_AGENT_GRACE_SECONDS", default=300.0)
# The crash loop watch (clusters/health/crash_loops.py): how often each cluster's OOM kills
# are looked at (the loop must be stopped before it reaches the next host, so more often than
# the agent watch), and the window in which kills on two hosts make a crash loop.
FC_CRASH_LOOP_WATCH_SECONDS = env.float("FC_CRASH_LOOP_WATCH_SECONDS", default=10.0)
FC_CRASH_LOOP_WINDOW_SECONDS = env.float("FC_CRASH_LOOP_WINDOW_SECONDS", default=900.0)
# The role of a person no grant names (deploys/roles.py): viewer, deployer or maintainer.
FC_DEFAULT_ROLE = env.str("FC_DEFAULT_ROLE", default="viewer")
if FC_DEFAULT_ROLE not in ("viewer", "deployer", "maintainer"):
    raise ImproperlyConfigured(
        f"FC_DEFAULT_ROLE must be viewer, deployer or maintainer, not {FC_DEFAULT_ROLE!r}"
    )
# How often the safety net runs: a lost step is sent again within its stall window plus this.
FC_RESUME_INTERVAL = env.int("FC_RESUME_INTERVAL", default=15)
CELERY_BEAT_SCHEDULE = {
    # The safety net: a slot handoff or a step lost to a dead process is picked up here.
    "resume-deploys": {
        "task": "deploys.tasks.resume_deploys",
        "schedule": timedelta(seconds=FC_RESUME_INTERVAL),
    },
    "poll-builds": {
        "task": "builds.tasks.poll_builds",
        "schedule": timedelta(seconds=FC_BUILD_POLL_SECONDS),
    },
    "watch-clusters": {
        "task": "clusters.tasks.watch_clusters",
        "schedule": timedelta(seconds=FC_AGENT_WATCH_SECONDS),
    },
    "watch-crash-loops": {
        "task": "clusters.tasks.watch_crash_loops",
        "schedule": timedelta(seconds=FC_CRASH_LOOP_WATCH_SECONDS),
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# Fat Controller itself.
FC_WORK_DIR = Path(env.str("FC_WORK_DIR", default=str(VAR_DIR / "work")))
FC_GIT_TIMEOUT = env.float("FC_GIT_TIMEOUT", default=120.0)
# A step nobody is working on for this long (no worker holds its lease, no build beats) is
# handed to a worker again: a lost message costs this, not more (steps are idempotent). A
# running step renews its lease every quarter of this.
FC_STALL_AFTER = timedelta(seconds=env.int("FC_STALL_AFTER", default=30))
# A step whose worker died this many times in one state (OOM-killed by its own work, say) is
# ended with the reason instead of being run again, and again.
FC_STEP_MAX_WORKER_DEATHS = env.int("FC_STEP_MAX_WORKER_DEATHS", default=3)
FC_BUILD_LOG_FLUSH_SECONDS = env.float("FC_BUILD_LOG_FLUSH_SECONDS", default=0.5)
# A build log keeps its last this many characters; what was cut is counted and said.
FC_BUILD_LOG_MAX_CHARS = env.int("FC_BUILD_LOG_MAX_CHARS", default=2_000_000)

# ECS rollouts. AWS credentials and region come from boto3's own environment variables
# (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL for moto).
FC_ROLLOUT_POLL_SECONDS = env.float("FC_ROLLOUT_POLL_SECONDS", default=1.0)
# A rollout, soak or rollback whose next tick has not started for this long (it ticks every
# FC_ROLLOUT_POLL_SECONDS) lost its message: the tick is sent again.
FC_ROLLOUT_STALL_AFTER = timedelta(seconds=env.int("FC_ROLLOUT_STALL_AFTER", default=30))
# How long one tick holds a deploy, renewed while it runs; a tick whose worker died frees it
# after this (at once, when its process is known dead on the same machine).
FC_ROLLOUT_LEASE = timedelta(seconds=env.int("FC_ROLLOUT_LEASE", default=30))
FC_AWS_TIMEOUT = env.float("FC_AWS_TIMEOUT", default=10.0)
FC_AWS_MAX_ATTEMPTS = env.int("FC_AWS_MAX_ATTEMPTS", default=8)
# Between the times a deployment reports failed tasks or is about to be called out, a
# cluster's stopped tasks are still looked at this often (real ECS throttles ListTasks).
FC_ECS_STOPPED_TASKS_EVERY = env.float("FC_ECS_STOPPED_TASKS_EVERY", default=10.0)

# Docker hosts (clusters/targets/docker.py): each call's timeout (a graceful stop adds its own
# stop timeout), and the files of a tcp:// engine's TLS (paths only; the files stay where
# they are). An engine on tcp:// other than the loopback is refused without them.
FC_DOCKER_TIMEOUT = env.float("FC_DOCKER_TIMEOUT", default=30.0)
# The application page asks each Docker host what runs now: it gives up after this long, so
# an engine that does not answer costs the page a few seconds at most (deploys/docker_now.py).
FC_DOCKER_PAGE_TIMEOUT = env.float("FC_DOCKER_PAGE_TIMEOUT", default=2.0)
FC_DOCKER_TLS_CA = env.str("FC_DOCKER_TLS_CA", default="")
FC_DOCKER_TLS_CERT = env.str("FC_DOCKER_TLS_CERT", default="")
FC_DOCKER_TLS_KEY = env.str("FC_DOCKER_TLS_KEY", default="")

# Jenkins, for applications whose build backend is Jenkins. Credentials only from here.
JENKINS_URL = env.str("JENKINS_URL", default="")
JENKINS_USER = env.str("JENKINS_USER", default="")
JENKINS_TOKEN = env.str("JENKINS_TOKEN", default="")
JENKINS_TIMEOUT = env.float("JENKINS_TIMEOUT", default=10.0)
# The Jenkins that runs the legacy deploy jobs (clusters/targets/legacy.py), when it is not the
# one that builds. Each left empty falls back to its JENKINS_* setting when read.
FC_LEGACY_JENKINS_URL = env.str("FC_LEGACY_JENKINS_URL", default="")
FC_LEGACY_JENKINS_USER = env.str("FC_LEGACY_JENKINS_USER", default="")
FC_LEGACY_JENKINS_TOKEN = env.str("FC_LEGACY_JENKINS_TOKEN", default="")

# Monitoring (monitoring/): /healthz, /metrics, JSON logs. /metrics answers only this
# bearer token, and does not exist without one.
FC_METRICS_TOKEN = env.str("FC_METRICS_TOKEN", default="")
# /healthz fails when no worker (beat) has done anything for this many seconds. Beat sends the
# build poll every FC_BUILD_POLL_SECONDS, so a worker always has something to do.
FC_HEALTH_WORKER_SILENT = env.float("FC_HEALTH_WORKER_SILENT", default=120.0)
FC_HEALTH_BEAT_SILENT = env.float("FC_HEALTH_BEAT_SILENT", default=3.0 * FC_RESUME_INTERVAL)
FC_HEALTH_BROKER_TIMEOUT = env.float("FC_HEALTH_BROKER_TIMEOUT", default=2.0)
# A worker or beat writes its heartbeat row at most this often.
FC_HEARTBEAT_SECONDS = env.float("FC_HEARTBEAT_SECONDS", default=5.0)
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "monitoring.logs.json_formatter"},
    },
    "filters": {"deploy_id": {"()": "monitoring.logs.DeployIdFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["deploy_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # It says at INFO, for every client made, where it found the endpoint.
        "botocore": {"level": "WARNING"},
        # At DEBUG it logs request paths, and a webhook's path holds its token.
        "urllib3": {"level": "INFO"},
        # Its version, at every process's start; its lockouts and failures stay at INFO.
        "axes.apps": {"level": "WARNING"},
    },
}
