"""A corpus of hostile requests against the HTTP API: each gets the documented status and a detail naming the
problem, never a 500. Then the real server process: its banner comes after the socket is bound, it refuses
foreign Host headers, and slow half-sent requests neither block others nor stay open past the read timeout."""

import json
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from conftest import free_port, stop_process, train_run

pytest.importorskip("fastapi", reason="the server needs fastapi and uvicorn (pip install 'sinerec[serve]')")
httpx = pytest.importorskip("httpx", reason="the tests talk HTTP with httpx (pip install 'sinerec[serve]')")

with warnings.catch_warnings():  # recent Starlette deprecates its httpx-based TestClient; it still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from sinerec.data.synthetic import planted_concepts  # noqa: E402
from sinerec.runs import load_run  # noqa: E402
from sinerec.serve import create_app  # noqa: E402
from sinerec.serve_guard import host_name, is_loopback, trusted_hosts  # noqa: E402

KNOWN = 107  # item 1 of the run: original ids are index * 7 + 100
ARABIC_107 = "١٠٧"  # 107 in Arabic-Indic digits: int() reads it as 107, an id lookup must not
HUGE = "9" * 5000  # int() of it raises ValueError (Python's 4,300-digit limit)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    log = planted_concepts(n_users=40, n_items=30, n_concepts=3, length=10, seed=6)
    log.events["item"] = log.events["item"] * 7 + 100
    log.items.index = log.items.index * 7 + 100
    return train_run(tmp_path_factory.mktemp("hostile") / "sine",
                     ["model=sine", "data.max_len=6", "model_params.dim=8", "model_params.num_concepts=5",
                      "model_params.num_interests=2"], log)


@pytest.fixture(scope="module")
def client(run_dir):
    app = create_app(load_run(run_dir), max_body_bytes=16384, max_history=50, max_k=40, max_batch=5,
                     max_batch_k=60, allowed_hosts=trusted_hosts("127.0.0.1"), expose_users=False)
    return TestClient(app, base_url="http://127.0.0.1:8000")


def post(body):
    return ("POST", "/recommend", {"json": body})


def batch(requests):
    return ("POST", "/recommend/batch", {"json": {"requests": requests}})


def raw(content, path="/recommend", **headers):
    return ("POST", path, {"content": content, "headers": {"content-type": "application/json", **headers}})


def get(path, **params):
    return ("GET", path, {"params": params})


