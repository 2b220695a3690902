"""The page at ``/`` in a real headless browser (Debian's chromium through Selenium): upload a photo, read the result."""
from __future__ import annotations

import base64
import os
import shutil

import pytest

from tests.predict.footage import GRACE_PATH

from .conftest import running_server

webdriver = pytest.importorskip("selenium.webdriver")


def _browser_paths():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        message = "needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)  # .ci/run installs them: in CI this test must run
        pytest.skip(message)
    return browser, driver


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary, driver = _browser_paths()
    options = Options()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,900"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


def test_dropping_a_photo_shows_the_annotated_result_and_the_probabilities(engine, client, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    expected = client.post("/v1/predict", GRACE_PATH.read_bytes(), "image/jpeg").json()["faces"]
    browser.get(f"http://127.0.0.1:{client.port}/")
    assert browser.find_element(By.ID, "status").text == "No photo yet."
    browser.find_element(By.ID, "file").send_keys(str(GRACE_PATH))
    WebDriverWait(browser, 60).until(ec.text_to_be_present_in_element((By.ID, "status"), "face(s) in grace_hopper.jpg"))
    assert browser.find_element(By.ID, "status").text == "1 face(s) in grace_hopper.jpg"
    (row,) = browser.find_elements(By.CSS_SELECTOR, "#faces tr.face")
    assert row.find_element(By.CLASS_NAME, "emotion").text == expected[0]["emotion"]
    shown = {c.get_attribute("data-cls"): float(c.text) for c in row.find_elements(By.CSS_SELECTOR, "td[data-cls]")}
    assert shown == pytest.approx(expected[0]["probs"], abs=6e-4)
    # the canvas holds the photo at full size with the face's box drawn in its colour
    width, height, red = browser.execute_script(
        "const c = document.getElementById('canvas'); const b = JSON.parse(arguments[0]);"
        "const px = c.getContext('2d').getImageData(b[0], Math.round((b[1] + b[3]) / 2), 1, 1).data;"
        "return [c.width, c.height, [px[0], px[1], px[2]]];", str(expected[0]["box"]))
    assert (width, height) == (512, 600)
    assert red == pytest.approx([230, 25, 75], abs=40)  # the first face's colour, #e6194b
    shot = tmp_path / "serve_page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    # the same photo dropped on the drop zone (a real drop event carrying the file) under another name
    browser.execute_script(
        "const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));"
        "const data = new DataTransfer(); data.items.add(new File([bytes], 'dropped.jpg', {type: 'image/jpeg'}));"
        "document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true,"
        " cancelable: true}));", base64.b64encode(GRACE_PATH.read_bytes()).decode())
    WebDriverWait(browser, 60).until(ec.text_to_be_present_in_element((By.ID, "status"), "in dropped.jpg"))
    assert browser.find_element(By.ID, "status").text == "1 face(s) in dropped.jpg"


def test_a_refused_upload_shows_the_servers_error(engine, tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from glamor_fast.serve import Limits

    with running_server(engine, limits=Limits(max_upload_bytes=1000)) as c:
        browser.get(f"http://127.0.0.1:{c.port}/")
        browser.find_element(By.ID, "file").send_keys(str(GRACE_PATH))
        WebDriverWait(browser, 60).until(ec.text_to_be_present_in_element((By.ID, "status"), "Error"))
        text = browser.find_element(By.ID, "status").text
    assert text.startswith("Error 413:") and "max_upload_bytes" in text
