"""The report in a real browser: headless Debian Chromium through its chromedriver (no browser download).

Screenshots land in reports/screenshots/ (ignored by git) for a person to look at.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from paths import REPO
from PIL import Image

from parity.cases.suite import load_cases
from parity.run.session import ParitySession, RunOptions

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
HAVE_BROWSER = os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not HAVE_BROWSER and not os.environ.get("PARITY_REQUIRE_BROWSER"),
        reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)",
    ),
]
SHOTS = REPO / "reports" / "screenshots"
XSS = "a <script>window.__xss = 1</script> <img src=x onerror='window.__xss=2'> hat"

SUITE = f"""
loras: [{{path: loras/tiny.safetensors}}]
sample:
  width: 64
  height: 64
  sample_steps: 2
  guidance_scale: 1  # one transformer pass per step: these tests are about the report, not CFG
  neg: ""
  samples:
    - {{name: same, prompt: "a hat", ctrl_img_1: inputs/person.png, ctrl_img_2: inputs/hat.png}}
    - {{name: changed, prompt: "{XSS}", ctrl_img_1: inputs/square.png}}
    - {{name: broken, prompt: "b", ctrl_img_1: inputs/empty.png}}
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory, cpu_set):
    root = tmp_path_factory.mktemp("browser")
    shutil.copytree(REPO / "cases" / "inputs", root / "cases" / "inputs")
    (root / "cases" / "loras").mkdir()
    shutil.copy(REPO / "cases" / "loras" / "tiny.safetensors", root / "cases" / "loras")
    (root / "cases" / "inputs" / "empty.png").write_bytes(b"x")
    (root / "cases" / "suite.yaml").write_text(SUITE)
    cases = load_cases(root / "cases" / "suite.yaml")
    ParitySession(RunOptions(out_dir=root / "first")).run_all(cases[:2])  # writes the pinned baselines
    changed = root / "baselines" / "suite" / cpu_set / "changed.png"
    pixels = np.asarray(Image.open(changed)).copy()
    pixels[:, 32:] = 255 - pixels[:, 32:]
    Image.fromarray(pixels).save(changed)
    out = root / "report"
    ParitySession(RunOptions(out_dir=out)).run_all(cases)
    single = root / "single"
    ParitySession(RunOptions(out_dir=single, self_contained=True)).run_all(cases)
    return out / "index.html", single / "index.html"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1100", f"--user-data-dir={SHOTS.parent / '.chromium'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def requests_made(driver):
    """URLs the page asked for since the last call (the browser's own chrome:// pages aside)."""
    import json

    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith(("chrome://", "chrome-untrusted://", "about:", "devtools://")):
                urls.append(url)
    return urls


def shoot(driver, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def test_summary_sorts_and_filters(browser, report):
    from selenium.webdriver.common.by import By

    index, _ = report
    browser.get(index.as_uri())
    assert "1 failed, 1 errors, 1 passed" in browser.find_element(By.ID, "run-verdict").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#cases tbody tr")
    assert [r.get_attribute("data-status") for r in rows] == ["error", "fail", "pass"]  # worst first
    shoot(browser, "summary")

    browser.find_element(By.CSS_SELECTOR, "#cases th[data-key=ssim]").click()  # ascending: no metrics first
    ids = [r.find_elements(By.TAG_NAME, "td")[1].text for r in browser.find_elements(By.CSS_SELECTOR, "#cases tbody tr")]
    assert ids == ["suite::broken", "suite::changed", "suite::same"]
    browser.find_element(By.CSS_SELECTOR, "#cases th[data-key=ssim]").click()  # descending
    ids = [r.find_elements(By.TAG_NAME, "td")[1].text for r in browser.find_elements(By.CSS_SELECTOR, "#cases tbody tr")]
    assert ids[0] == "suite::same"

    browser.find_element(By.CSS_SELECTOR, ".status-filter[value=pass]").click()
    visible = [r for r in browser.find_elements(By.CSS_SELECTOR, "#cases tbody tr") if r.is_displayed()]
    assert {r.get_attribute("data-status") for r in visible} == {"error", "fail"}
    assert "2 of 3 shown" in browser.find_element(By.ID, "shown-count").text
    search = browser.find_element(By.ID, "text-filter")
    search.send_keys("broken")
    visible = [r for r in browser.find_elements(By.CSS_SELECTOR, "#cases tbody tr") if r.is_displayed()]
    assert [r.get_attribute("data-status") for r in visible] == ["error"]
    shoot(browser, "summary-filtered")
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    urls = requests_made(browser)
    assert urls and all(u.startswith(("file://", "data:")) for u in urls), urls


def test_case_view_slider_onion_zoom_and_escaping(browser, report):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    index, _ = report
    browser.get(index.as_uri() + "#case-suite__changed")  # a stable anchor per case id (CI summaries link to it)
    section = browser.find_element(By.ID, "case-suite__changed")
    assert "suite::changed" in section.text
    assert XSS in section.text  # the prompt shows as text
    assert browser.execute_script("return window.__xss === undefined")  # and never runs
    captions = [f.text for f in section.find_elements(By.CSS_SELECTOR, ".controls figcaption")]
    assert captions == ["Picture 1: square.png"]
    images = section.find_elements(By.CSS_SELECTOR, ".side-view img")
    assert len(images) == 3 and all(browser.execute_script("return arguments[0].naturalWidth", i) == 64 for i in images)
    assert browser.execute_script("return arguments[0].clientWidth", images[0]) == 128  # zoom 2x by default
    shoot(browser, "case-side-by-side")

    section.find_element(By.CSS_SELECTOR, "button[data-mode=swipe]").click()
    top = section.find_element(By.CSS_SELECTOR, ".compare .top")
    slider = section.find_element(By.CSS_SELECTOR, ".blend-range")
    assert section.find_element(By.CSS_SELECTOR, ".compare-view").is_displayed()
    before = top.value_of_css_property("clip-path")
    ActionChains(browser).click_and_hold(slider).move_by_offset(-slider.size["width"] // 3, 0).release().perform()
    after = top.value_of_css_property("clip-path")
    assert before != after and "inset" in after
    shoot(browser, "case-swipe")

    section.find_element(By.CSS_SELECTOR, "button[data-mode=onion]").click()
    browser.execute_script("arguments[0].value = 20; arguments[0].dispatchEvent(new Event('input'))", slider)
    assert float(top.value_of_css_property("opacity")) == pytest.approx(0.2)
    section.find_element(By.CSS_SELECTOR, "select.zoom option[value='8']").click()
    assert browser.execute_script("return arguments[0].clientWidth", top) == 512
    shoot(browser, "case-onion-zoom8")
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    urls = requests_made(browser)
    assert all(u.startswith(("file://", "data:")) for u in urls), urls


def test_self_contained_report_needs_no_other_file(browser, report, tmp_path):
    from selenium.webdriver.common.by import By

    _, single = report
    alone = tmp_path / "report.html"
    shutil.copy(single, alone)  # nothing else beside it
    browser.get(alone.as_uri())
    images = browser.find_elements(By.CSS_SELECTOR, "img")
    assert images and all(i.get_attribute("src").startswith("data:image/") for i in images)
    assert all(browser.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images if i.is_displayed())
    urls = requests_made(browser)
    assert all(u.startswith(("file://", "data:")) for u in urls), urls
    shoot(browser, "self-contained")
    assert Path(SHOTS / "self-contained.png").is_file()


def test_the_lora_audit_is_at_the_top_and_opens_to_its_facts(browser, report):
    """One line per LoRA before the cases: whether the served LoRA is the trained one; a click shows its facts."""
    from selenium.webdriver.common.by import By

    index, _ = report
    browser.get(index.as_uri())
    audit = browser.find_element(By.ID, "lora-audit")
    line = audit.find_element(By.CSS_SELECTOR, "summary.lora-line")
    assert line.is_displayed() and line.text.startswith("tiny.safetensors: served as trained — PEFT LoRA, float16, rank 4")
    assert "28 of 28 modules match the model's 34 linears" in line.text and "good" in line.get_attribute("class")
    cases = browser.find_element(By.ID, "cases")
    assert audit.location["y"] < cases.location["y"]  # before any pixel
    facts = audit.find_element(By.TAG_NAME, "table")
    assert not facts.is_displayed()
    line.click()
    assert facts.is_displayed() and "applies all of it" in facts.text and "`network: type: lora`" in facts.text
    shoot(browser, "lora-audit")
