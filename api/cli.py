"""The ``incident-policy`` command line.

``serve`` runs the service (uvicorn on loopback by default), ``db upgrade``
migrates the database, ``orgs`` and ``keys`` manage organizations and their
API keys, ``rules`` checks, tests and explains a rules directory. Settings
come from ``INCIDENT_POLICY_*`` variables, with the flags laid over them.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError
from sqlalchemy import select

from api import logs
from engine.errors import IncidentPolicyError, InputError, Location
from engine.policy import checker, explain, ruletests
from engine.policy.compiler import compile_policy
from engine.policy.loader import load
from engine.policy.policy import Compile
from engine.runtime import Runtime, SystemClock
from engine.settings import Settings
from engine.sources.alert import check_text
from engine.store.db import Database, open_database, upgrade
from engine.store.models import Organization
from engine.store.orgs import (
    ORG_NAME,
    check_org_name,
    create_api_key,
    create_org,
    find_org,
    list_api_keys,
    revoke_api_key,
)

if TYPE_CHECKING:
    from api.service import AdminKey

COMPILE: Compile = compile_policy
KEY_NAME_CHARS = 128  # as the API allows
"""The backend ``rules`` commands compile the policy with: the service's."""

FORMATS = click.Choice(["text", "json"])
RULES_DIR = click.Path(file_okay=False, path_type=Path)


@click.group()
def main() -> None:
    """Rules-engine driven incident policy service."""


@main.group()
def rules() -> None:
    """Check, test and explain a rules directory."""


@rules.command("check")
@click.argument("directory", type=RULES_DIR, default=Path("rules"))
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
def check_command(directory: Path, fmt: str) -> None:
    """Validate every rule file in DIRECTORY; exit 1 on errors.

    Each problem prints as file:line:column: rule-id: code: message.
    Warnings alone exit 0.
    """
    report = checker.check(directory, compile=COMPILE)
    _emit(report.render(), report.as_dict(), fmt)
    sys.exit(report.exit_status)


@rules.command("test")
@click.argument("directory", type=RULES_DIR, default=Path("rules"))
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@click.option("--verbose", "-v", is_flag=True, help="List passing cases too.")
def test_command(directory: Path, fmt: str, verbose: bool) -> None:
    """Run the rule tests in DIRECTORY/tests; exit 1 on a failure or error."""
    report = ruletests.run_tests(directory, compile=COMPILE)
    _emit(report.render(verbose=verbose), report.as_dict(), fmt)
    sys.exit(report.exit_status)


@rules.command("explain")
@click.argument("facts", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--stage", type=click.Choice(explain.STAGES), help="Only this stage.")
@click.option(
    "--rules",
    "directory",
    type=RULES_DIR,
    default=Path("rules"),
    show_default=True,
    help="The rules directory.",
)
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
def explain_command(facts: Path, stage: str | None, directory: Path, fmt: str) -> None:
    """Show why each rule did or did not fire for FACTS.

    FACTS is a facts document (JSON or YAML) or a scenario file. Every
    condition is shown with the value found at its path and its verdict, then
    the stage's outcome after conflict resolution.
    """
    try:
        document = explain.read_facts(facts)
        policy = COMPILE(load(directory))
    except IncidentPolicyError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(1)
    found = explain.explain(policy, document, now=SystemClock().now(), stage=stage)
    text = explain.render_text(found, color=fmt == "text" and sys.stdout.isatty())
    _emit(text, explain.as_dict(found), fmt)


def _settings(**flags: Any) -> Settings:
    given = {name: value for name, value in flags.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        if where in Settings.model_fields:
            # Say it as the operator set it: a flag or the variable.
            where = f"{where} (INCIDENT_POLICY_{where.upper()})"
        raise click.UsageError(f"{where}: {first.get('msg')}") from exc


DATABASE_URL = click.option(
    "--database-url", help="SQLite or PostgreSQL URL (default: SQLite in data dir)."
)
DATA_DIR = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Data dir."
)


@main.command("serve")
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8080).")
@click.option("--no-watch", is_flag=True, help="Do not watch this host.")
@click.option("--watch-interval", type=float, help="Seconds between host looks.")
@click.option("--mode", type=click.Choice(["auto", "dry_run", "off"]))
@click.option("--rules", "rules_dir", type=RULES_DIR, help="The rules directory.")
@click.option("--workers", type=int, help="Flow worker threads (PostgreSQL).")
@click.option("--log-level", default="INFO", show_default=True)
@DATABASE_URL
@DATA_DIR
def serve_command(
    host: str | None,
    port: int | None,
    no_watch: bool,
    watch_interval: float | None,
    mode: str | None,
    rules_dir: Path | None,
    workers: int | None,
    log_level: str,
    database_url: str | None,
    data_dir: Path | None,
) -> None:
    """Run the service: the API, the flow workers and the host watcher."""
    logs.configure(log_level)
    settings = _settings(
        host=host,
        port=port,
        watch=False if no_watch else None,
        watch_interval_s=watch_interval,
        mode=mode,
        rules_dir=rules_dir,
        workers=workers,
        database_url=database_url,
        data_dir=data_dir,
    )
    try:
        serve(settings)
    except IncidentPolicyError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(1)


