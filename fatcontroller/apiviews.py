"""The base of every API view: it reads the body of every POST, PUT and PATCH it handles.

DRF parses a body only when a view asks for request.data, so a button such as cancel would
take a body full of NUL characters, or nested 5,000 deep, and act on it. Reading it here,
after authentication (a stranger gets 401, not a parse error) and before the handler, makes
fatcontroller.parsers refuse a bad body on every endpoint alike, with a 400 that changes
nothing. A method the view has no handler for still answers 405.

(Not in fatcontroller.parsers: DRF's APIView reads the parser settings when it is defined,
so the module the settings name must not import it.)
"""

from rest_framework import views


class APIView(views.APIView):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        method = request.method.lower()
        if method in ("post", "put", "patch") and hasattr(self, method):
            request.data  # noqa: B018 - parsing is the point: a bad body raises ParseError
