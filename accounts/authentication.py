"""`Authorization: Token <key>` for the API, against the hashed tokens (tokens.py). A key that
is malformed (a NUL, a lone surrogate) is simply a wrong token: 401, never a query."""

from rest_framework import authentication, exceptions

from fatcontroller.text import text_problem

from . import tokens


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key):
        if text_problem(key):
            raise exceptions.AuthenticationFailed("Invalid token.")
        token, why = tokens.find(key)
        if token is None:
            raise exceptions.AuthenticationFailed(why)
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return token.user, token
