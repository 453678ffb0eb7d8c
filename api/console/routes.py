"""The reviewers' console: incident list, incident page, decisions as forms.

Pages are rendered on the server with Jinja2 templates; there is no
JavaScript. A reviewer signs in with an API key, which is kept in an
HTTP-only, same-site cookie (so a form on another site cannot post with
it). Every decision goes through the same engine functions as the JSON
API, records the key's name as the actor, and redirects back to the page.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.deps import COOKIE, Caller, Reader, ServicesDep, caller_for_key
from api.routes.incidents import detail
from engine.errors import IncidentPolicyError
from engine.flow import learning
from engine.flow.approvals import (
    decide_on_message,
    decide_on_proposal,
    decide_on_recommendation,
)
from engine.store.incidents import (
    IncidentFilter,
    PageRequest,
    list_incidents,
    load_incident,
)
from engine.store.models import IncidentStatus, Role

router = APIRouter(prefix="/console", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

SEE_OTHER = 303


class SignIn(Exception):
    """The console needs a reviewer key: go to the sign-in page."""


def console_caller(request: Request, services: ServicesDep) -> Caller:
    key = request.cookies.get(COOKIE)
    caller = caller_for_key(services, key) if key else None
    if caller is None or caller.role not in (Role.REVIEWER, Role.ADMIN):
        raise SignIn
    return caller


ConsoleCaller = Annotated[Caller, Depends(console_caller)]


def sign_in_redirect(request: Request, exc: Exception) -> Response:
    return RedirectResponse("/console/login", status_code=SEE_OTHER)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    return templates.TemplateResponse(request, "login.html", {"error": ""})


@router.post("/login")
def login(
    request: Request, services: ServicesDep, key: Annotated[str, Form()]
) -> Response:
    caller = caller_for_key(services, key.strip())
    if caller is None or caller.role not in (Role.REVIEWER, Role.ADMIN):
        return templates.TemplateResponse(
            request,
            "login.html",
            {"error": "That key is unknown, revoked, or not a reviewer's."},
            status_code=401,
        )
    response = RedirectResponse("/console/", status_code=SEE_OTHER)
    response.set_cookie(
        COOKIE,
        key.strip(),
        httponly=True,
        samesite="strict",
        path="/console",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/console/login", status_code=SEE_OTHER)
    response.delete_cookie(COOKIE, path="/console")
    return response


@router.get("", include_in_schema=False)
def console_root() -> Response:
    """`/console` without its slash: a relative redirect, whatever the Host."""
    return RedirectResponse("/console/", status_code=SEE_OTHER)


@router.get("/", response_class=HTMLResponse)
def incident_list(
    request: Request,
    caller: ConsoleCaller,
    session: Reader,
    status: str = "",
    severity: str = "",
    q: str = "",
    after: str | None = None,
) -> Response:
    filters = IncidentFilter(
        statuses=(status,) if status else (),
        severities=(severity,) if severity else (),
        text=q[:200],
    )
    page = list_incidents(session, caller.org_id, filters, PageRequest(50, after))
    return templates.TemplateResponse(
        request,
        "list.html",
        {
            "caller": caller,
            "page": page,
            "statuses": [s.value for s in IncidentStatus],
            "status": status,
            "severity": severity,
            "q": q,
        },
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(
    request: Request,
    incident_id: str,
    caller: ConsoleCaller,
    session: Reader,
    error: str = "",
) -> Response:
    view = load_incident(session, caller.org_id, incident_id)
    return templates.TemplateResponse(
        request,
        "incident.html",
        {
            "caller": caller,
            "d": detail(session, caller.org_id, view),
            "error": error[:500],
        },
    )


@router.post("/incidents/{incident_id}/resolve")
def resolve(
    incident_id: str,
    caller: ConsoleCaller,
    services: ServicesDep,
    root_cause: Annotated[str, Form(max_length=4000)] = "",
    category: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    def act() -> None:
        with services.database.sessions.begin() as session:
            learning.resolve(
                session,
                caller.org_id,
                incident_id,
                by=caller.actor,
                root_cause=root_cause.strip() or None,
                category=category.strip() or None,
                ids=services.runtime.ids,
                now=services.runtime.clock.now(),
            )
        services.wake.set()

    return _then_back(incident_id, act)


@router.post("/decide/{subject}/{subject_id}")
def decide(
    subject: Literal["recommendation", "message", "proposal"],
    subject_id: str,
    caller: ConsoleCaller,
    services: ServicesDep,
    incident_id: Annotated[str, Form(max_length=64)],
    verdict: Annotated[str, Form(pattern="^(approve|reject)$")],
    comment: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    approve = verdict == "approve"

    def act() -> None:
        if subject == "proposal" and approve:
            services.require_operator(caller, "approving a proposal")
        actor, ids = caller.actor, services.runtime.ids
        with services.database.sessions.begin() as session:
            now = services.runtime.clock.now()
            if subject == "recommendation":
                decide_on_recommendation(
                    session,
                    caller.org_id,
                    subject_id,
                    approve=approve,
                    actor=actor,
                    comment=comment,
                    ids=ids,
                    now=now,
                )
            elif subject == "message":
                decide_on_message(
                    session,
                    caller.org_id,
                    subject_id,
                    approve=approve,
                    actor=actor,
                    comment=comment,
                    ids=ids,
                    now=now,
                )
            else:
                decide_on_proposal(
                    session,
                    caller.org_id,
                    subject_id,
                    approve=approve,
                    actor=actor,
                    comment=comment,
                    ids=ids,
                    now=now,
                    rules_dir=services.policy.current.source.directory,
                    reload=services.reload,
                )
        services.wake.set()

    return _then_back(incident_id, act)


def _then_back(incident_id: str, act: Callable[[], None]) -> Response:
    target = f"/console/incidents/{quote(incident_id, safe='')}"
    try:
        act()
    except IncidentPolicyError as exc:
        return RedirectResponse(
            f"{target}?error={quote(exc.code + ': ' + exc.message)}",
            status_code=SEE_OTHER,
        )
    return RedirectResponse(target, status_code=SEE_OTHER)
