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
from pathlib import Path

import numpy as np
import pytest
from digits import PAIRS, labelled_pair, png, sheet
from PIL import Image
from typer.testing import CliRunner

from digitcmp import __version__
from digitcmp.cli import app
from digitcmp.contract import LABELS, OUTPUTS, input_contract
from digitcmp.predict import load_model

starlette = pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

from digitcmp import serve as serve_module  # noqa: E402

SCREENSHOTS = "DIGITCMP_SCREENSHOTS"  # where the browser test leaves its screenshot (a temporary folder without it)


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(serve_module.create_app())


@pytest.fixture(scope="module")
def good() -> tuple[bytes, bytes]:
    """Two PNG files of clearly read digits of different classes, for requests about anything but the answer."""
    first, second = labelled_pair(*PAIRS[0])
    return png(first.image), png(second.image)


def post(client: TestClient, first: bytes | None, second: bytes | None, **kwargs):
    files = {name: (f"{name}.png", data, "image/png") for name, data in (("first", first), ("second", second))
             if data is not None}  # fmt: skip
    return client.post("/api/compare", files=files, **kwargs)


@pytest.mark.parametrize("labels", PAIRS, ids=lambda labels: f"{labels[0]}-then-{labels[1]}")
def test_compare_answers_with_predicts_json(client, tmp_path, labels):
    first, second = labelled_pair(*labels)
    a, b = png(first.image), png(second.image)
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
    assert (answer["first"]["digit"], answer["second"]["digit"]) == labels
    assert answer["first_le_second"] is (labels[0] <= labels[1]) and answer["unsure"] is False
    seen = post(client, a, b, params={"include": "digits"}).json()["seen"]
    assert seen["first"].startswith("data:image/png;base64,")


@pytest.mark.parametrize("labels", PAIRS, ids=lambda labels: f"{labels[0]}-then-{labels[1]}")
def test_one_picture_with_both_digits_answers_as_predict_does(client, tmp_path, labels):
    picture = png(sheet(list(labelled_pair(*labels))))
    response = client.post("/api/compare", files={"sheet": ("sheet.png", picture, "image/png")},
                           params={"include": "digits"})  # fmt: skip
    assert response.status_code == 200, response.text
    answer = response.json()
    (tmp_path / "sheet.png").write_bytes(picture)
    expected = json.loads(CliRunner().invoke(app, ["predict", str(tmp_path / "sheet.png"), "--json"]).stdout)
    for side in ("first", "second"):
        expected[side]["path"] = "sheet"  # an upload is named by its form field
    assert {key: value for key, value in answer.items() if key != "seen"} == expected
    assert (answer["first"]["digit"], answer["second"]["digit"]) == labels
    assert (answer["first"]["place"], answer["second"]["place"]) == ("left", "right")
    assert set(answer["seen"]) == {"first", "second"}


def test_a_sheet_beside_the_two_fields_or_with_one_digit_is_refused(client, good):
    both = {"sheet": ("s.png", good[0], "image/png"), "first": ("a.png", good[0], "image/png")}
    response = client.post("/api/compare", files=both)
    assert response.status_code == 400 and "not both" in response.json()["error"]
    response = client.post("/api/compare", files={"sheet": ("s.png", good[0], "image/png")})
    assert response.status_code == 400 and "sheet holds 1 digit, not 2" in response.json()["error"]


def test_a_picture_of_no_digit_is_a_400_naming_its_field_and_the_server_goes_on(client, good):
    from test_predict import drawn_nondigit

    buffer = io.BytesIO()
    drawn_nondigit("smiley").save(buffer, format="PNG")
    response = post(client, good[0], buffer.getvalue())
    assert response.status_code == 400
    assert response.json()["error"] == "no digit in second: it does not look like a handwritten digit"
    assert post(client, *good).status_code == 200


def test_model_health_and_page(client):
    model = client.get("/api/model").json()
    metadata = load_model().metadata  # the shipped model, which create_app() serves
    assert model == {
        "model": "digitcmp.onnx",
        **{key: metadata.get(key) for key in ("variant", "variant_name", "params", "test_accuracy_mean",
                                              "test_accuracy_std", "test_rounds", "data", "digitcmp_version", "opset")},
        "input": input_contract(load_model().size),
        "outputs": OUTPUTS,
        "labels": LABELS,
        "server_version": __version__,
    }  # fmt: skip
    assert model["variant"]["arch"] and model["test_accuracy_mean"] > 0.9 and model["test_rounds"] == 1
    assert client.get("/healthz").json() == {"status": "ok", "version": __version__}
    page = client.get("/")
    assert page.status_code == 200 and "canvas-first" in page.text and 'id="file-sheet"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # self-contained: nothing from the internet


