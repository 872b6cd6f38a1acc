"""Serving that deploys: settings through the environment (the app factory), /metrics counting by route and
status, the access log, and a real ``uvicorn --factory --workers 2`` answering as one process does."""

import contextlib
import logging
import os
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server needs fastapi and uvicorn (pip install 'sinerec[serve]')")
pytest.importorskip("prometheus_client", reason="/metrics needs prometheus_client (pip install 'sinerec[serve]')")
httpx = pytest.importorskip("httpx", reason="the tests talk HTTP with httpx (pip install 'sinerec[serve]')")

with warnings.catch_warnings():  # recent Starlette deprecates its httpx-based TestClient; it still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from conftest import free_port, stop_process, train_run  # noqa: E402

from sinerec.cli import main  # noqa: E402
from sinerec.data.synthetic import planted_concepts  # noqa: E402
from sinerec.deploy import ServiceSettings, app_options, build_service, settings_from_env, settings_to_env  # noqa: E402
from sinerec.errors import SinerecError  # noqa: E402
from sinerec.retrieval import IndexSettings, build_index, load_index  # noqa: E402
from sinerec.runs import load_run  # noqa: E402
from sinerec.serve import create_app  # noqa: E402
from sinerec.telemetry import instrument  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    log = planted_concepts(n_users=90, n_items=60, n_concepts=6, length=20, seed=3)
    log.events["item"] = log.events["item"] * 7 + 100  # original ids unlike the indices 1..60
    log.items.index = log.items.index * 7 + 100
    return train_run(tmp_path_factory.mktemp("deploy") / "sine", [
        "model=sine", "data.max_len=7", "model_params.dim=16", "model_params.num_concepts=11",
        "model_params.num_interests=3"], log)


@pytest.fixture(scope="module")
def index_dir(run_dir):
    """A saved torch index: what several workers share memory-mapped."""
    vectors = load_run(run_dir).model.item_embeddings().detach()
    return build_index(vectors, IndexSettings("torch")).save(run_dir / "index-torch")


def histories(run_dir: Path, n: int) -> list[list[int]]:
    d = load_run(run_dir).data
    return [[int(d.item_ids[i]) for i in d.items[d.offsets[u]:d.offsets[u + 1]]] for u in range(n)]


# --- settings through the environment ------------------------------------------------------------------


def test_settings_survive_the_environment(tmp_path):
    settings = ServiceSettings(tmp_path / "run", tmp_path / "index", IndexSettings("ivf", nlist=13), nprobe=7,
                               ef_search=None, threads=3, metrics=False, access_log=True,
                               app_options={"max_k": 40, "max_body_bytes": 4096, "max_concurrency": 2})
    env = settings_to_env(settings)
    assert env["SINEREC_RUN"] == str(tmp_path / "run") and env["SINEREC_MAX_K"] == "40"
    assert "SINEREC_EF_SEARCH" not in env  # unset: a loaded index keeps its saved value
    back = settings_from_env(env)
    defaults = app_options()  # create_app's defaults, for the options not given
    assert defaults["max_history"] == 1000 and defaults["max_batch"] == 256
    assert back == ServiceSettings(**{**settings.__dict__, "app_options": {**defaults, **settings.app_options}})


def test_environment_defaults_and_errors_name_the_variable(tmp_path):
    settings = settings_from_env({"SINEREC_RUN": str(tmp_path)})
    assert (settings.index, settings.threads, settings.metrics, settings.access_log) == (None, 1, True, False)
    assert settings.index_settings == IndexSettings() and settings.app_options["max_k"] == 1000
    with pytest.raises(SinerecError, match="SINEREC_RUN: not set"):
        settings_from_env({})
    with pytest.raises(SinerecError, match="SINEREC_MAX_K: expected an integer, got 'ten'"):
        settings_from_env({"SINEREC_RUN": "r", "SINEREC_MAX_K": "ten"})
    for variable in ("SINEREC_MAX_CONCURRENCY", "SINEREC_NPROBE", "SINEREC_NLIST", "SINEREC_THREADS"):
        with pytest.raises(SinerecError, match=f"{variable}: expected an integer, got '2.5'"):
            settings_from_env({"SINEREC_RUN": "r", variable: "2.5"})
    assert settings_from_env({"SINEREC_RUN": "r", "SINEREC_MAX_CONCURRENCY": "null"}).app_options[
        "max_concurrency"] is None
    with pytest.raises(SinerecError, match="SINEREC_METRICS: expected 1/0"):
        settings_from_env({"SINEREC_RUN": "r", "SINEREC_METRICS": "maybe"})
    with pytest.raises(SinerecError, match="index.backend"):
        settings_from_env({"SINEREC_RUN": "r", "SINEREC_BACKEND": "annoy"})


