"""The authenticated twin of every service, challenges, and caching of answers.

**The twin.** Every path of the archive also answers under ``/auth``
(``/auth/tap``, ``/auth/scs``, ``/auth/products/...``). :class:`AuthTwin`
strips the prefix before Flask routes the request, moves it to ``SCRIPT_NAME``
and marks the request, so one set of routes serves both;
:func:`vo_archive.web.auth.load_caller` answers 401 with the challenges to a twin
request without credentials (capabilities and availability stay anonymous,
VOSI 1.1 §2), and :func:`vo_archive.web.base_url` makes every URL of the
answer point into the twin. Clients that send credentials only after a 401
(Java's ``Authenticator`` behind TOPCAT and STILTS, ``curl --anyauth``) use
the twin; clients that send them up front (pyvo's ``AuthSession``, curl with
``-u``) may use either.

**Challenges** (RFC 9110 §11.6.1; IVOA "Authentication in the VO", the
``ivoa_bearer`` scheme with ``standard_id`` and ``access_url``): every 401, and
every answer to an anonymous caller where signing in would show more, carries
``WWW-Authenticate`` headers naming HTTP Basic, bearer tokens, and where and how
to exchange a password for a token (``/login``).

**Caches.** Every answer varies on ``Authorization`` and ``Cookie``; an answer
to an authenticated caller or from the twin is ``Cache-Control: private``, so
that a shared cache (a proxy in front of the archive) never hands a member's
answer to anybody else. Answers to anonymous callers keep their public caching.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Response, g, request

from vo_archive import web
from vo_archive.access import current_caller
from vo_archive.web.auth import REALM, SESSION_COOKIE

#: The login protocols of IVOA SSO 2.0 that ``/login`` speaks.
BASIC_AA = "ivo://ivoa.net/sso#BasicAA"
TLS_WITH_PASSWORD = "ivo://ivoa.net/sso#tls-with-password"  # noqa: S105 - an IVOID
#: Paths whose anonymous answers carry no challenge: they do not depend on the
#: caller (the sign-in page itself, which a browser would otherwise answer with
#: a password dialog, and the API description).
NO_CHALLENGE = ("/login", "/logout", "/openapi.json", "/static/")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class AuthTwin:
    """WSGI middleware serving every path again under :data:`web.TWIN_PREFIX`."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        """Route ``/auth/x`` as ``/x``, marked as coming through the twin."""
        path = environ.get("PATH_INFO", "")
        prefix = web.TWIN_PREFIX
        if path == prefix or path.startswith(prefix + "/"):
            environ[web.TWIN_KEY] = True
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
            environ["PATH_INFO"] = path[len(prefix):] or "/"
        return self.app(environ, start_response)


def login_url() -> str:
    """Return the URL where a password is exchanged for a token."""
    return web.public_base_url() + "/login"


def challenges() -> list[str]:
    """Return the ``WWW-Authenticate`` challenges of the archive, best first."""
    login = login_url()
    return [
        f'Basic realm="{REALM}", charset="UTF-8"',
        f'Bearer realm="{REALM}"',
        f'ivoa_bearer standard_id="{BASIC_AA}", access_url="{login}"',
        f'ivoa_bearer standard_id="{TLS_WITH_PASSWORD}", access_url="{login}"',
    ]


def _set_challenges(resp: Response) -> None:
    resp.headers.remove("WWW-Authenticate")
    for challenge in challenges():
        resp.headers.add("WWW-Authenticate", challenge)


def protect_response(resp: Response) -> Response:
    """Add caching, challenge and identity headers to an answer (``after_request``)."""
    caller = current_caller()
    resp.vary.update(("Authorization", "Cookie"))
    if not caller.anonymous or web.in_twin() or request.authorization is not None:
        cc = resp.cache_control
        cc.public = False
        cc.private = True
    if not caller.anonymous:
        # IVOA "Authentication in the VO": who the archive took the caller for
        resp.headers["X-VO-Authenticated"] = caller.name or ""
    elif resp.status_code == 401 or not request.path.startswith(NO_CHALLENGE):
        _set_challenges(resp)
    if g.get("stale_session"):
        clear_session_cookie(resp)
    return resp


def served_securely() -> bool:
    """Return whether cookies must be ``Secure``: https, here or at the proxy."""
    return request.is_secure or web.public_base_url().startswith("https://")


def clear_session_cookie(resp: Response) -> None:
    """Make the browser forget its session cookie."""
    resp.delete_cookie(SESSION_COOKIE, path="/", secure=served_securely(),
                       httponly=True, samesite="Lax")
