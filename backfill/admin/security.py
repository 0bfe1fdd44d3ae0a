"""Who may use the admin API, and how: the rules every request passes before any handler runs.

Secure by default, as an API that cancels and deletes jobs must be:

* **Without a token** the API answers loopback requests only: the client's address must be a loopback address
  *and* the ``Host`` header must name one (``localhost``, ``127.0.0.1``, ``[::1]``), so a web page that rebinds
  its own domain to 127.0.0.1 (DNS rebinding) is refused too. ``backfill run`` refuses to start off loopback
  without a token (see settings), and an application that mounts the API elsewhere still gets this rule.
* **With a token** every request needs ``Authorization: Bearer <token>``. The comparison is of SHA-256 digests
  with :func:`hmac.compare_digest`: its time depends neither on where a wrong token first differs nor on its
  length (``tests/integration/test_admin_security.py`` measures it).
* **Read-only mode** refuses every state-changing request (403).
* **Cross-site requests** cannot change anything: a POST must be ``application/json`` (an HTML form cannot
  send that cross-site without a CORS preflight, which this API never grants; other write methods always need
  one), and a browser's ``Origin`` must be the API's own and its ``Sec-Fetch-Site`` not ``cross-site`` or
  ``same-site``.
* **Browsers** (the dashboard, :mod:`backfill.dashboard`) log in once with the token and then carry a session
  cookie (:class:`Sessions`: signed with a key derived from the token, ``HttpOnly``, ``SameSite=Strict``, 12 hours).
  A write made with that cookie must also carry the session's CSRF token in ``X-Backfill-CSRF``, which only a
  page of the dashboard can read. A page asked for without either is redirected to the login page.
* Responses are never cached and never framed (``Cache-Control: no-store``, ``X-Frame-Options: DENY``).

Refusals are JSON (``{"error": {"status", "message"}}``) and name the rule; they never echo the token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A refusal: the status, the message, extra headers.
Refusal = tuple[int, str, list[tuple[bytes, bytes]]]

MIN_ADMIN_TOKEN_LENGTH = 16
SESSION_COOKIE = "backfill_session"
SESSION_SECONDS = 12 * 3600
CSRF_HEADER = "x-backfill-csrf"
# Reachable before logging in; the guard's other rules (loopback, cross-site) still apply to them.
PUBLIC_PATHS = frozenset({"/login"})
PUBLIC_PREFIXES = ("/static/",)
# Writes that are not the queue's: a login form posts form fields (it has no session to carry a CSRF token yet),
# and logging in or out is allowed in read-only mode.
SESSION_PATHS = frozenset({"/login", "/logout"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_LOOPBACK_ONLY = "without a token the admin API answers loopback requests to a loopback host only"
_TOKEN_REQUIRED = "a valid token is required: Authorization: Bearer <token>"
_SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine only."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The rules of one admin API: its token (``None``: loopback only) and whether it is read-only."""

    token: str | None = None
    read_only: bool = False

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(f"the admin token must be at least {MIN_ADMIN_TOKEN_LENGTH} characters")

    def token_matches(self, given: str) -> bool:
        """Constant-time: digests of equal length, compared with hmac.compare_digest."""
        assert self.token is not None
        return hmac.compare_digest(_digest(given), _digest(self.token))

    def sessions(self) -> Sessions | None:
        """The browser sessions this token signs (``None`` without a token: loopback needs no login)."""
        return None if self.token is None else Sessions(self.token)