def serve(settings: Settings) -> None:
    import uvicorn

    from api.app import create_app
    from api.service import Service

    # Until the policy is loaded there is nothing to reload: a SIGHUP must not
    # end the process (its default), only be ignored.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _port_free(settings.host, settings.port)
    service = Service(settings, compile=COMPILE)
    admin = service.ensure_admin_key()
    app = create_app(settings, services=service.services)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            server_header=False,
        )
    )
    _install_sighup(service)
    _stop_on_signals(server)
    service.start()
    where = f"http://{_bracketed(settings.host)}:{settings.port}"
    click.echo(f"incident-policy listening on {where}")
    click.echo(
        f"policy version {service.holder.current.version[:12]} from "
        f"{settings.rules_dir.resolve()}"
    )
    click.echo(f"database {service.database.url.render_as_string()}")
    if not settings.auth:
        click.echo(
            "authentication is OFF (INCIDENT_POLICY_AUTH=false): every caller "
            f"acts as an admin of {settings.default_org!r}"
        )
    for line in admin_key_lines(admin, terminal=sys.stdout.isatty()):
        click.echo(line)
    try:
        server.run()
    finally:
        service.stop()


def admin_key_lines(admin: AdminKey, *, terminal: bool) -> list[str]:
    """What ``serve`` says of a new admin key: the key itself only to a
    terminal; output captured by a log (systemd, docker) gets only the file."""
    if not admin.key:
        return []
    if not terminal:
        return [f"admin key created: read it from {admin.path} (mode 0600)"]
    return [f"admin key (shown once, also in {admin.path}, mode 0600):", admin.key]


def _port_free(host: str, port: int) -> None:
    """Fail before announcing anything when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InputError(
                f"cannot listen on {host}:{port} ({exc.strerror}): stop what uses "
                "it, or pass --port (INCIDENT_POLICY_PORT)",
                code="E509",
                location=Location(field="port"),
            ) from exc


def _stop_on_signals(server: Any) -> None:
    """SIGTERM and SIGINT stop the server, also while it is still starting.

    While it serves, uvicorn's own handlers take the signal and, once shut
    down, raise it again with these: they only ask the server to exit, so the
    flow threads stop cleanly afterwards and the process exits 0 instead of
    dying by the signal. Before uvicorn listens, they make it exit at once.
    """

    def stop(number: int, frame: Any) -> None:
        server.should_exit = True

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, stop)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _install_sighup(service: Any) -> None:
    from engine.policy.holder import PolicyHolder, install_sighup

    if isinstance(service.holder, PolicyHolder):
        install_sighup(service.holder)


@main.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@DATABASE_URL
@DATA_DIR
def db_upgrade(database_url: str | None, data_dir: Path | None) -> None:
    """Apply the migrations to the database (safe to run again)."""
    settings = _settings(database_url=database_url, data_dir=data_dir)
    try:
        revision = upgrade(settings.resolved_database_url)
    except IncidentPolicyError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(1)
    click.echo(f"database at revision {revision}")


@main.group()
def orgs() -> None:
    """Organizations."""


@orgs.command("create")
@click.argument("name")
@click.option("--auto-execute", is_flag=True, help="Let low-risk steps run alone.")
@DATABASE_URL
@DATA_DIR
def orgs_create(
    name: str, auto_execute: bool, database_url: str | None, data_dir: Path | None
) -> None:
    """Create organization NAME (lowercase letters, digits, '.', '_', '-')."""
    try:
        check_org_name(name)
    except IncidentPolicyError as exc:
        raise click.BadParameter(
            f"{exc.code}: {exc.message}", param_hint="NAME"
        ) from exc
    with (
        _database(database_url, data_dir) as (database, runtime),
        database.sessions.begin() as session,
    ):
        if find_org(session, name) is not None:
            raise click.UsageError(f"organization {name!r} already exists")
        org = create_org(
            session,
            ids=runtime.ids,
            name=name,
            now=runtime.clock.now(),
            auto_execute=auto_execute,
        )
        click.echo(f"organization {org.name} ({org.id})")


@orgs.command("list")
@DATABASE_URL
@DATA_DIR
def orgs_list(database_url: str | None, data_dir: Path | None) -> None:
    """List the organizations."""
    with (
        _database(database_url, data_dir) as (database, _),
        database.readers() as session,
    ):
        for org in session.scalars(select(Organization).order_by(Organization.name)):
            auto = "  auto-execute" if org.auto_execute else ""
            click.echo(f"{org.name}  {org.id}{auto}")


@main.group()
def keys() -> None:
    """API keys: create (the key is printed once), list, revoke."""


@keys.command("create")
@click.option("--org", "org_name", required=True, help="The organization's name.")
@click.option(
    "--role", required=True, type=click.Choice(["source", "reviewer", "admin"])
)
@click.option("--name", default="", help="Who or what uses the key.")
@DATABASE_URL
@DATA_DIR
def keys_create(
    org_name: str,
    role: str,
    name: str,
    database_url: str | None,
    data_dir: Path | None,
) -> None:
    """Make a key; it is printed alone on the last line, and only this once."""
    try:
        check_text(name, "--name", KEY_NAME_CHARS)
    except IncidentPolicyError as exc:
        raise click.BadParameter(f"{exc.code}: {exc.message}") from exc
    with (
        _database(database_url, data_dir) as (database, runtime),
        database.sessions.begin() as session,
    ):
        org = _org(session, org_name)
        issued = create_api_key(
            session,
            ids=runtime.ids,
            org_id=org.id,
            role=role,
            now=runtime.clock.now(),
            name=name,
        )
    click.echo(f"{role} key {issued.record.id} for {org_name}; store it now:")
    click.echo(issued.key)


@keys.command("list")
@click.option("--org", "org_name", required=True, help="The organization's name.")
@DATABASE_URL
@DATA_DIR
def keys_list(org_name: str, database_url: str | None, data_dir: Path | None) -> None:
    """List an organization's keys (prefixes only)."""
    with (
        _database(database_url, data_dir) as (database, _),
        database.readers() as session,
    ):
        org = _org(session, org_name)
        for key in list_api_keys(session, org.id):
            state = "revoked" if key.revoked_at else "active"
            click.echo(
                f"{key.id}  {key.prefix}...  {key.role:8}  {state:7}  {key.name}"
            )