# name -> (request, status, a fragment of the detail)
CORPUS = {
    "malformed JSON": (raw(b'{"history": [107,'), 400, "malformed JSON body"),
    "empty body": (raw(b""), 400, "body: missing; send a JSON object"),
    "a JSON integer of 5000 digits": (raw(b'{"history": [' + HUGE.encode() + b"]}"), 400, "malformed JSON body"),
    "not UTF-8": (raw(b'{"history": ["\xff\xfe"]}'), 400, "malformed JSON body"),
    "a JSON array": (post([KNOWN]), 422, "Input should be a valid dictionary"),
    "history not a list": (post({"history": "107"}), 422, "history: Input should be a valid list"),
    "id null": (post({"history": [KNOWN, None]}), 422, "history.1: should be an item id"),
    "id an object": (post({"history": [{"id": KNOWN}]}), 422, "history.0: should be an item id"),
    "id a float": (post({"history": [107.0]}), 422, "history.0: should be an item id"),
    "numeric string of 5000 digits": (post({"history": [KNOWN, HUGE]}), 422,
                                      "history: unknown item id '999999999999999999999999999999999999999... "
                                      "(5,000 characters)"),
    "Arabic-Indic digits": (post({"history": [ARABIC_107]}), 422, f"history: unknown item id '{ARABIC_107}'"),
    "fullwidth digits": (post({"history": ["１０７"]}), 422, "history: unknown item id '１０７'"),
    "NUL inside an id": (post({"history": ["10\x007"]}), 422, "history: unknown item id '10\\x007'"),
    "integer beyond int64": (post({"history": [2**70]}), 422, f"history: unknown item id {2**70}"),
    "empty history": (post({"history": []}), 422, "history: is empty; give at least one of the items"),
    "history over the limit": (post({"history": [KNOWN] * 51}), 422, "history: at most 50 items are accepted, got 51"),
    "k huge": (post({"history": [KNOWN], "k": 10**12}), 422, "k: must be between 1 and 40, got 1000000000000"),
    "k negative": (post({"history": [KNOWN], "k": -1}), 422, "k: must be between 1 and 40, got -1"),
    "k a bool": (post({"history": [KNOWN], "k": True}), 422, "k: Input should be a valid integer"),
    "k a float": (post({"history": [KNOWN], "k": 5.0}), 422, "k: Input should be a valid integer"),
    "k a string": (post({"history": [KNOWN], "k": "5"}), 422, "k: Input should be a valid integer"),
    "exclude_seen a string": (post({"history": [KNOWN], "exclude_seen": "yes"}), 422,
                              "exclude_seen: Input should be a valid boolean"),
    "exclude_seen an integer": (post({"history": [KNOWN], "exclude_seen": 1}), 422,
                                "exclude_seen: Input should be a valid boolean"),
    "unknown field": (post({"history": [KNOWN], "user": 1}), 422, "user: Extra inputs are not permitted"),
    "huge excluded id": (post({"history": [KNOWN], "exclude": [HUGE]}), 422, "exclude: unknown item id '9999"),
    "batch empty": (batch([]), 422, "requests: is empty; give at least one of the requests"),
    "batch too long": (batch([{"history": [KNOWN]}] * 6), 422, "requests: at most 5 requests are accepted, got 6"),
    "batch k sum over the cap": (batch([{"history": [KNOWN], "k": 40}, {"history": [KNOWN], "k": 21}]), 422,
                                 "requests: the k of a batch sum to at most 60 (--max-batch-k), got 61"),
    "batch member k too large": (batch([{"history": [KNOWN], "k": 41}]), 422,
                                 "requests.0.k: must be between 1 and 40, got 41"),
    "batch member with a huge id": (batch([{"history": [KNOWN]}, {"history": [HUGE]}]), 422,
                                    "requests[1].history: unknown item id '9999"),
    "body over the limit": (post({"history": [KNOWN] * 5000}), 413, "exceeds the limit of 16384 bytes"),
    "similar of a 5000-digit id": (get(f"/items/{HUGE}/similar"), 404, "item: unknown item id '9999"),
    "similar of Arabic-Indic digits": (get(f"/items/{ARABIC_107}/similar"), 404, "item: unknown item id"),
    "similar k zero": (get(f"/items/{KNOWN}/similar", k=0), 422, "k: must be between 1 and 40, got '0'"),
    "similar k huge": (get(f"/items/{KNOWN}/similar", k=10**30), 422,
                       "k: must be between 1 and 40, got '1000000000000000000000000000000'"),
    "similar k of 5000 digits": (get(f"/items/{KNOWN}/similar", k=HUGE), 422, "k: "),
    "similar k not a number": (get(f"/items/{KNOWN}/similar", k="ten"), 422, "k: Input should be a valid integer"),
    "user routes off": (get("/api/users/3"), 403, "user histories are not served"),
    "random user off": (get("/api/users/random"), 403, "start `sinerec serve` with --expose-users"),
    "held-out user off": (get("/api/users/3/heldout"), 403, "user histories are not served"),
    "foreign Host": (("GET", "/health", {"headers": {"host": "evil.example"}}), 400,
                     "Host header 'evil.example' is not allowed"),
    "foreign Host with a port": (("GET", "/health", {"headers": {"host": "rebind.attacker.test:8000"}}), 400,
                                 "is not allowed: this server answers 127.0.0.1, ::1, localhost"),
}


@pytest.mark.parametrize("case", list(CORPUS))
def test_hostile_request_gets_its_status_and_detail(client, case):
    (method, path, options), status, fragment = CORPUS[case]
    response = client.request(method, path, **options)
    assert response.status_code == status, response.text[:300]
    detail = response.json()["detail"]
    assert fragment in detail, detail
    assert len(detail) < 400  # a hostile id is cut short in the message


def test_the_corpus_covers_every_documented_error_status():
    assert {status for _, status, _ in CORPUS.values()} == {400, 403, 404, 413, 422}


