"""The explorer in a real browser: a real `sinerec serve` process, headless Chromium driven by Selenium.

Skips when Chromium or its driver is not installed (CI installs Debian's `chromium` and `chromium-driver`
in `.ci/run`). Leaves a screenshot in `test-artifacts/explorer.png`.
"""

import shutil
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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("selenium")
    pytest.importorskip("uvicorn")
    run_dir = _tiny_sine_run(tmp_path_factory.mktemp("explorer") / "run")
    with serve_process(run_dir) as url:
        yield url


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
