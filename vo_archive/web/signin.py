"""Sign-in: ``/login`` exchanges a password for a token or a browser session.

For scripts and VO clients (IVOA SSO 2.0 login protocols, named by the
``ivoa_bearer`` challenges of :mod:`vo_archive.web.twin`):

- ``GET`` or ``POST /login`` with HTTP Basic (account name and password or API
  token; ``standard_id="ivo://ivoa.net/sso#BasicAA"``), or ``POST`` with the form
  fields ``username`` and ``password`` (``#tls-with-password``), answers a
  short-lived bearer token: in the ``X-VO-Bearer`` header, and in the body as
  JSON (the default) or as one line of text (``Accept: text/plain`` or
  ``FORMAT=text``).
- ``POST /logout`` with that token as ``Authorization: Bearer`` revokes it.

For browsers, ``GET /login`` shows a form; posting it (with its CSRF token, a
double-submit cookie) starts a session stored in the database and sets the
session cookie (``HttpOnly``, ``SameSite=Lax``, ``Secure`` over https).
``POST /logout`` (with the session's CSRF token) ends it. Wrong passwords count
against the same limit as HTTP Basic.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any

from flask import Blueprint, Response, g, json, redirect, render_template, request

from vo_archive import __version__, web
from vo_archive.access import current_caller
from vo_archive.vo.dali.errors import AuthorizationFault, FaultStyle, UsageFault
from vo_archive.web.auth import (
    SESSION_COOKIE,
    TooManyFailures,
    check_secret,
    close_session,
    issue_login_token,
    open_session,
    revoke_login_token,
    same_origin,
    session_csrf,
)
from vo_archive.web.openapi import Param, declare
from vo_archive.web.twin import clear_session_cookie, served_securely

log = logging.getLogger(__name__)

bp = Blueprint("signin", __name__)
web.set_fault_style(bp.name, FaultStyle.TEXT)

#: Cookie and form field of the sign-in form's CSRF token (double submit).
CSRF_COOKIE = "vo_archive_csrf"
CSRF_FIELD = "csrf_token"

declare("signin.login",
        Param("username", "account name (IVOA SSO tls-with-password)"),
        Param("password", "the account's password or one of its API tokens"),
        Param("FORMAT", "json (default) or text", {"type": "string",
                                                   "enum": ["json", "text"]}),
        Param("next", "path to go to after the sign-in form", examples=("/runs",)))
declare("signin.logout", Param(CSRF_FIELD, "the CSRF token of the signed-in page"),
        auth_required=True)


def _wants_html() -> bool:
    best = request.accept_mimetypes.best_match(
        ["application/json", "text/plain", "text/html"])
    return best == "text/html" and "text/html" in request.accept_mimetypes.values()


def _wants_text() -> bool:
    fmt = (web.params().single("FORMAT") or "").lower()
    if fmt in ("text", "text/plain"):
        return True
    if fmt in ("json", "application/json"):
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/plain"])
    return best == "text/plain" and "application/json" not in \
        request.accept_mimetypes.values()


def _next_path() -> str:
    """Return where to go after signing in: a path of this archive only."""
    target = web.params().single("next") or "/"
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _token_answer(name: str) -> Response:
    permit = issue_login_token(web.engine(), name)
    log.info("login token for %s from %s [%s]", name, request.remote_addr,
             g.get("request_id"))
    caller = current_caller()
    if _wants_text():
        resp = Response(permit.value + "\n", mimetype="text/plain")
    else:
        body: dict[str, Any] = {
            "token": permit.value, "token_type": "Bearer",
            "expires_in": permit.lifetime,
            "expires_at": permit.expires_at.isoformat(),
            "account": name, "roles": sorted(caller.roles) if caller.name == name
            else None, "logout_url": web.public_base_url() + "/logout"}
        resp = Response(json.dumps(body, indent=1), mimetype="application/json")
    resp.headers["X-VO-Bearer"] = permit.value  # IVOA ivoa_bearer login response
    resp.headers["X-VO-Authenticated"] = name
    resp.cache_control.no_store = True
    return resp


def _form(status: int = 200, message: str | None = None) -> Response:
    token = request.cookies.get(CSRF_COOKIE) or ""
    if len(token) < 32:
        token = secrets.token_urlsafe(32)
    caller = current_caller()
    html = render_template(
        "login.html", version=__version__, message=message,
        caller=None if caller.anonymous else caller, csrf=token,
        logout_csrf=session_csrf(g.session_value) if g.get("session_value") else "",
        next=_next_path())
    resp = Response(html, status=status, mimetype="text/html")
    resp.set_cookie(CSRF_COOKIE, token, path="/login", secure=served_securely(),
                    httponly=True, samesite="Strict")
    resp.cache_control.no_store = True
    return resp


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response:
    """Sign in: a bearer token for scripts, a session for the browser's form."""
    caller = current_caller()
    scheme = g.get("auth_scheme")
    form = request.form if request.method == "POST" else None
    if form is not None and CSRF_FIELD in form:
        return _form_sign_in()
    if scheme == "basic":
        return _token_answer(caller.name or "")
    if form is not None and "username" in form:
        # IVOA SSO tls-with-password: form fields, answered with a token
        if not same_origin():
            raise AuthorizationFault("cross-site sign-in refused")
        checked = check_secret(web.engine(), form.get("username", ""),
                               form.get("password", ""), request.remote_addr or "?")
        g.caller = checked
        return _token_answer(checked.name or "")
    if scheme == "bearer":
        raise UsageFault("sign in with the account name and password or API token "
                         "(HTTP Basic), not with a bearer token")
    if _wants_html():
        return _form()
    raise AuthorizationFault("send the account name and password or API token "
                             "(HTTP Basic), or the form fields username and "
                             "password, to get a token", authenticate=True)