def test_serve_with_workers_hands_the_factory_its_settings(run_dir, index_dir, monkeypatch, tmp_path):
    from sinerec import serve_server
    from sinerec.serve import serve

    calls = []
    monkeypatch.setattr(serve_server, "run_workers", lambda config, banner: calls.append((config, banner)))
    for key in [k for k in os.environ if k.startswith("SINEREC_") or k == "PROMETHEUS_MULTIPROC_DIR"]:
        monkeypatch.delenv(key)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # serve() writes the workers' environment here
    assert main(["serve", "--run", str(run_dir), "--port", "8123", "--index", str(index_dir), "--workers", "3",
                 "--max-k", "40", "--access-log", "--no-metrics"]) == 0
    (config, banner), = calls
    assert config.app == "sinerec.serve:create_app_from_env" and "with 3 workers" in banner
    assert (config.factory, config.workers, config.port) == (True, 3, 8123)
    assert config.sinerec_read_timeout == 10.0  # each worker's protocol closes slow half-sent requests
    read = settings_from_env(os.environ)  # what each worker reads: the command line's settings
    assert (read.run, read.index, read.metrics, read.access_log) == (run_dir, index_dir, False, True)
    assert (read.app_options["max_k"], read.app_options["max_concurrency"]) == (40, None)
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ  # no metrics, no folder for them
    serve(run_dir, index_path=index_dir, workers=2)
    metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert metrics_dir.is_dir() and metrics_dir.name.startswith("sinerec-metrics-")  # summed over workers there
    metrics_dir.rmdir()
    assert main(["serve", "--run", str(tmp_path), "--workers", "2"]) == 2  # checked before workers start


