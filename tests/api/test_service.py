"""End to end: `incident-policy serve` as a real process on a free port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.api.conftest import ROOT
from tests.api.test_intake import free_port

DEADLINE_S = 60.0


def start_serve(
    tmp_path: Path, port: int, rules: Path, **env: str
) -> subprocess.Popen[str]:
    """`incident-policy serve` on ``port``, its data under ``tmp_path``."""
    command = Path(sys.executable).parent / "incident-policy"
    return subprocess.Popen(
        [
            *(str(command), "serve", "--port", str(port), "--no-watch"),
            *("--rules", str(rules), "--data-dir", str(tmp_path / "data")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "INCIDENT_POLICY_PM2_HOME": str(tmp_path / "pm2"), **env},
    )


def test_serve_accepts_an_alert_and_the_flow_reaches_a_decision(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    port = free_port()
    process = start_serve(tmp_path, port, rules, INCIDENT_POLICY_BODY_TIMEOUT_S="1")
    try:
        assert process.stdout is not None
        printed = [process.stdout.readline() for _ in range(4)]
        assert (
            printed[0].strip()
            == f"incident-policy listening on http://127.0.0.1:{port}"
        )
        assert printed[1].startswith("policy version ")
        # Not a terminal: the key is in the file, never in captured output.
        key_file = tmp_path / "data" / "admin.key"
        assert printed[3].strip() == (
            f"admin key created: read it from {key_file} (mode 0600)"
        )
        key = key_file.read_text().strip()
        assert key_file.stat().st_mode & 0o777 == 0o600
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            wait_until_ready(client)
            posted = client.post(
                "/v1/alerts", json={"kind": "health_check_failure", "name": "Checkout"}
            )
            assert posted.status_code == 202, posted.text
            incident_id = posted.json()["incident_ids"][0]

            status = wait_for_decision(client, incident_id)
            stalled = stalled_post(port, key)
            listed = client.get("/v1/incidents").json()["items"]

        assert status in ("awaiting_approval", "monitoring")
        assert stalled.startswith("HTTP/1.1 408 ")
        assert '"code": "E408"' in stalled
        assert "did not arrive within 1 s" in stalled
        assert [i["id"] for i in listed] == [incident_id]  # the stalled one: none
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert process.returncode == 0


def stalled_post(port: int, key: str) -> str:
    """Send half an alert and stall; return what the service answers."""
    half = b'{"kind": "threshold_exceeded", "name": "Stalled"'
    head = (
        f"POST /v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(half) + 1}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as sock:
        sock.sendall(head + half)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    return answer.decode()


def wait_until_ready(client: httpx.Client) -> None:
    started = time.monotonic()
    while time.monotonic() - started < DEADLINE_S:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the service never became ready")


def wait_for_decision(client: httpx.Client, incident_id: str) -> str:
    started = time.monotonic()
    status = "open"
    while time.monotonic() - started < DEADLINE_S:
        status = client.get(f"/v1/incidents/{incident_id}?snapshots=false").json()[
            "incident"
        ]["status"]
        if status not in ("open", "stabilizing"):
            return str(status)
        time.sleep(0.2)
    return status


def test_serve_says_so_when_authentication_is_off(tmp_path: Path) -> None:
    process = start_serve(
        tmp_path, free_port(), ROOT / "rules", INCIDENT_POLICY_AUTH="false"
    )
    try:
        assert process.stdout is not None
        printed = [process.stdout.readline().strip() for _ in range(4)]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)

    assert printed[3] == (
        "authentication is OFF (INCIDENT_POLICY_AUTH=false): every caller acts "
        "as an admin of 'default'"
    )
    # Stopped while it was still starting: it exits cleanly all the same.
    assert process.returncode == 0
