"""Which logins the settings allow: passwords (Django's own users), single sign-on through an
OpenID Connect provider (accounts/oidc.py), or both. Read by settings.py at start, so a half
configured provider stops the process there instead of failing at someone's first login.

Plain values in, a list of backends out: no Django app is loaded yet when settings.py runs.
"""

from django.core.exceptions import ImproperlyConfigured

# django-axes first (settings.py): a locked-out user name and address are refused before any
# backend looks at the password.
AXES = "axes.backends.AxesStandaloneBackend"
PASSWORDS = "django.contrib.auth.backends.ModelBackend"
SSO = "accounts.oidc.SsoBackend"


def authentication_backends(
    *, issuer: str, client_id: str, client_secret: str, local_passwords: bool
) -> list[str]:
    """AUTHENTICATION_BACKENDS for these settings; ImproperlyConfigured saying what is wrong
    (never the secret itself)."""
    if issuer:
        if not issuer.startswith(("https://", "http://")):
            raise ImproperlyConfigured(
                f"FC_OIDC_ISSUER must be the provider's https:// URL, not {issuer!r}"
            )
        missing = [
            name
            for name, value in (
                ("FC_OIDC_CLIENT_ID", client_id),
                ("FC_OIDC_CLIENT_SECRET", client_secret),
            )
            if not value
        ]
        if missing:
            raise ImproperlyConfigured(
                f"FC_OIDC_ISSUER is set, so {' and '.join(missing)} must be set too "
                "(the client registered at the provider)"
            )
    elif not local_passwords:
        raise ImproperlyConfigured(
            "FC_LOCAL_PASSWORDS is off and FC_OIDC_ISSUER is not set: nobody could log in"
        )
    backends = [AXES]
    if local_passwords:
        backends.append(PASSWORDS)
    if issuer:
        backends.append(SSO)
    return backends