def mapped_rss_kib(path: Path) -> int:
    """Resident KiB of this process's mappings of ``path`` (Linux /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if len(head) >= 5 and "-" in head[0] and ":" not in head[0]:
            inside = line.endswith(str(path))
        elif inside and head[0] == "Rss:":
            total += int(head[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads the memory maps of Linux /proc")
def test_a_worker_reads_its_mapped_index_before_serving(run_dir, index_dir):
    from sinerec.deploy import load_service

    vectors = (index_dir / "vectors.npy").resolve()
    index = load_index(index_dir)
    # loading recomputes the fingerprint from the stored vectors, which reads the mapped page once (into the
    # page cache the workers share): it is resident before any search
    assert mapped_rss_kib(vectors) == 4 and index.num_items == 60
    del index
    _, served = load_service(ServiceSettings(run_dir, index_dir))
    # The vectors ((60 + 1) x 16 float32 after a 128-byte header: one 4 KiB page) are resident before any request.
    assert mapped_rss_kib(vectors) == 4 and served.num_items == 60


# --- /metrics and the access log -----------------------------------------------------------------------


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one series in the Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{"):
            series, value = line.rsplit(" ", 1)
            if dict(re.findall(r'(\w+)="([^"]*)"', series)) == labels:
                return float(value)
    return 0.0


def test_metrics_count_requests_by_route_and_status(run_dir):
    client = TestClient(build_service(ServiceSettings(run_dir, app_options={"max_k": 40, "max_body_bytes": 4096})))
    history = histories(run_dir, 1)[0]
    for _ in range(3):
        assert client.post("/recommend", json={"history": history, "k": 5}).status_code == 200
    assert client.post("/recommend", json={"history": history, "k": 0}).status_code == 422
    assert client.post("/recommend", content=b"x" * 5000).status_code == 413  # refused before routing
    assert client.get(f"/items/{history[0]}/similar").status_code == 200
    assert client.get("/no/such/path").status_code == 404
    text = client.get("/metrics").text
    total = "sinerec_http_requests_total"
    assert metric(text, total, method="POST", route="/recommend", status="200") == 3
    assert metric(text, total, method="POST", route="/recommend", status="422") == 1
    assert metric(text, total, method="POST", route="/recommend", status="413") == 1
    assert metric(text, total, method="GET", route="/items/{item_id}/similar", status="200") == 1
    assert metric(text, total, method="GET", route="<unmatched>", status="404") == 1
    latency = "sinerec_http_request_duration_seconds"
    assert metric(text, latency + "_count", method="POST", route="/recommend") == 5
    assert metric(text, latency + "_bucket", method="POST", route="/recommend", le="+Inf") == 5
    again = client.get("/metrics").text  # the first scrape is itself counted
    assert metric(again, total, method="GET", route="/metrics", status="200") == 1


def test_no_metrics_means_no_endpoint(run_dir):
    client = TestClient(build_service(ServiceSettings(run_dir, metrics=False)))
    assert client.get("/metrics").status_code == 404
    assert client.get("/health").status_code == 200


def test_access_log_has_one_line_per_request(run_dir, caplog):
    client = TestClient(instrument(create_app(load_run(run_dir)), metrics=False, log_requests=True))
    history = histories(run_dir, 1)[0]
    with caplog.at_level(logging.INFO, logger="sinerec.access"):
        client.post("/recommend", json={"history": history, "k": 5})
        client.get("/items/999999/similar?k=3")
    lines = [r.getMessage() for r in caplog.records if r.name == "sinerec.access"]
    assert len(lines) == 2
    assert re.fullmatch(r'testclient "POST /recommend" 200 \d+\.\dms', lines[0])
    assert re.fullmatch(r'testclient "GET /items/999999/similar\?k=3" 404 \d+\.\dms', lines[1])


# --- a real server with two workers --------------------------------------------------------------------


@contextlib.contextmanager
def uvicorn_factory(env: dict[str, str], workers: int, log_path: Path, timeout: float = 120.0) -> Iterator[str]:
    """``python -m uvicorn --factory sinerec.serve:create_app_from_env --workers N`` on a free loopback port,
    up once /health answers; terminated afterwards. Output goes to ``log_path``."""
    port = free_port()
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, **env, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "sinerec.serve:create_app_from_env",
                                 "--workers", str(workers), "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"uvicorn --factory did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.3)
            yield url
        finally:
            stop_process(proc, timeout=20)


def test_two_uvicorn_workers_answer_as_one_process_and_sum_their_metrics(run_dir, index_dir, tmp_path):
    settings = ServiceSettings(run_dir, index_dir, app_options={"max_k": 40}, access_log=True)
    local = TestClient(build_service(ServiceSettings(run_dir, index_dir, app_options={"max_k": 40})))
    users = histories(run_dir, 24)
    bodies = [{"history": h, "k": 10} for h in users]
    expected = [local.post("/recommend", json=b).json() for b in bodies]
    expected_similar = local.get(f"/items/{users[0][0]}/similar?k=7").json()
    env = {**settings_to_env(settings), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    (tmp_path / "metrics").mkdir()
    with uvicorn_factory(env, 2, tmp_path / "uvicorn.log") as url:
        def call(body: dict) -> dict:
            with httpx.Client(base_url=url, timeout=30) as http:  # one connection each: both workers serve
                return http.post("/recommend", json=body).json()

        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(call, bodies, timeout=120))
        similar = httpx.get(f"{url}/items/{users[0][0]}/similar?k=7", timeout=10).json()
        text = httpx.get(f"{url}/metrics", timeout=10).text
    assert answers == expected and similar == expected_similar
    # Whichever worker answered the scrape, it sums every worker's counters.
    assert metric(text, "sinerec_http_requests_total", method="POST", route="/recommend", status="200") == 24
    log = (tmp_path / "uvicorn.log").read_text()
    assert log.count('"POST /recommend" 200') == 24  # the access log: one line per request