@keys.command("revoke")
@click.option("--org", "org_name", required=True, help="The organization's name.")
@click.argument("key_id")
@DATABASE_URL
@DATA_DIR
def keys_revoke(
    org_name: str, key_id: str, database_url: str | None, data_dir: Path | None
) -> None:
    """Revoke KEY_ID (running services stop accepting it within seconds)."""
    with (
        _database(database_url, data_dir) as (database, runtime),
        database.sessions.begin() as session,
    ):
        org = _org(session, org_name)
        try:
            done = revoke_api_key(session, org.id, key_id, now=runtime.clock.now())
        except IncidentPolicyError as exc:
            raise click.UsageError(f"{exc.code}: {exc.message}") from exc
    if not done:
        raise click.UsageError(f"no active key {key_id} in {org_name}")
    click.echo(f"revoked {key_id}")


def _org(session: Any, name: str) -> Any:
    org = find_org(session, name)
    if org is None and not ORG_NAME.fullmatch(name):
        raise click.UsageError(
            f"organization {name!r} does not exist (names are lowercase: "
            "`incident-policy orgs list` shows them)"
        )
    if org is None:
        raise click.UsageError(
            f"organization {name!r} does not exist: create it with "
            f"`incident-policy orgs create {name}`"
        )
    return org


@contextmanager
def _database(
    database_url: str | None, data_dir: Path | None
) -> Iterator[tuple[Database, Runtime]]:
    settings = _settings(database_url=database_url, data_dir=data_dir)
    url = settings.resolved_database_url
    if (
        url.startswith("sqlite:///")
        and not Path(url.removeprefix("sqlite:///")).exists()
    ):
        # Opening would create an empty database beside the real one.
        click.echo(
            f"no database at {url.removeprefix('sqlite:///')}: run this where the "
            "service runs or pass --data-dir (or --database-url) pointing at its "
            "database; `incident-policy db upgrade` creates a new one",
            err=True,
        )
        sys.exit(1)
    try:
        database = open_database(url)
    except IncidentPolicyError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(1)
    try:
        yield database, Runtime.system()
    finally:
        database.dispose()


def _emit(text: str, data: Any, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        click.echo(text)


def _register() -> None:
    from api.replay_command import replay_command

    main.add_command(replay_command)


_register()
