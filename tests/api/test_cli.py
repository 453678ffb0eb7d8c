"""The service commands: keys, organizations, database upgrade."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from api.cli import admin_key_lines, main
from api.service import AdminKey
from engine.runtime import SystemClock
from engine.settings import Settings
from engine.store.db import open_database
from engine.store.orgs import authenticate


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_keys_create_prints_the_key_alone_on_the_last_line(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    assert run("db", "upgrade", *data)[0] == 0
    assert run("orgs", "create", "acme", *data)[0] == 0

    status, output = run(
        "keys", "create", "--org", "acme", "--role", "reviewer", "--name", "ann", *data
    )

    key = output.splitlines()[-1]
    assert status == 0
    assert key.startswith("ipk_") and " " not in key
    database = open_database(f"sqlite:///{tmp_path / 'incident-policy.sqlite3'}")
    with database.sessions.begin() as session:
        record = authenticate(session, key, now=SystemClock().now())
        assert record is not None and (record.role, record.name) == ("reviewer", "ann")
    database.dispose()


def test_keys_list_and_revoke(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    run("db", "upgrade", *data)
    run("orgs", "create", "acme", *data)
    run("keys", "create", "--org", "acme", "--role", "source", *data)

    listed = run("keys", "list", "--org", "acme", *data)[1]
    key_id = listed.split()[0]
    status, output = run("keys", "revoke", "--org", "acme", key_id, *data)

    assert status == 0 and "revoked" in output
    assert "revoked" in run("keys", "list", "--org", "acme", *data)[1]


def test_keys_create_for_an_unknown_organization_says_how_to_make_it(
    tmp_path: Path,
) -> None:
    data = ["--data-dir", str(tmp_path)]
    run("db", "upgrade", *data)

    status, output = run("keys", "create", "--org", "nope", "--role", "admin", *data)

    assert status == 2
    assert "incident-policy orgs create nope" in output


def test_key_commands_never_create_a_database_elsewhere(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["keys", "list", "--org", "default", "--data-dir", str(tmp_path / "var")]
    )

    assert result.exit_code == 1
    assert "no database at" in result.output
    assert not (tmp_path / "var").exists()


def test_serve_on_a_taken_port_says_so_before_anything_else(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main,
            ["serve", "--port", str(port), "--no-watch", "--data-dir", str(tmp_path)],
        )

    assert result.exit_code == 1
    assert f"E509: cannot listen on 127.0.0.1:{port}" in result.output
    assert "listening on" not in result.output
    assert "admin key" not in result.output


def test_a_new_admin_key_is_printed_only_to_a_terminal(tmp_path: Path) -> None:
    new = AdminKey("ipk_secret", tmp_path / "admin.key")

    to_terminal = admin_key_lines(new, terminal=True)
    to_a_log = admin_key_lines(new, terminal=False)

    assert to_terminal[-1] == "ipk_secret"
    assert not any("ipk_secret" in line for line in to_a_log)
    assert str(tmp_path / "admin.key") in to_a_log[0]
    assert admin_key_lines(AdminKey(None, tmp_path / "admin.key"), terminal=True) == []


def test_an_organization_name_that_is_not_a_slug_is_refused(tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path))
    run("db", "upgrade", *data)

    status, output = run("orgs", "create", "Acme Corp/EU", *data)

    assert status == 2
    assert "organization name 'Acme Corp/EU' is not allowed" in output
    assert "lowercase letters, digits" in output


def test_orgs_list_shows_every_organization(tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path))
    run("db", "upgrade", *data)
    run("orgs", "create", "acme", "--auto-execute", *data)
    run("orgs", "create", "beta", *data)

    status, output = run("orgs", "list", *data)

    assert status == 0
    names = [line.split()[0] for line in output.splitlines()]
    assert names == ["acme", "beta"]
    assert output.splitlines()[0].endswith("auto-execute")


def test_key_commands_refuse_a_bad_name_and_point_at_real_orgs(tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path))
    run("db", "upgrade", *data)
    run("orgs", "create", "acme", *data)

    long_name = run(
        "keys", "create", "--org", "acme", "--role", "source", "--name", "x" * 129
    )
    cased = run("keys", "list", "--org", "Acme", *data)

    assert long_name[0] == 2
    assert "E505: --name is 129 characters long; the limit is 128" in long_name[1]
    assert cased[0] == 2
    assert "`incident-policy orgs list` shows them" in cased[1]
    assert "orgs create Acme" not in cased[1]


def test_a_bad_setting_names_its_variable(tmp_path: Path) -> None:
    status, output = run("serve", "--port", "0", "--data-dir", str(tmp_path))

    assert status == 2
    said = "port (INCIDENT_POLICY_PORT): Input should be greater than or equal to 1"
    assert said in output


@pytest.mark.parametrize(
    ("host", "allowed"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("10.1.2.3", False)],
)
def test_authentication_can_be_off_only_on_loopback(host: str, allowed: bool) -> None:
    if allowed:
        assert Settings(host=host, auth=False).auth is False
        return
    with pytest.raises(ValidationError, match="reachable from other machines"):
        Settings(host=host, auth=False)
