"""The page at ``/`` in a real browser: headless Chromium uploads photos and reads their hashtags from the page."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from hashtag.serve.app import STATIC
from hashtag.serve.config import ServeConfig
from servekit import thread_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 30
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["'](?:https?:)?//|@import|url\(\s*["']?(?:https?:)?//|fetch\(\s*["'](?:https?:)?//""")


def test_page_loads_nothing_from_elsewhere() -> None:
    for path in STATIC.iterdir():
        assert not EXTERNAL.search(path.read_text(encoding="utf-8")), f"{path.name} refers to another host"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip(f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); .ci/run installs them")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def test_upload_photos_and_read_their_hashtags(browser: Any, tiny_bundle: Path, photos: list[Path]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with thread_server(ServeConfig(bundle=tiny_bundle, workers=2)) as base:
        expected = {}
        for photo in photos:
            answer = httpx.post(base + "/v1/tags?threshold=0.3", content=photo.read_bytes(),
                                headers={"Content-Type": "image/jpeg"})
            expected[photo.name] = answer.json()["results"][0]
        broken = photos[0].with_name("broken.jpg")
        broken.write_bytes(b"\xff\xd8\xff not a photo")
        browser.get(base + "/")
        browser.find_element(By.CSS_SELECTOR, "#options summary").click()
        browser.find_element(By.ID, "threshold").send_keys("0.3")
        browser.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in [*photos, broken]))
        WebDriverWait(browser, WAIT_S).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, ".photo[data-state=done]")) == len(photos) + 1)
        cards = {c.get_attribute("data-name"): c for c in browser.find_elements(By.CSS_SELECTOR, ".photo")}
        assert list(cards) == [p.name for p in photos] + ["broken.jpg"]  # in the order chosen
        for name, record in expected.items():
            card = cards[name]
            assert record["hashtags"]
            assert card.find_element(By.CSS_SELECTOR, ".hashtags").text == " ".join(record["hashtags"])
            thumb = card.find_element(By.CSS_SELECTOR, "img.thumb")
            assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", thumb) == 64
            header = [th.text for th in card.find_elements(By.CSS_SELECTOR, ".scores thead th")]
            assert header == ["tag", "ensemble", *record["models"]]
            rows = card.find_elements(By.CSS_SELECTOR, ".scores tbody tr")
            shown = {r.find_element(By.TAG_NAME, "td").text: [td.text for td in r.find_elements(By.TAG_NAME, "td")[1:]]
                     for r in rows}
            assert shown == {t: [f"{record['scores'][t]:.2f}", *(f"{m['scores'][t]:.2f}" for m in record["models"].values())]
                             for t in record["scores"]}
        error = cards["broken.jpg"].find_element(By.CSS_SELECTOR, ".state.error").text
        assert error == "broken.jpg: not an image Pillow can read"


def test_copy_button_puts_the_hashtags_on_the_clipboard(browser: Any, tiny_bundle: Path, photos: list[Path]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with thread_server(ServeConfig(bundle=tiny_bundle, workers=1)) as base:
        browser.execute_cdp_cmd("Browser.grantPermissions", {
            "origin": base, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
        browser.get(base + "/")
        browser.find_element(By.ID, "files").send_keys(str(photos[1]))
        card = WebDriverWait(browser, WAIT_S).until(
            lambda d: d.find_element(By.CSS_SELECTOR, ".photo[data-state=done]"))
        hashtags = card.find_element(By.CSS_SELECTOR, ".hashtags").text
        button = card.find_element(By.CSS_SELECTOR, ".copy")
        button.click()
        WebDriverWait(browser, 5).until(lambda d: button.text == "Copied")
        pasted = browser.execute_async_script(
            "const done = arguments[arguments.length - 1]; navigator.clipboard.readText().then(done, e => done('error ' + e));")
        assert pasted == hashtags and pasted.startswith("#")
