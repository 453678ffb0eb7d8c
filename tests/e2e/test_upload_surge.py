"""An upload surge: nginx limits uploads, and lifts the limit on resolution."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.host import RealHost, snapshot_of, stabilizing, verified
from tests.support.realhost import Nginx

SURGE = 40
BURST = 5
BODY = b"p" * 4096


def post_uploads(nginx: Nginx, count: int) -> Counter[int]:
    return Counter(nginx.post(f"/upload/photo-{n}.jpg", BODY) for n in range(count))


@pytest.fixture
def snippets(nginx: Nginx) -> Iterator[list[str]]:
    """The rate limit's files; removed and nginx reloaded if a test leaves them."""
    name = "incident-policy-rate-limit.conf"
    paths = [nginx.prefix / "conf" / part / name for part in ("http.d", "server.d")]
    try:
        yield [str(p) for p in paths]
    finally:
        if any(p.exists() for p in paths):
            for path in paths:
                path.unlink(missing_ok=True)
            reload = nginx.argv("-s", "reload")
            subprocess.run(reload, check=True, capture_output=True, timeout=10)


def test_upload_surge_is_rate_limited_then_lifted_on_resolution(
    real_host: Callable[..., RealHost], nginx: Nginx, snippets: list[str]
) -> None:
    host = real_host(rate="1r/s", burst=BURST)
    assert host.tick("watch-upload-surge") == []  # a quiet baseline window

    assert post_uploads(nginx, SURGE) == {201: SURGE}
    raised = host.tick_until("watch-upload-surge")
    host.drain()

    view = host.view(raised.incident_id)
    assert view.incident.type == "upload_spike"
    seen = snapshot_of(view, "initial")["uploads"]
    assert seen["requests"] == SURGE and seen["rate_vs_baseline"] >= 3.0

    [limit] = stabilizing(view)
    assert (limit.action, limit.target, limit.status) == (
        "rate_limit",
        "uploads",
        "succeeded",
    )
    nginx_cmd = [nginx.binary, "-p", str(nginx.prefix), "-c", str(nginx.conf)]
    # The pid file is configured, so the one `nginx -T` tests the written files.
    assert limit.command == [
        [*nginx_cmd, "-t"],
        [*nginx_cmd, "-T"],
        [*nginx_cmd, "-s", "reload"],
    ]
    assert verified(limit)["ok"] is True
    assert "started new workers" in verified(limit)["message"]
    assert limit.undo_data == {"files": snippets}

    # One request and the burst pass at once; then about one a second.
    limited = post_uploads(nginx, 30)
    assert set(limited) == {201, 429} and limited[429] >= 10
    assert nginx.get("/health") == 200  # only the upload routes are limited

    host.resolve(raised.incident_id, "marketing campaign upload rush", "capacity")

    closed = host.view(raised.incident_id)
    [undo] = [a for a in closed.actions if a.origin == "undo"]
    assert (undo.action, undo.status, undo.undo_of) == (
        "rate_limit",
        "succeeded",
        limit.id,
    )
    assert closed.incident.status == "resolved" and len(closed.reviews) == 1
    assert not any(os.path.lexists(p) for p in snippets)
    assert post_uploads(nginx, 20) == {201: 20}