def bad_requests(good: tuple[bytes, bytes]) -> dict:
    a, b = good
    huge = io.BytesIO()
    Image.new("L", (8000, 7000)).save(huge, format="PNG")  # 56 million pixels in a small file
    three = [(field, (f"{field}.png", a, "image/png")) for field in ("first", "second", "third")]
    oversized = b"\x89PNG" + b"0" * (serve_module.MAX_IMAGE_BYTES + 10)
    return {
        "missing field": (lambda c: post(c, a, None), 400, "second: missing"),
        "not an image": (lambda c: post(c, b"hello, I am text", b), 400, "first"),
        "empty file": (lambda c: post(c, a, b""), 400, "second: empty"),
        "blank image": (lambda c: post(c, png(np.full((60, 60), 230, np.uint8)), b), 400, "no digit found in first"),
        "too many pixels": (lambda c: post(c, huge.getvalue(), b), 413, "first"),
        "file too large": (lambda c: post(c, a, oversized), 413, f"second: {len(oversized):,} bytes"),
        "form cannot be read": (lambda c: c.post("/api/compare", files=three), 400, "the form cannot be read"),
        "wrong content type": (lambda c: c.post("/api/compare", content=b"{}", headers={"content-type": "text/json"}),
                               415, "multipart/form-data"),
        "body over the cap": (lambda c: c.post("/api/compare", content=b"x",
                                               headers={"content-type": "multipart/form-data; boundary=x",
                                                        "content-length": str(10**9)}), 413, "bytes"),
        "length not a number": (lambda c: c.post("/api/compare", content=b"x",
                                                 headers={"content-type": "multipart/form-data; boundary=x",
                                                          "content-length": "12x"}), 400, "not a number of bytes"),
        "wrong method": (lambda c: c.get("/api/compare"), 405, "POST"),
        "no such page": (lambda c: c.get("/nope"), 404, "/nope"),
    }  # fmt: skip


@pytest.mark.parametrize("case", ["missing field", "not an image", "empty file", "blank image", "too many pixels",
                                  "file too large", "form cannot be read", "wrong content type", "body over the cap",
                                  "length not a number", "wrong method", "no such page"])  # fmt: skip
def test_every_bad_request_gets_a_4xx_json_error_naming_the_field(client, good, case):
    send, status, words = bad_requests(good)[case]
    response = send(client)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and words in body["error"] and "Traceback" not in body["error"]
    assert post(client, *good).status_code == 200  # and the server goes on


def test_an_image_of_exactly_the_byte_limit_is_read(client, good):
    a, b = good
    padded = b + b"\0" * (serve_module.MAX_IMAGE_BYTES - len(b))  # bytes after the PNG's end: the same picture
    assert len(padded) == serve_module.MAX_IMAGE_BYTES
    response = post(client, a, padded)
    assert response.status_code == 200, response.text
    assert response.json() == post(client, a, b).json()


def test_a_failure_inside_the_server_is_a_json_500_and_the_server_goes_on(monkeypatch, good):
    """An unexpected exception answers 500 with a JSON error that tells nothing of the code; the next request is
    answered as usual."""
    real = serve_module.prepare_images
    failures = []

    def fail_once(*args):
        if not failures:
            failures.append(1)
            raise RuntimeError("secret internals at /srv/digitcmp")
        return real(*args)

    monkeypatch.setattr(serve_module, "prepare_images", fail_once)
    client = TestClient(serve_module.create_app(), raise_server_exceptions=False)
    response = post(client, *good)
    assert response.status_code == 500 and response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": "the server failed on this request; it goes on serving"}
    assert post(client, *good).status_code == 200


def test_serve_without_its_extra_says_how_to_install_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2 and "pip install 'digitcmp[serve]'" in result.output.strip().splitlines()[-1]


def test_serve_on_a_port_in_use_says_so_in_one_line_before_announcing_anything():
    from conftest import assert_one_line_error

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--port", str(port)])
    assert_one_line_error(result, 2, f"127.0.0.1:{port}", "--port")
    assert "http://" not in result.output


# ---- the page in a real browser ----

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    """$DIGITCMP_SCREENSHOTS when set (to keep the pictures), else a temporary folder."""
    named = os.environ.get(SCREENSHOTS)
    return Path(named) if named else tmp_path_factory.mktemp("screenshots")


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


def test_the_page_draws_two_digits_and_reads_the_verdict(server, browser, screenshots):
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
    screenshots.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(screenshots / "serve-page.png"))
    assert verdict.startswith("1 ≤ 7 — yes"), verdict
    seen = browser.find_element(By.ID, "seen-first").get_attribute("src")
    assert seen.startswith("data:image/png;base64,")  # the digit the model saw is shown


def test_a_request_without_a_content_type_is_told_what_to_send(client):
    response = client.post("/api/compare", content=b"{}")
    assert response.status_code == 415
    assert response.json() == {
        "error": "send the images as multipart/form-data fields 'first' and 'second' (or one 'sheet')"
    }


def test_the_form_takes_four_text_fields_beside_the_images_and_text_up_to_an_images_size(client, good):
    """Limits of the form parser: a fifth text field is refused; a text field of 2 MB (over the parser's own 1 MB
    default, under the image limit) is not."""
    files = {name: (f"{name}.png", data, "image/png") for name, data in zip(("first", "second"), good, strict=True)}
    fields = {f"note{i}": "x" for i in range(4)}
    assert client.post("/api/compare", files=files, data=fields).status_code == 200
    refused = client.post("/api/compare", files=files, data={**fields, "note4": "x"})
    assert refused.status_code == 400 and "the form cannot be read" in refused.json()["error"]
    assert client.post("/api/compare", files=files, data={"note": "x" * 2_000_000}).status_code == 200
