"""The explorer in a real browser: a real `sinerec serve` process, headless Chromium driven by Selenium.

Skips when Chromium or its driver is not installed (CI installs Debian's `chromium` and `chromium-driver`
in `.ci/run`). The browser reaches the server through a small reverse proxy that serves it under the path
prefix /sinerec/, as a deployment behind nginx would: a request to an absolute URL ("/api/...") gets 404.
Leaves screenshots in `test-artifacts/explorer.png` and `test-artifacts/explorer-heldout.png`.
"""

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import serve_process, train_run

from sinerec.data.synthetic import planted_concepts

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists()
                                                else None)

pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="needs Chromium and chromedriver (apt-get install chromium chromium-driver)")


def _tiny_sine_run(run_dir: Path) -> Path:
    """SINE on planted concepts: items "item 1".."item 60", categories c0..c5 (items 1-10 are c0, ...)."""
    log = planted_concepts(n_users=120, n_items=60, n_concepts=6, length=15, seed=1)
    return train_run(run_dir, ['data.dataset="synthetic"', "data.max_len=10", "protocol.exclude_history=false",
                               "model_params.dim=16", "model_params.num_concepts=9", "model_params.num_interests=3"],
                     log)


PREFIX = "/sinerec"


def _prefix_proxy(upstream: str) -> ThreadingHTTPServer:
    """A reverse proxy on a free port: PREFIX/anything -> upstream/anything; every other path is 404."""

    class Handler(BaseHTTPRequestHandler):
        def forward(self) -> None:
            if not self.path.startswith(PREFIX + "/"):
                self.send_error(404, f"outside {PREFIX}/")
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
            headers = {k: v for k, v in self.headers.items() if k.lower() == "content-type"}
            request = urllib.request.Request(upstream + self.path[len(PREFIX):], data=body, headers=headers,
                                             method=self.command)
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    status, kind, payload = answer.status, answer.headers.get("Content-Type", ""), answer.read()
            except urllib.error.HTTPError as error:
                status, kind, payload = error.code, error.headers.get("Content-Type", ""), error.read()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = forward

        def log_message(self, *args: object) -> None:
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    return proxy


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The explorer's base URL behind the proxy (ends in /sinerec)."""
    pytest.importorskip("selenium")
    pytest.importorskip("uvicorn")
    run_dir = _tiny_sine_run(tmp_path_factory.mktemp("explorer") / "run")
    with serve_process(run_dir) as url:
        proxy = _prefix_proxy(url)
        try:
            yield f"http://127.0.0.1:{proxy.server_address[1]}{PREFIX}"
        finally:
            proxy.shutdown()


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.load(answer)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.slow
def test_explorer_shows_recommendations_grouped_by_interest(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(server + "/")
    wait.until(ec.text_to_be_present_in_element((By.ID, "meta"), "3 interests"))
    # a history from two planted clusters: items 1-10 are c0, items 21-30 are c2
    browser.find_element(By.ID, "ids-input").send_keys("1, 2, 3, 21, 22, 23, 4")
    browser.find_element(By.ID, "add-ids").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history-list li")) == 7)
    browser.find_element(By.ID, "recommend").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".interest-group .rec-item")) == 10,
               message=lambda: f"status: {browser.find_element(By.ID, 'status').text!r}")
    # the concept pool loads asynchronously and re-renders the cards: read the page once it has settled, in
    # one script call, so that no element handle can go stale between two reads
    wait.until(lambda d: "activation counted" in d.find_element(By.ID, "pool-note").get_attribute("textContent"))
    page = browser.execute_script("""
        const texts = sel => [...document.querySelectorAll(sel)].map(e => e.textContent);
        return {groups: texts('.interest-group h3'), titles: texts('.interest-group .rec-item .title'),
                seen: document.querySelectorAll('#seen .chip').length};""")
    assert len(page["groups"]) == 3  # one card per activated concept (K = 3)
    assert all("concept c" in h for h in page["groups"]), page["groups"]
    titles = page["titles"]
    assert all(t.startswith("item ") for t in titles) and len(set(titles)) == 10, titles
    assert page["seen"] == 7  # the history, coloured by intention
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "explorer.png"))
    # the concept pool: one card per prototype, the activated ones outlined
    browser.find_element(By.ID, "tab-pool").click()
    assert len(browser.find_elements(By.CSS_SELECTOR, ".concept-card")) == 9
    assert len(browser.find_elements(By.CSS_SELECTOR, ".concept-card.active")) == 3


