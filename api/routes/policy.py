"""The policy: running version and reload status, validate, explain, reload."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter

from api.deps import AdminCaller, ReviewerCaller, ServicesDep
from api.schemas import (
    ExplainIn,
    ExplanationOut,
    PolicyStatusOut,
    ProblemOut,
    ValidateIn,
    ValidateOut,
)
from engine.errors import FactsError, InputError, Location
from engine.facts import vocabulary
from engine.policy import checker, explain
from engine.policy.loader import SUFFIXES, copy_rules
from engine.policy.schema import FILE_STEMS

router = APIRouter(prefix="/v1", tags=["policy"])

MAX_FILES = 32


@router.get("/policy")
def get_policy(caller: ReviewerCaller, services: ServicesDep) -> PolicyStatusOut:
    """The running policy version and the outcome of the last reload."""
    return policy_status(services)


def policy_status(services: ServicesDep) -> PolicyStatusOut:
    status = services.policy.status
    return PolicyStatusOut(
        version=services.policy.current.version,
        loaded_at=status.loaded_at,
        directory=str(services.policy.current.source.directory),
        ok=status.ok,
        problems=[ProblemOut(**p.as_dict()) for p in status.problems],  # type: ignore[arg-type]
    )


@router.post("/policy/reload")
def reload_policy(caller: AdminCaller, services: ServicesDep) -> PolicyStatusOut:
    """Load the rules directory again; a bad file keeps the running policy."""
    services.require_operator(caller, "reloading the policy")
    services.reload()
    return policy_status(services)


@router.post("/policy/validate")
def validate_policy(
    body: ValidateIn, caller: AdminCaller, services: ServicesDep
) -> ValidateOut:
    """Check a rules directory, or rule files laid over the running ones."""
    if (body.directory is None) == (body.files is None):
        raise InputError(
            "give either `directory` (a path on the server) or `files` "
            "(file name -> text), not both and not neither",
            code="E540",
            location=Location(field="directory"),
        )
    if body.directory is not None:
        # A path on the server: only the operator may make the service read it.
        services.require_operator(caller, "validating a directory on the server")
        return _report(checker.check(Path(body.directory), compile=services.compile))
    with tempfile.TemporaryDirectory(prefix="ip-validate-") as folder:
        # The uploaded files replace theirs in a copy of the running rules.
        candidate = Path(folder) / "rules"
        running = services.policy.current.source.directory
        copy_rules(running, candidate)
        _write_files(candidate, body.files or {})
        report = checker.check(candidate, compile=services.compile)
        return _report(report, strip=f"{candidate}/")


def _write_files(folder: Path, files: dict[str, str]) -> None:
    if len(files) > MAX_FILES:
        raise InputError(
            f"files: {len(files)} files given; the limit is {MAX_FILES}",
            code="E541",
            location=Location(field="files"),
        )
    for name, text in files.items():
        stem, dot, suffix = name.rpartition(".")
        if not dot or stem not in FILE_STEMS or f".{suffix}" not in SUFFIXES:
            raise InputError(
                f"files.{name}: not a rule file name; use one of "
                + ", ".join(f"{s}.yaml" for s in FILE_STEMS),
                code="E542",
                location=Location(field=f"files.{name}"),
            )
        (folder / name).write_text(text, encoding="utf-8")


def _report(report: checker.CheckReport, strip: str = "") -> ValidateOut:
    data: dict[str, Any] = report.as_dict()
    for problem in data["problems"]:
        problem["file"] = str(problem["file"]).removeprefix(strip)
    return ValidateOut(
        ok=report.errors == 0,
        errors=report.errors,
        warnings=report.warnings,
        files=report.files,
        rules=report.rules,
        problems=[ProblemOut(**p) for p in data["problems"]],
    )


@router.post("/policy/explain")
def explain_facts(
    body: ExplainIn, caller: ReviewerCaller, services: ServicesDep
) -> ExplanationOut:
    """Every rule's verdict, condition by condition, for a facts document."""
    if body.stage is not None and body.stage not in explain.STAGES:
        raise InputError(
            f"stage: {body.stage!r} is not a stage; use one of "
            + ", ".join(explain.STAGES),
            code="E543",
            location=Location(field="stage"),
        )
    problems = vocabulary.validate(body.facts)
    if problems:
        raise FactsError(problems[0].message, problems=problems)
    found = explain.explain(
        services.policy.current,
        body.facts,
        now=services.runtime.clock.now(),
        stage=body.stage,
    )
    return ExplanationOut.model_validate(explain.as_dict(found))