def test_the_known_item_and_loopback_hosts_still_work(client):
    for host in ("127.0.0.1:8000", "localhost", "LOCALHOST.", "[::1]:8000"):
        assert client.get("/health", headers={"host": host}).status_code == 200, host
    answer = client.post("/recommend", json={"history": [KNOWN, "114"], "k": 3, "exclude_seen": False})
    assert answer.status_code == 200 and answer.json()["history_used"] == 2


def test_user_routes_take_user_ids_by_the_same_rule(run_dir):
    http = TestClient(create_app(load_run(run_dir), expose_users=True))
    assert http.get("/api/users/3").json()["user_id"] == 3
    for bad in ("٣", "３", HUGE):  # Arabic-Indic and fullwidth 3 must not alias user 3
        response = http.get(f"/api/users/{bad}")
        assert response.status_code == 404 and "unknown user id" in response.json()["detail"], bad
        assert len(response.json()["detail"]) < 120

def test_openapi_schema_states_the_enforced_bounds(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    single, many = schema["RecommendBody"]["properties"], schema["BatchBody"]["properties"]
    assert (single["history"]["minItems"], single["history"]["maxItems"]) == (1, 50)
    assert (single["k"]["minimum"], single["k"]["maximum"], single["k"]["type"]) == (1, 40, "integer")
    assert single["exclude_seen"]["type"] == "boolean"
    assert (many["requests"]["minItems"], many["requests"]["maxItems"]) == (1, 5)
    assert "sum to at most 60" in many["requests"]["description"]
    similar = client.get("/openapi.json").json()["paths"]["/items/{item_id}/similar"]["get"]["parameters"]
    k = next(p for p in similar if p["name"] == "k")["schema"]
    assert (k["minimum"], k["maximum"]) == (1, 40)


def test_trusted_host_names():
    assert trusted_hosts("127.0.0.1") == ["localhost", "127.0.0.1", "::1"]
    assert trusted_hosts("0.0.0.0", ["api.example", "API.example:443"]) == ["localhost", "127.0.0.1", "::1",
                                                                            "api.example"]
    assert trusted_hosts("10.1.2.3") == ["localhost", "127.0.0.1", "::1", "10.1.2.3"]
    assert trusted_hosts("::", ["*"]) == ["*"]
    assert [host_name(h) for h in ("[::1]:80", "Example.COM.:8080", "::1", "")] == ["::1", "example.com", "::1", ""]
    assert [is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "localhost", "0.0.0.0", "10.0.0.1",
                                     "example.com")] == [True, True, True, True, False, False, False]


def test_serve_exposes_user_routes_only_on_loopback_by_default(run_dir, monkeypatch):
    import sinerec.serve_server as server

    configs = []
    monkeypatch.setattr(server, "run_server", lambda config, banner: configs.append((config, banner)))
    from sinerec.serve import serve

    serve(run_dir, host="127.0.0.1")
    serve(run_dir, host="0.0.0.0", allowed_hosts=["api.example"])
    serve(run_dir, host="0.0.0.0", allowed_hosts=["api.example"], expose_users=True)
    statuses = []
    for config, _ in configs:
        with TestClient(config.app, base_url="http://api.example") as http:
            statuses.append((http.get("/api/users/random").status_code, http.get("/health").status_code))
    assert statuses == [(400, 400), (403, 200), (200, 200)]  # the first binds loopback: api.example is foreign
    assert ["user histories served" in banner for _, banner in configs] == [True, False, True]
    assert configs[0][0].limit_concurrency == 256 and configs[0][0].timeout_keep_alive == 5


# --- the real server process ---------------------------------------------------------------------------

READ_TIMEOUT = 2.0
MAX_CONNECTIONS = 12


