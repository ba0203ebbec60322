"""The service page's answers without a browser, over a real HTTP stub of the service's contract:
the A/B report is rendered field by field, missing endpoints and errors become messages."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from recstack.errors import ConfigError
from recstack.web.remote import ServiceClient, answer_experiments, answer_rate, answer_recs, answer_report

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
REPORT = {"experiment": "e1", "variants": [
    {"name": "control", "users": 4000, "exposures": 12000, "mean": 0.1002, "ci": [0.0907, 0.1097]},
    {"name": "mmr", "users": 3950, "exposures": 11800, "mean": 0.1204, "ci": [0.1102, 0.1306]}],
    "lift": {"value": 0.2016, "ci": [0.05, 0.36], "p_value": 0.0001}, "verdict": "mmr wins",
    "srm": {"chi2": 0.32, "p_value": 0.57, "mismatch": False}}


class Stub(BaseHTTPRequestHandler):
    """Answers like a service with one experiment; `experiments` switches the A/B endpoints off."""

    experiments = True
    seen: list[tuple[str, str, dict | None, str | None]] = []

    def _send(self, status: int, body: object, kind: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append(("GET", self.path, None, self.headers.get("Authorization")))
        path = self.path.split("?")[0]
        if path.startswith("/experiments") and not self.experiments:
            self._send(404, {"detail": "Not Found"})
        elif path == "/experiments":
            self._send(200, {"experiments": [{"id": "e1", "name": "mmr vs plain", "status": "running"}]})
        elif path == "/experiments/e1/report":
            self._send(200, REPORT)
        elif path == "/experiments/e1/lift.png":
            self._send(200, PNG, "image/png")
        elif path == "/users/7/recommendations":
            self._send(200, {"user": "7", "score_kind": "rating", "fallback": None, "model_version": 3, "items": [
                {"item": "50", "label": "Star Wars (1977)", "title": "Star Wars", "year": 1977, "genres": ["Sci-Fi"],
                 "rank": 1, "score": 4.61, "explanation": {"because": ["Alien (1979)", "Heat (1995)"]}}]})
        elif path == "/items/50":
            self._send(200, {"item": "50", "label": "Star Wars (1977)", "in_model": True})
        else:
            self._send(404, {"detail": f"unknown item id {path.rsplit('/', 1)[-1]!r}"})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(("POST", self.path, body, self.headers.get("Authorization")))
        self._send(201, {"stored": 1})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def client():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Stub.experiments, Stub.seen = True, []
    try:
        yield ServiceClient(f"http://127.0.0.1:{server.server_address[1]}/", "k-123")
    finally:
        server.shutdown()
        server.server_close()


def test_recommendations_ratings_and_their_messages(client):
    msg, table, choices = answer_recs(client, " 7 ", 10)
    assert "user **7**" in msg and "model version 3" in msg
    assert table["title"].tolist() == ["Star Wars"] and table["predicted rating"].tolist() == ["4.61"]
    assert table["because you rated"].tolist() == ["Alien (1979) and Heat (1995)"]
    assert choices == [("Star Wars (1977)", "50")]
    msg, _, _ = answer_rate(client, "7", "50", 4, 10)
    assert msg.startswith("Rated **Star Wars (1977)** 4")
    method, path, body, auth = next(s for s in Stub.seen if s[0] == "POST")
    assert (method, path, auth) == ("POST", "/users/7/events", "Bearer k-123")  # the key, on writes only
    event = body["events"][0]
    assert (event["item"], event["type"], event["value"]) == ("50", "rating", 4.0) and event["event_id"]
    assert all(s[3] is None for s in Stub.seen if s[0] == "GET")
    msg, _, _ = answer_rate(client, "7", "no-such", 4, 10)
    assert msg.startswith("Cannot add the rating:") and "404" in msg and "no-such" in msg
    assert "pick an item" in answer_rate(client, "7", "", 4, 10)[0]
    assert answer_recs(client, "", 10)[0] == "Type a user id first."


def test_ab_report_follows_the_contract(client):
    msg, choices = answer_experiments(client)
    assert msg.startswith("1 experiment;") and choices == [("mmr vs plain · running", "e1")]
    summary, variants, plot = answer_report(client, "e1")
    assert variants.values.tolist() == [["control", 4000, 12000, "0.1002", "[0.0907, 0.1097]"],
                                        ["mmr", 3950, 11800, "0.1204", "[0.1102, 0.1306]"]]
    assert "+20.16%, 95% CI [+5.00%, +36.00%] (p = 0.0001)" in summary and "mmr wins" in summary
    assert "no mismatch (chi-square p = 0.57)" in summary
    REPORT["srm"] = {"chi2": 9.1, "p_value": 0.002, "mismatch": True, "warning": "sample ratio mismatch: 52/48"}
    try:
        assert "⚠ sample ratio mismatch: 52/48" in answer_report(client, "e1")[0]
    finally:
        REPORT["srm"] = {"chi2": 0.32, "p_value": 0.57, "mismatch": False}
    assert plot.startswith('<img alt="cumulative lift" src="data:image/png;base64,')
    assert "No report" in answer_report(client, "e9")[0]
    assert answer_report(client, None)[0] == "Pick an experiment first."


def test_missing_ab_endpoints_and_an_unreachable_service_are_messages(client):
    Stub.experiments = False
    msg, choices = answer_experiments(client)
    assert "no A/B experiment endpoints" in msg and choices == []
    dead = ServiceClient("http://127.0.0.1:9", None)
    assert answer_recs(dead, "7", 10)[0].startswith("Cannot recommend: cannot reach the service")
    assert answer_experiments(dead)[0].startswith("Cannot list experiments: cannot reach the service")
    with pytest.raises(ConfigError, match="base URL"):
        ServiceClient("localhost:8000")
