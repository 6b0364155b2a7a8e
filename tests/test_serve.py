"""digitcmp serve: the API through Starlette's test client (good pairs, every bad input, many clients at once) and
the page in a real headless Chromium, drawn on with pointer events."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from digitcmp.cli import app
from digitcmp.data import load_source

starlette = pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

from digitcmp import serve as serve_module  # noqa: E402

SCREENSHOTS = Path(os.environ.get("DIGITCMP_SCREENSHOTS", Path(__file__).resolve().parent / "screenshots"))


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(serve_module.create_app())


@pytest.fixture(scope="module")
def digits():
    test = load_source(None).test
    return [(png(test.images[i]), int(test.labels[i])) for i in range(8)]


def post(client: TestClient, first: bytes | None, second: bytes | None, **kwargs):
    files = {name: (f"{name}.png", data, "image/png") for name, data in (("first", first), ("second", second))
             if data is not None}  # fmt: skip
    return client.post("/api/compare", files=files, **kwargs)


def test_compare_answers_with_predicts_json(client, digits, tmp_path):
    (a, label_a), (b, label_b) = digits[0], digits[1]
    response = post(client, a, b)
    assert response.status_code == 200, response.text
    answer = response.json()
    (tmp_path / "first.png").write_bytes(a)
    (tmp_path / "second.png").write_bytes(b)
    cli = CliRunner().invoke(app, ["predict", str(tmp_path / "first.png"), str(tmp_path / "second.png"), "--json"])
    expected = json.loads(cli.stdout)
    for side in ("first", "second"):
        expected[side]["path"] = side  # an upload is named by its form field
    assert answer == expected  # exactly predict's object
    assert (answer["first"]["digit"], answer["second"]["digit"]) == (label_a, label_b)
    seen = post(client, a, b, params={"include": "digits"}).json()["seen"]
    assert seen["first"].startswith("data:image/png;base64,")


def test_model_health_and_page(client):
    model = client.get("/api/model").json()
    assert model["input"]["shape"] == ["batch", 2, 14, 14] and model["variant"]["arch"] and model["test_accuracy_mean"]
    assert client.get("/healthz").json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200 and "canvas-first" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # self-contained: nothing from the internet


def bad_requests(digits) -> dict:
    good = digits[0][0]
    huge = io.BytesIO()
    Image.new("L", (8000, 7000)).save(huge, format="PNG")  # 56 million pixels in a small file
    return {
        "missing field": (lambda c: post(c, good, None), 400, "second"),
        "not an image": (lambda c: post(c, b"hello, I am text", good), 400, "first"),
        "empty file": (lambda c: post(c, good, b""), 400, "second"),
        "blank image": (lambda c: post(c, png(np.full((60, 60), 230, np.uint8)), good), 400, "no digit found in first"),
        "too many pixels": (lambda c: post(c, huge.getvalue(), good), 413, "first"),
        "file too large": (lambda c: post(c, good, b"\x89PNG" + b"0" * (serve_module.MAX_IMAGE_BYTES + 10)), 413,
                           ""),
        "wrong content type": (lambda c: c.post("/api/compare", content=b"{}", headers={"content-type": "text/json"}),
                               415, "multipart/form-data"),
        "body over the cap": (lambda c: c.post("/api/compare", content=b"x",
                                               headers={"content-type": "multipart/form-data; boundary=x",
                                                        "content-length": str(10**9)}), 413, "bytes"),
        "wrong method": (lambda c: c.get("/api/compare"), 405, "POST"),
        "no such page": (lambda c: c.get("/nope"), 404, "/nope"),
    }  # fmt: skip


@pytest.mark.parametrize("case", ["missing field", "not an image", "empty file", "blank image", "too many pixels",
                                  "file too large", "wrong content type", "body over the cap", "wrong method",
                                  "no such page"])  # fmt: skip
def test_every_bad_request_gets_a_4xx_json_error_naming_the_field(client, digits, case):
    send, status, words = bad_requests(digits)[case]
    response = send(client)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and words in body["error"] and "Traceback" not in body["error"]
    assert post(client, digits[0][0], digits[1][0]).status_code == 200  # and the server goes on


def test_many_clients_at_once_get_their_own_answers(client, digits):
    pairs = [(digits[i], digits[(i + 3) % 8]) for i in range(8)] * 4

    def ask(pair):
        (a, label_a), (b, label_b) = pair
        answer = post(client, a, b).json()
        return answer["first"]["digit"], answer["second"]["digit"], (label_a, label_b)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(ask, pairs))
    assert all((first, second) == labels for first, second, labels in results)


def test_serve_without_its_extra_says_how_to_install_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2 and "pip install 'digitcmp[serve]'" in result.output.strip().splitlines()[-1]


# ---- the page in a real browser ----

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    import uvicorn

    port = free_port()
    config = uvicorn.Config(serve_module.create_app(), host="127.0.0.1", port=port, log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("headless Chromium and chromedriver are not installed (.ci/run installs Debian's chromium and "
                    "chromium-driver)")  # fmt: skip
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=900,1100", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def stroke(driver, canvas, points: list[tuple[int, int]]) -> None:
    """Draw one stroke with the mouse's pointer events, through points given in canvas pixels (280×280)."""
    from selenium.webdriver.common.action_chains import ActionChains

    actions = ActionChains(driver, duration=10)
    x, y = points[0]
    actions.move_to_element_with_offset(canvas, x - 140, y - 140).click_and_hold()
    for px, py in points[1:]:
        actions.move_by_offset(px - x, py - y)
        x, y = px, py
    actions.release().perform()


def test_the_page_draws_two_digits_and_reads_the_verdict(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server)
    first = browser.find_element(By.ID, "canvas-first")
    second = browser.find_element(By.ID, "canvas-second")
    stroke(browser, first, [(150, 50), (146, 110), (142, 170), (140, 230)])  # a 1
    stroke(browser, second, [(80, 60), (140, 60), (200, 60)])  # a 7: its bar,
    stroke(browser, second, [(200, 60), (170, 130), (145, 190), (125, 240)])  # then its stem
    browser.find_element(By.ID, "compare").click()
    verdict = WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "verdict").text)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "serve-page.png"))
    assert verdict.startswith("1 ≤ 7 — yes"), verdict
    seen = browser.find_element(By.ID, "seen-first").get_attribute("src")
    assert seen.startswith("data:image/png;base64,")  # the digit the model saw is shown