@pytest.fixture(scope="module")
def server(run_dir):
    """``sinerec serve`` with a short read timeout and a small connection cap; yields (base URL, its banner
    line, its log file). Connects once, as soon as the banner is written, without retrying."""
    port = free_port()
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), "PYTHONUNBUFFERED": "1"}
    log_path = run_dir / "hostile-serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "sinerec", "serve", "--run", str(run_dir), "--port",
                                 str(port), "--read-timeout", str(READ_TIMEOUT), "--keep-alive", "1",
                                 "--max-connections", str(MAX_CONNECTIONS)], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while "serving" not in log_path.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sinerec serve did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.02)
        with socket.create_connection(("127.0.0.1", port), timeout=5):  # bound before the banner: no retry
            pass
        banner = next(line for line in log_path.read_text().splitlines() if "serving" in line)
        yield f"http://127.0.0.1:{port}", banner, log_path
    finally:
        stop_process(proc)


def test_banner_comes_after_the_socket_is_bound(server):
    base, banner, _ = server
    assert f"on {base} " in banner and "user histories served" in banner


def test_real_server_refuses_a_foreign_host(server):
    base, _, _ = server
    with httpx.Client(base_url=base, timeout=10) as http:
        refused = http.get("/health", headers={"host": "evil.example"})
        assert refused.status_code == 400 and "Host header 'evil.example' is not allowed" in refused.json()["detail"]
        assert http.get("/health").json()["status"] == "ok"


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed the connection (recv gives EOF); False if it is still open after 5 s."""
    sock.settimeout(5)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_slow_half_sent_requests_are_closed_and_do_not_block_others(server):
    base, _, _ = server
    port = int(base.rsplit(":", 1)[1])
    body = json.dumps({"history": [KNOWN], "k": 3}).encode()
    partial = [b"",  # connects and sends nothing
               b"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le",  # half a head
               b"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body) + body[:5]]  # the whole head, part of the body
    slow = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(len(partial) * 2)]
    try:
        for sock, data in zip(slow, partial * 2, strict=True):
            sock.sendall(data)
        opened = time.monotonic()
        with httpx.Client(base_url=base, timeout=10) as http:  # a normal request is served meanwhile
            answer = http.post("/recommend", content=body, headers={"content-type": "application/json"})
        assert answer.status_code == 200 and len(answer.json()["items"]) == 3
        assert [_closed_by_server(sock) for sock in slow] == [True] * len(slow)
        assert time.monotonic() - opened >= READ_TIMEOUT - 0.5  # closed by the timeout, not at once
    finally:
        for sock in slow:
            sock.close()
    with httpx.Client(base_url=base, timeout=10) as http:
        assert http.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize("flag, value, message", [
    ("--port", "-5", "argument --port: should be an integer between 1 and 65535, got '-5'"),
    ("--port", "70000", "argument --port: should be an integer between 1 and 65535, got '70000'"),
    ("--port", HUGE, "argument --port: should be an integer between 1 and 65535, got '99999999999999999999"),
    ("--max-concurrency", "-1", "argument --max-concurrency: should be an integer >= 1, got '-1'"),
    ("--max-batch-k", "0", "argument --max-batch-k: should be an integer >= 1, got '0'"),
    ("--max-connections", "٣", "argument --max-connections: should be an integer >= 1, got '٣'"),
    ("--read-timeout", "nan", "argument --read-timeout: should be a number > 0, got 'nan'"),
    ("--read-timeout", "-1", "argument --read-timeout: should be a number > 0, got '-1'"),
])
def test_cli_serve_refuses_bad_flags_on_one_line(flag, value, message, capsys):
    from sinerec.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", "--run", "nowhere", flag, value])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_connections_beyond_the_cap_get_503_until_idle_ones_time_out(server):
    base, _, _ = server
    port = int(base.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(MAX_CONNECTIONS)]
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/health").status_code == 503  # the cap counts the idle connections
        assert [_closed_by_server(sock) for sock in idle] == [True] * len(idle)  # the read timeout frees them
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/health").status_code == 200
    finally:
        for sock in idle:
            sock.close()


def test_an_oversized_incomplete_request_head_is_refused(server):
    base, _, _ = server
    port = int(base.rsplit(":", 1)[1])
    # a head still incomplete past 16 KiB (a complete one arriving in one read is parsed as it is)
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 20_000
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]

def test_the_server_log_holds_no_traceback(server):
    # runs after the hostile tests above (pytest keeps file order): timed-out and refused requests are quiet
    _, _, log_path = server
    assert "Traceback" not in log_path.read_text()