def _form_sign_in() -> Response:
    sent = request.form.get(CSRF_FIELD, "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not (sent and cookie and hmac.compare_digest(sent, cookie)) or \
            not same_origin():
        return _form(403, "The form has expired or came from another site; "
                          "please sign in again.")
    name = request.form.get("username", "").strip()
    try:
        caller = check_secret(web.engine(), name, request.form.get("password", ""),
                              request.remote_addr or "?")
    except TooManyFailures:
        return _form(429, "Too many wrong passwords; try again in a minute.")
    except AuthorizationFault:
        return _form(403, "Wrong account name or password.")
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        close_session(web.engine(), old)  # a new session, never the old value
    permit = open_session(web.engine(), caller.name or "", request.remote_addr,
                          request.user_agent.string)
    log.info("%s signed in from %s [%s]", caller.name, request.remote_addr,
             g.get("request_id"))
    resp = redirect(web.public_base_url() + _next_path(), code=303)
    resp.set_cookie(SESSION_COOKIE, permit.value, max_age=permit.lifetime, path="/",
                    secure=served_securely(), httponly=True, samesite="Lax")
    resp.delete_cookie(CSRF_COOKIE, path="/login")
    g.stale_session = False
    return resp  # type: ignore[return-value]


@bp.post("/logout")
def logout() -> Response:
    """Sign out: end the browser session, or revoke the bearer token sent."""
    scheme = g.get("auth_scheme")
    if scheme == "cookie":
        value = g.session_value
        sent = request.form.get(CSRF_FIELD) or request.headers.get("X-CSRF-Token", "")
        if not hmac.compare_digest(sent, session_csrf(value)):
            raise AuthorizationFault("sign-out needs the page's CSRF token")
        close_session(web.engine(), value)
        log.info("%s signed out [%s]", current_caller().name, g.get("request_id"))
        resp = redirect(web.public_base_url() + "/login", code=303) \
            if _wants_html() or CSRF_FIELD in request.form else \
            Response(json.dumps({"signed_out": True}), mimetype="application/json")
        clear_session_cookie(resp)  # type: ignore[arg-type]
        return resp  # type: ignore[return-value]
    if scheme == "bearer":
        token = (request.headers.get("Authorization") or "").strip() \
            .partition(" ")[2].strip()
        if not revoke_login_token(web.engine(), token):
            raise UsageFault("this is an API token: an administrator revokes it "
                             "(vo-archive user token --revoke)")
        return Response(json.dumps({"signed_out": True}),
                        mimetype="application/json")
    if scheme is not None:
        raise UsageFault("nothing to sign out of: HTTP Basic sends the password "
                         "with every request")
    raise AuthorizationFault("not signed in", authenticate=True)
