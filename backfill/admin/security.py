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
* Responses are never cached and never framed (``Cache-Control: no-store``, ``X-Frame-Options: DENY``).

Refusals are JSON (``{"error": {"status", "message"}}``) and name the rule; they never echo the token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A refusal: the status, the message, extra headers.
Refusal = tuple[int, str, list[tuple[bytes, bytes]]]

MIN_ADMIN_TOKEN_LENGTH = 16
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
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


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request, for the audit table: how they got in, from where, and the name they gave (the
    ``X-Backfill-Operator`` header, recorded as claimed: only the token proves anything)."""

    via: str  # "token" or "loopback"
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = _headers(scope)
        client = scope.get("client")
        address = str(client[0]) if client else None
        refusal = self._refusal(scope, headers, address)
        if refusal is not None:
            status, message, extra = refusal
            await _send_json(send, status, {"error": {"status": status, "message": message}}, extra)
            return
        claimed = headers.get("x-backfill-operator", "").strip()[:64] or None
        if claimed is not None and not claimed.isprintable():
            claimed = None
        caller = Caller("token" if self._policy.token is not None else "loopback", address, claimed)
        scope.setdefault("state", {})["caller"] = caller

        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        await self._app(scope, receive, secured_send)

    def _refusal(self, scope: Scope, headers: dict[str, str], address: str | None) -> Refusal | None:
        return self._access_refusal(headers, address) or self._write_refusal(scope, headers)

    def _access_refusal(self, headers: dict[str, str], address: str | None) -> Refusal | None:
        """Whether the caller may use the API at all: loopback only without a token, the token with one."""
        if self._policy.token is None:
            host = _host_name(headers.get("host", ""))
            if address is None or not is_loopback(address) or not is_loopback(host):
                return 403, "without a token the admin API answers loopback requests to a loopback host only", []
            return None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given or not self._policy.token_matches(given.strip()):
            return 401, "a valid token is required: Authorization: Bearer <token>", [(b"www-authenticate", b"Bearer")]
        return None

    def _write_refusal(self, scope: Scope, headers: dict[str, str]) -> Refusal | None:
        """Whether a state-changing request may change anything: not in read-only mode, not cross-site."""
        if str(scope.get("method", "GET")).upper() not in WRITE_METHODS:
            return None
        if self._policy.read_only:
            return 403, "the admin API is read-only (BACKFILL_ADMIN_READ_ONLY): nothing can be changed through it", []
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site in ("cross-site", "same-site"):
            return 403, f"cross-site request refused (Sec-Fetch-Site: {fetch_site})", []
        origin = headers.get("origin")
        if origin is not None and origin != f"{scope.get('scheme', 'http')}://{headers.get('host', '')}":
            return 403, "cross-site request refused: Origin is not this API's own", []
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        # POST is the one write method an HTML form (or a "simple" cross-site fetch) can send without a CORS
        # preflight, and only with a form or text content type: requiring JSON closes that door. DELETE, PUT and
        # PATCH always need a preflight, which this API never grants.
        if str(scope.get("method", "")).upper() == "POST" and content_type != "application/json":
            return 415, "a POST must send Content-Type: application/json", []
        return None


def _host_name(host: str) -> str:
    """The name of a Host header without its port (``[::1]:8080`` → ``::1``)."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}


async def _send_json(send: Send, status: int, body: Any, extra: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *extra, *_SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": payload})
