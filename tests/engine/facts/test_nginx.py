from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.facts.errors import CollectorError
from engine.facts.nginx import (
    NginxCollector,
    config_verdict,
    parse_stub_status,
    pid_file_of,
)
from engine.runtime import SubprocessRunner
from tests.engine.facts.conftest import FIXTURES, assert_valid
from tests.support.realhost import Nginx, free_port

NGINX = FIXTURES / "nginx"


def captured_test(name: str) -> tuple[int, str]:
    """An ``nginx -t`` capture: its stderr lines and its ``rc=`` line."""
    lines = (NGINX / f"nginx_t_{name}.txt").read_text().splitlines()
    return int(lines[-1].removeprefix("rc=")), "\n".join(lines[:-1])


@pytest.mark.parametrize(
    "name",
    [
        "broken_missing_cert",
        "broken_missing_semicolon",
        "broken_unbalanced_brace",
        "broken_unknown_directive",
    ],
)
def test_broken_configurations_fail_with_their_emerg_message(name: str) -> None:
    status, stderr = captured_test(name)
    verdict = config_verdict(status, stderr)
    assert verdict.ok is False
    assert any(m.startswith("[emerg]") for m in verdict.messages)


def test_warning_still_passes_and_is_kept() -> None:
    verdict = config_verdict(*captured_test("warn_conflicting_server_name"))
    assert verdict.ok is True
    assert verdict.messages[0].startswith("[warn] conflicting server name")


def test_good_configuration_passes() -> None:
    assert config_verdict(*captured_test("good")).ok is True


def test_permission_denied_gives_no_verdict() -> None:
    stderr = (
        'nginx: [emerg] open() "/run/nginx.pid" failed (13: Permission denied)\n'
        "nginx: configuration file /etc/nginx/nginx.conf test failed"
    )
    assert config_verdict(1, stderr).ok is None


def test_captured_stub_status_is_parsed() -> None:
    captured = json.loads((NGINX / "traffic_result.json").read_text())
    before = parse_stub_status(captured["stub_before"])
    after = parse_stub_status(captured["stub_after"])
    assert before is not None and after is not None
    # the capture's requests, its raw GARBAGE request and the final status read
    assert after.requests - before.requests == len(captured["codes"]) + 2
    assert after.active == 1 and after.waiting == 0


def test_pid_file_comes_from_the_configuration(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text("# pid /not/this;\nworker_processes 1;\npid /run/x/nginx.pid;\n")
    assert pid_file_of(conf) == Path("/run/x/nginx.pid")


def collector(nginx: Nginx, **options: object) -> NginxCollector:
    settings: dict[str, object] = {
        "nginx_bin": nginx.binary,
        "nginx_conf": nginx.conf,
        "status_url": nginx.status_url,
        "timeout_s": 10.0,
    }
    settings.update(options)
    return NginxCollector(SubprocessRunner(), **settings)  # type: ignore[arg-type]


def test_real_nginx_is_running_with_a_valid_config(nginx: Nginx) -> None:
    facts = collector(nginx).collect(datetime.now(UTC))
    section = facts["nginx"]
    assert section["running"] is True
    assert section["workers"] == len(nginx.worker_pids())
    assert section["config_ok"] is True
    assert section["requests_total"] >= 1
    assert section["error"] is None
    assert_valid(facts)


def test_real_nginx_test_of_a_broken_config_fails(nginx: Nginx, tmp_path: Path) -> None:
    broken = tmp_path / "broken.conf"
    broken.write_text(nginx.conf.read_text().replace("events {", "events {{", 1))
    facts = collector(
        nginx, nginx_conf=broken, pid_file=nginx.prefix / "logs/nginx.pid"
    )
    section = facts.collect(datetime.now(UTC))["nginx"]
    assert section["config_ok"] is False
    assert any("[emerg]" in m for m in section["config_messages"])
    assert section["running"] is True


def test_stale_pid_file_is_not_a_running_server(nginx: Nginx, tmp_path: Path) -> None:
    stale = tmp_path / "nginx.pid"
    stale.write_text("999999999\n")
    section = collector(nginx, pid_file=stale).collect(datetime.now(UTC))["nginx"]
    assert section["running"] is False and section["workers"] == 0


def test_unreachable_status_page_leaves_counters_null(nginx: Nginx) -> None:
    url = f"http://127.0.0.1:{free_port()}/nginx_status"
    section = collector(nginx, status_url=url).collect(datetime.now(UTC))["nginx"]
    assert section["connections_active"] is None
    assert section["requests_total"] is None
    assert url in section["error"]


def test_nothing_observable_is_a_failure(tmp_path: Path) -> None:
    missing = NginxCollector(
        SubprocessRunner(),
        nginx_bin=str(tmp_path / "no-nginx"),
        pid_file=tmp_path / "nginx.pid",
        status_url=f"http://127.0.0.1:{free_port()}/nginx_status",
        timeout_s=2,
    )
    with pytest.raises(CollectorError) as raised:
        missing.collect(datetime.now(UTC))
    assert "nginx -t gave no verdict" in raised.value.message


def test_relative_paths_of_the_configuration_are_the_prefix_s(
    nginx: Nginx, tmp_path: Path
) -> None:
    # The session nginx's config with its pid and error log made relative:
    # `nginx -t` finds them only under the `-p` prefix the actions use too.
    conf = tmp_path / "relative.conf"
    text = nginx.conf.read_text()
    for name in ("nginx.pid", "error.log"):
        text = text.replace(f"{nginx.prefix}/logs/{name}", f"logs/{name}", 1)
    conf.write_text(text)

    section = collector(nginx, nginx_conf=conf, nginx_prefix=nginx.prefix).collect(
        datetime.now(UTC)
    )["nginx"]

    assert section["config_ok"] is True, section["config_messages"]
    assert section["running"] is True
    assert pid_file_of(conf, nginx.prefix) == nginx.prefix / "logs" / "nginx.pid"