def _heldout_users(server: str) -> tuple[dict, dict]:
    """A user whose true next item is in the top 10 and one whose is not (by the server's own answer)."""
    hit = miss = None
    for user in range(120):
        got = _get(f"{server}/api/users/{user}/heldout?k=10")
        if got["target"]["rank"] is None:
            continue
        if got["target"]["in_top_k"] and hit is None:
            hit = got
        if not got["target"]["in_top_k"] and miss is None:
            miss = got
        if hit and miss:
            return hit, miss
    pytest.fail("no pair of held-out users with the target inside and outside the top 10")


def test_heldout_mode_shows_the_true_next_item_with_its_rank(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    hit, miss = _heldout_users(server)
    browser.get(server + "/")
    wait.until(lambda d: "3 interests" in d.find_element(By.ID, "meta").text)
    assert browser.find_element(By.ID, "heldout-mode").is_selected()  # held-out mode is the default
    # a user whose next item is outside the top 10: its rank in the full ranking
    browser.find_element(By.ID, "user-input").send_keys(str(miss["user_id"]), Keys.ENTER)
    wait.until(lambda d: d.find_element(By.ID, "heldout-rank").text.startswith("not in the top 10"))
    rank = miss["target"]["rank"]
    assert f"rank {rank} of {miss['num_ranked']} ranked items" in browser.find_element(By.ID, "heldout-rank").text
    assert browser.find_element(By.ID, "heldout-target").text.startswith(miss["target"]["title"])
    # a user whose next item is in the top 10: highlighted in its interest's group, with the interest named
    field = browser.find_element(By.ID, "user-input")
    field.clear()
    field.send_keys(str(hit["user_id"]), Keys.ENTER)
    target = hit["target"]
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".rec-item.target")) == 1,
               message=lambda: f"status: {browser.find_element(By.ID, 'status').text!r}")
    page = browser.execute_script("""
        const t = document.querySelector('.rec-item.target');
        return {rank: document.getElementById('heldout-rank').textContent, title: t.querySelector('.title').textContent,
                number: t.value,
                group: t.closest('.interest-group').dataset.interest, badge: t.querySelector('.badge').textContent,
                history: document.querySelectorAll('#history-list li').length, address: location.hash,
                titles: [...document.querySelectorAll('.rec-item .title')].map(e => e.textContent)};""")
    assert page["rank"].startswith(f"rank {target['rank']} of the top 10 · found by interest {target['interest']}")
    assert f"(concept c{target['concept']})" in page["rank"]
    assert page["title"] == target["title"] and page["group"] == str(target["interest"])
    assert page["number"] == target["rank"]  # grouped lists keep the numbers of the whole top k
    assert page["badge"] == "true next item" and page["history"] == hit["length"] - 1
    assert sorted(page["titles"]) == sorted(x["title"] for x in hit["items"])  # POST recommend = the held-out top k
    assert page["address"] == f"#heldout={hit['user_id']}&k=10"
    wait.until(lambda d: "activation counted" in d.find_element(By.ID, "pool-note").get_attribute("textContent"))
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "explorer-heldout.png"))
    # the address restores the view after a reload
    browser.refresh()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".rec-item.target")) == 1)
    assert browser.find_element(By.ID, "heldout-rank").text == page["rank"]
    assert browser.find_element(By.ID, "user-input").get_attribute("value") == str(hit["user_id"])


