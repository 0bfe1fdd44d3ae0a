"""The web dashboard: the admin API's pages for people, served beside it (``backfill.admin.AdminApi``).

Server-rendered: each page calls the same handlers as the JSON API (so a filter means the same thing in both,
and is checked the same way) and renders them with Jinja2 templates (``templates/``). One small script of our own
(``static/dashboard.js``, no build step) makes it live and runs the actions:

* it refreshes each page's figures (the ``[data-live]`` regions) every few seconds by asking the same URL for its
  live fragment (:mod:`backfill.dashboard.pages`), and pauses while the tab is hidden;
* it shows times relative and absolute in the viewer's own time zone;
* it sends actions to the JSON API with the session's CSRF token, after a confirmation, and, for a bulk action,
  after a dry run that says how many rows it would touch.

Security is the API's own (:mod:`backfill.admin.security`): loopback only without a token; with one, a login page
that sets a session cookie; read-only mode renders no actions (and the API refuses them anyway).
"""

from backfill.dashboard.pages import dashboard_routes

__all__ = ["dashboard_routes"]
