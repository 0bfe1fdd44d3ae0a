"""Logging a browser in with the admin token, and out.

``POST /login`` takes the token as a form field (a page cannot set an ``Authorization`` header on a
navigation), checks it in constant time, and sets the session cookie (:class:`backfill.admin.security.Sessions`):
``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends it), ``Secure`` over HTTPS, and
scoped to the dashboard's path. A failed login is logged with the address, never with what was typed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from backfill.admin.security import SESSION_COOKIE, SESSION_SECONDS, AccessPolicy

logger = logging.getLogger("backfill.dashboard")

MAX_FORM_BYTES = 4096
Render = Callable[[Request, str, dict[str, Any], int], Response]


def safe_next(root: str, target: str | None) -> str:
    """Where to go after logging in: a path of the dashboard's own, never another site (``//evil``, ``https:``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return f"{root}/"
    return f"{root}{target}"


async def _form(request: Request) -> dict[str, str] | None:
    """The login form's fields (``application/x-www-form-urlencoded``, at most MAX_FORM_BYTES), or ``None``.
    Two fields do not need a multipart parser: the standard library reads them."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return None
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM_BYTES:
            return None
    try:
        return dict(parse_qsl(raw.decode("utf-8"), max_num_fields=4))
    except (UnicodeDecodeError, ValueError):
        return None


def routes(render: Render) -> list[BaseRoute]:
    async def login_page(request: Request) -> Response:
        policy: AccessPolicy = request.scope["state"]["policy"]
        root = request.scope.get("root_path", "")
        if policy.token is None:  # loopback needs no login
            return RedirectResponse(f"{root}/", status_code=303)
        return render(request, "login.html", {"title": "Sign in", "next": request.query_params.get("next", "/")}, 200)

    async def log_in(request: Request) -> Response:
        policy: AccessPolicy = request.scope["state"]["policy"]
        sessions = policy.sessions()
        root = request.scope.get("root_path", "")
        if sessions is None:
            return RedirectResponse(f"{root}/", status_code=303)
        form = await _form(request)
        if form is None:
            return render(request, "login.html", {"title": "Sign in", "next": "/", "failed": True}, 400)
        token, target = form.get("token", ""), form.get("next")
        if not token or not policy.token_matches(token):
            client = request.client.host if request.client else "unknown address"
            logger.warning("dashboard login refused from %s: wrong token", client)
            return render(request, "login.html", {"title": "Sign in", "next": target or "/", "failed": True}, 401)
        response = RedirectResponse(safe_next(root, target), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            sessions.issue(),
            max_age=SESSION_SECONDS,
            path=f"{root}/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    async def log_out(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        response = RedirectResponse(f"{root}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=f"{root}/", httponly=True, samesite="strict")
        return response

    return [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", log_in, methods=["POST"]),
        Route("/logout", log_out, methods=["POST"]),
    ]