def test_keyboard_address_and_stale_answers(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(server + "/#history=1,2,21&k=5")  # a shared address: its history and k
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".rec-item")) == 5)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#history-list li")) == 3
    assert browser.find_element(By.CSS_SELECTOR, "label[for=k]").text == "Show"
    # search results from the keyboard: type, arrow down to the second result, Enter adds it
    search = browser.find_element(By.ID, "search")
    search.send_keys("item 3")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#search-results button.result")) >= 2)
    second = browser.find_elements(By.CSS_SELECTOR, "#search-results button.result")[1].text
    search.send_keys(Keys.ARROW_DOWN, Keys.ARROW_DOWN)
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history-list li")) == 4)
    assert browser.find_elements(By.CSS_SELECTOR, "#history-list li")[-1].text.startswith(second.split(" #")[0])
    added = second.split("#")[1].split(" ")[0]
    wait.until(lambda d: d.execute_script("return location.hash") == f"#history=1%2C2%2C21%2C{added}&k=5")
    # a recommendation from the keyboard (Enter on its title adds it)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".rec-item .title")) == 5)
    browser.execute_script("document.querySelector('.rec-item .title').focus()")
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history-list li")) == 5)
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("5 items from the last 5 of 5"))
    # the concept link and the tabs from the keyboard
    wait.until(lambda d: "activation counted" in d.find_element(By.ID, "pool-note").get_attribute("textContent"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".concept-link"))
    browser.execute_script("document.querySelector('.concept-link').focus()")
    concept = browser.switch_to.active_element.text.removeprefix("concept c")
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait.until(lambda d: d.find_element(By.ID, "panel-pool").is_displayed())
    assert browser.switch_to.active_element.get_attribute("id") == f"concept-{concept}"
    assert browser.find_element(By.ID, "tab-pool").get_attribute("aria-selected") == "true"
    browser.find_element(By.ID, "tab-pool").send_keys(Keys.ARROW_LEFT)
    wait.until(lambda d: d.find_element(By.ID, "panel-recs").is_displayed())
    assert browser.switch_to.active_element.get_attribute("id") == "tab-recs"
    # an older answer that arrives last is dropped: delay the k = 5 request past the k = 20 one
    browser.execute_script("""
        const real = window.fetch;
        window.fetch = (url, options) => {
          const body = options && options.body ? JSON.parse(options.body) : {};
          if (body.k !== 5) return real(url, options);
          const { signal, ...rest } = options;  // this slow answer ignores the abort: only the counter can drop it
          return new Promise(resolve => setTimeout(resolve, 1500)).then(() => real(url, rest));
        };""")
    select = Select(browser.find_element(By.ID, "k"))
    select.select_by_visible_text("10")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".rec-item")) == 10)
    select.select_by_visible_text("5")
    select.select_by_visible_text("20")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".rec-item")) == 20)
    time.sleep(2.5)  # the k = 5 answer has arrived by now
    assert len(browser.find_elements(By.CSS_SELECTOR, ".rec-item")) == 20
    assert browser.execute_script("return location.hash").endswith("&k=20")


@pytest.fixture(scope="module")
def comirec_server(tmp_path_factory):
    pytest.importorskip("selenium")
    pytest.importorskip("uvicorn")
    log = planted_concepts(n_users=120, n_items=60, n_concepts=6, length=15, seed=1)
    run_dir = train_run(tmp_path_factory.mktemp("explorer-comirec") / "run",
                        ['data.dataset="synthetic"', "data.max_len=10", "model=comirec-sa", "model_params.dim=16",
                         "model_params.num_interests=3"], log)
    with serve_process(run_dir) as url:
        yield url


def test_multi_interest_baseline_is_grouped_by_interest(comirec_server, browser):
    """ComiRec has no concepts, but K interest vectors: one card per interest, each item under the interest
    the server names for it, and the held-out target's interest named without a concept."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    user, heldout = next((u, h) for u in range(120)
                         if (h := _get(f"{comirec_server}/api/users/{u}/heldout?k=20"))["target"]["rank"] is not None)
    browser.get(f"{comirec_server}/#heldout={user}&k=20")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".interest-group .rec-item")) == 20,
               message=lambda: f"status: {browser.find_element(By.ID, 'status').text!r}")
    assert "K = 3 interests" in browser.find_element(By.ID, "meta").text
    page = browser.execute_script("""
        return [...document.querySelectorAll('.interest-group')].map(g => ({interest: g.dataset.interest,
            head: g.querySelector('h3').textContent,
            items: [...g.querySelectorAll('.rec-item')].map(li => li.dataset.item)}));""")
    assert [g["interest"] for g in page] == ["0", "1", "2"]
    assert [g["head"] for g in page] == ["Interest 0", "Interest 1", "Interest 2"]
    grouped = {item: int(g["interest"]) for g in page for item in g["items"]}
    assert grouped == {str(x["item_id"]): x["interest"] for x in heldout["items"]}
    target = heldout["target"]
    text = browser.find_element(By.ID, "heldout-rank").text
    assert f"found by interest {target['interest']}" in text and "concept" not in text
