"""The page at `/` in headless Chromium: type a sentence, pick a language, click, read the translation."""
import os
import shutil

import pytest

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
pytest.importorskip("httpx", reason="httpx (the test client) is not installed")
pytest.importorskip("selenium", reason="selenium is not installed")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from test_serve import TIMEOUT, expected, running_server, trained_model_path  # noqa: E402

CHROMEDRIVER = "/usr/bin/chromedriver"


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    binary = _chromium()
    if binary is None or not os.access(CHROMEDRIVER, os.X_OK):
        pytest.skip("headless Chromium test needs the chromium and chromium-driver packages "
                    "(scripts/ci_system_deps.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-extensions", "--no-first-run", "--window-size=1000,700"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(TIMEOUT)
        driver.set_script_timeout(TIMEOUT)
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    path = trained_model_path(tmp_path_factory)
    with running_server(path) as url:
        yield url, path


def _translate_on_page(browser, sentence, language):
    box = browser.find_element(By.ID, "source")
    box.clear()
    box.send_keys(sentence)
    Select(browser.find_element(By.ID, "language")).select_by_value(language)
    output = browser.find_element(By.ID, "translation")
    browser.execute_script("arguments[0].textContent = ''", output)
    browser.find_element(By.ID, "translate").click()
    wait = WebDriverWait(browser, TIMEOUT)
    return wait.until(lambda d: output.text.strip() or d.find_element(By.ID, "error").text.strip())


def test_a_person_types_english_and_reads_swedish_and_spanish(browser, page_url):
    import fastnet

    url, model_path = page_url
    reference = fastnet.load(model_path)
    browser.get(url + "/")
    WebDriverWait(browser, TIMEOUT).until(
        lambda d: len(Select(d.find_element(By.ID, "language")).options) == 2)
    assert [o.get_attribute("value") for o in Select(browser.find_element(By.ID, "language")).options] == ["sv", "es"]
    for sentence, language in [("cats are cute", "sv"), ("dogs are big", "es")]:
        shown = _translate_on_page(browser, sentence, language)
        assert browser.find_element(By.ID, "error").text == ""
        assert shown == expected(reference, [sentence], language)[0]


def test_the_page_shows_the_servers_error(browser, page_url):
    url, _ = page_url
    browser.get(url + "/")
    WebDriverWait(browser, TIMEOUT).until(lambda d: len(Select(d.find_element(By.ID, "language")).options) == 2)
    shown = _translate_on_page(browser, " ".join(["cats"] * 40), "sv")  # more tokens than the model takes
    assert browser.find_element(By.ID, "translation").text == ""
    assert "max_len" in shown