class Sessions:
    """Session cookies and CSRF tokens signed with a key derived from the admin token.

    A cookie is ``<expires>.<nonce>.<mac>``: nothing is stored server-side, so any process serving the same token
    accepts it, and changing the token ends every session. Its CSRF token is a MAC of its nonce: a page of the
    dashboard embeds it, and a cross-site page, which cannot read the dashboard's pages, cannot know it.
    """

    def __init__(self, token: str) -> None:
        self._key = hmac.new(_digest(token), b"backfill dashboard sessions", hashlib.sha256).digest()

    def _mac(self, purpose: str, text: str) -> str:
        return hmac.new(self._key, f"{purpose}:{text}".encode(), hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + SESSION_SECONDS)
        body = f"{expires}.{secrets.token_urlsafe(18)}"
        return f"{body}.{self._mac('session', body)}"

    def valid(self, cookie: str, now: float | None = None) -> bool:
        expires, _, rest = cookie.partition(".")
        nonce, _, mac = rest.partition(".")
        if not expires.isdigit() or not nonce or not mac:
            return False
        if not hmac.compare_digest(mac.encode(), self._mac("session", f"{expires}.{nonce}").encode()):
            return False
        return int(expires) > (time.time() if now is None else now)

    def csrf_token(self, cookie: str) -> str:
        """The CSRF token of a (valid) session cookie."""
        return self._mac("csrf", cookie.split(".")[1])

    def csrf_matches(self, cookie: str, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.csrf_token(cookie).encode())


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request, for the audit table: how they got in, from where, and the name they gave (the
    ``X-Backfill-Operator`` header, recorded as claimed: only the token proves anything)."""

    via: str  # "token", "session" (a browser logged in with the token) or "loopback"
    address: str | None
    claimed_name: str | None

    def describe(self) -> str:
        name = self.claimed_name or "anonymous"
        return f"{name} ({self.via}, {self.address or 'unknown address'})"


class AdminGuard:
    """ASGI middleware applying an :class:`AccessPolicy` (see the module docstring); puts the
    :class:`Caller` in ``scope["state"]["caller"]`` for the handlers."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self._app = app
        self._policy = policy
        self._sessions = policy.sessions()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = _headers(scope)
        client = scope.get("client")
        address = str(client[0]) if client else None
        path = _path(scope)
        via, refusal = self._access(scope, headers, address, path)
        refusal = refusal or self._write_refusal(scope, headers, path, via)
        if refusal is not None:
            status, message, extra = refusal
            if status == 401 and _wants_page(scope, headers, path):
                await _redirect_to_login(send, scope, path)
                return
            await _send_json(send, status, {"error": {"status": status, "message": message}}, extra)
            return
        claimed = headers.get("x-backfill-operator", "").strip()[:64] or None
        if claimed is not None and not claimed.isprintable():
            claimed = None
        state = scope.setdefault("state", {})
        state["caller"] = Caller(via or "anonymous", address, claimed)
        state["policy"] = self._policy
        state["session"] = self._session_cookie(headers) if via == "session" else None

        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        await self._app(scope, receive, secured_send)

    def _access(
        self, scope: Scope, headers: dict[str, str], address: str | None, path: str
    ) -> tuple[str | None, Refusal | None]:
        """How the caller got in ("loopback", "token", "session"; ``None`` for a public path before logging in),
        or why not: loopback only without a token; with one, the token or a session cookie signed with it."""
        if self._policy.token is None:
            host = _host_name(headers.get("host", ""))
            if address is None or not is_loopback(address) or not is_loopback(host):
                return None, (
                    403,
                    "without a token the admin API answers loopback requests to a loopback host only",
                    [],
                )
            return "loopback", None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given and self._policy.token_matches(given.strip()):
            return "token", None
        if self._session_cookie(headers) is not None:
            return "session", None
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return None, None
        return None, (
            401,
            "a valid token is required: Authorization: Bearer <token>",
            [(b"www-authenticate", b"Bearer")],
        )

    def _session_cookie(self, headers: dict[str, str]) -> str | None:
        if self._sessions is None:
            return None
        cookie = _cookies(headers).get(SESSION_COOKIE)
        return cookie if cookie is not None and self._sessions.valid(cookie) else None

    def _write_refusal(  # noqa: PLR0911 (one return per rule, in the order they are checked)
        self, scope: Scope, headers: dict[str, str], path: str, via: str | None
    ) -> Refusal | None:
        """Whether a state-changing request may change anything: not in read-only mode, not cross-site, and from a
        browser session only with the session's CSRF token."""
        if str(scope.get("method", "GET")).upper() not in WRITE_METHODS:
            return None
        session_path = path in SESSION_PATHS
        if self._policy.read_only and not session_path:
            return 403, "the admin API is read-only (BACKFILL_ADMIN_READ_ONLY): nothing can be changed through it", []
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site in ("cross-site", "same-site"):
            return 403, f"cross-site request refused (Sec-Fetch-Site: {fetch_site})", []
        origin = headers.get("origin")
        if origin is not None and origin != f"{scope.get('scheme', 'http')}://{headers.get('host', '')}":
            return 403, "cross-site request refused: Origin is not this API's own", []
        if via == "session" and path != "/login":  # the login form has no session to take a token from
            assert self._sessions is not None
            cookie = self._session_cookie(headers)
            if cookie is None or not self._sessions.csrf_matches(cookie, headers.get(CSRF_HEADER, "")):
                return 403, "a write from a browser session needs the page's CSRF token (X-Backfill-CSRF)", []
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        # POST is the one write method an HTML form (or a "simple" cross-site fetch) can send without a CORS
        # preflight, and only with a form or text content type: requiring JSON closes that door. DELETE, PUT and
        # PATCH always need a preflight, which this API never grants. The login form is the exception: it changes
        # nothing but the browser's own cookie, and the Origin and Sec-Fetch-Site rules above still apply to it.
        if str(scope.get("method", "")).upper() == "POST" and content_type != "application/json" and not session_path:
            return 415, "a POST must send Content-Type: application/json", []
        return None


def _host_name(host: str) -> str:
    """The name of a Host header without its port (``[::1]:8080`` → ``::1``)."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _path(scope: Scope) -> str:
    """The path inside the API's mount (what its routes see)."""
    path = str(scope.get("path", "/"))
    root = str(scope.get("root_path", ""))
    return path[len(root) :] or "/" if root and path.startswith(root) else path


def _cookies(headers: dict[str, str]) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            cookies.setdefault(name, value)
    return cookies


def _wants_page(scope: Scope, headers: dict[str, str], path: str) -> bool:
    """A browser navigating to a page (not the JSON API, not a script's fetch)."""
    return (
        str(scope.get("method", "GET")).upper() == "GET"
        and not path.startswith("/api/")
        and "text/html" in headers.get("accept", "")
    )


async def _redirect_to_login(send: Send, scope: Scope, path: str) -> None:
    query = scope.get("query_string", b"").decode("latin-1")
    target = path + ("?" + query if query else "")
    location = f"{scope.get('root_path', '')}/login?{urlencode({'next': target})}"
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0"), *_SECURITY_HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": b""})


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}


async def _send_json(send: Send, status: int, body: Any, extra: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *extra, *_SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": payload})
