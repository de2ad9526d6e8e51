"""API token authentication that refuses a malformed token instead of querying with it.

DRF's TokenAuthentication looks the key up as sent: a key with a NUL makes PostgreSQL's
driver raise ValueError, a 500. Here such a key is simply a wrong token (401), as any key
that names no token is.
"""

from rest_framework import authentication, exceptions

from .text import text_problem


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key):
        if text_problem(key):
            raise exceptions.AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(key)
