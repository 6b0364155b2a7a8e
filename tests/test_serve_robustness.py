"""digitcmp serve under what production brings: concurrent requests batched, generated malformed bodies (hypothesis),
clients that trickle their body or vanish, the OpenAPI description checked against real answers, and the safe
defaults (security headers, no cross-origin access unless asked, a warning on every interface)."""

from __future__ import annotations

import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from digits import PAIRS, digit, labelled_pair, png, sheet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from digitcmp.cli import app

pytest.importorskip("starlette")
pytest.importorskip("httpx")
import uvicorn
from starlette.testclient import TestClient

from digitcmp import serve as serve_module


@pytest.fixture(scope="module")
def client():
    with TestClient(serve_module.create_app()) as running:  # the lifespan runs: comparisons are batched
        yield running


@pytest.fixture(scope="module")
def good() -> tuple[bytes, bytes]:
    first, second = labelled_pair(*PAIRS[0])
    return png(first.image), png(second.image)


def post(client, first: bytes, second: bytes, **kwargs):
    files = {"first": ("first.png", first, "image/png"), "second": ("second.png", second, "image/png")}
    return client.post("/api/compare", files=files, **kwargs)


# ---- batching ----


def test_concurrent_comparisons_share_model_calls_and_each_gets_its_own_answer(monkeypatch):
    """16 clients at once: fewer model calls than comparisons, every comparison in exactly one of them, and each
    client the answer to its own pair."""
    sizes = []
    real = serve_module.run_batch

    def counted(model, pairs):
        sizes.append(len(pairs))
        time.sleep(0.02)  # a slower model call, so that requests queue behind it as under load
        return real(model, pairs)

    monkeypatch.setattr(serve_module, "run_batch", counted)
    labels = [(label, (label + 3) % 10) for label in range(10)] + [(label, label) for label in range(6)]
    requests = [(png(digit(a).image), png(digit(b).image), (a, b)) for a, b in labels]
    with TestClient(serve_module.create_app()) as client:

        def ask(request):
            a, b, sent = request
            answer = post(client, a, b).json()
            return (answer["first"]["digit"], answer["second"]["digit"]), answer["first_le_second"], sent

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(ask, requests))
    assert [(read, le) for read, le, _ in results] == [(sent, sent[0] <= sent[1]) for _, _, sent in results]
    assert sum(sizes) == len(requests) and len(sizes) < len(requests) and max(sizes) <= serve_module.MAX_BATCH


def test_a_failing_model_call_fails_its_requests_with_a_json_500_and_the_batcher_goes_on(monkeypatch, good):
    real, calls = serve_module.run_batch, []

    def fail_once(model, pairs):
        calls.append(len(pairs))
        if len(calls) == 1:
            raise RuntimeError("internal detail")
        return real(model, pairs)

    monkeypatch.setattr(serve_module, "run_batch", fail_once)
    with TestClient(serve_module.create_app(), raise_server_exceptions=False) as client:
        failed = post(client, *good)
        assert failed.status_code == 500 and failed.json() == {"error": serve_module.SERVER_ERROR}
        assert post(client, *good).status_code == 200


def test_a_preparing_process_that_dies_fails_one_request_and_the_next_gets_a_fresh_pool(good):
    with TestClient(serve_module.create_app(), raise_server_exceptions=False) as client:
        assert post(client, *good).status_code == 200
        preparer = client.app.state.preparer
        for process in list(preparer.pool._processes.values()):
            process.kill()  # not os.kill: once the pool sees the first death, it ends the others itself
            process.join()
        assert post(client, *good).status_code == 500
        assert post(client, *good).status_code == 200


@pytest.mark.slow
def test_serve_with_two_workers_answers(good):
    """``--workers 2``: two server processes, each with its own model, behind one port."""
    import subprocess
    import sys

    import httpx

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "digitcmp", "serve", "--port", str(port), "--workers", "2"],
                              stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        files = {"first": ("a.png", good[0]), "second": ("b.png", good[1])}
        answers = [httpx.post(f"http://127.0.0.1:{port}/api/compare", files=files, timeout=30) for _ in range(4)]
        assert [a.status_code for a in answers] == [200] * 4
        assert {a.json()["first_le_second"] for a in answers} == {True}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_unbatched_and_batched_servers_answer_alike(client, good):
    with TestClient(serve_module.create_app(batch=False)) as unbatched:
        assert post(unbatched, *good).json() == post(client, *good).json()


# ---- generated malformed requests ----

BOUNDARY = "digitcmpboundary"


def form_body(parts: list[tuple[str, bytes]], boundary: str = BOUNDARY) -> bytes:
    body = b""
    for name, data in parts:
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
                 "Content-Type: image/png\r\n\r\n").encode() + data + b"\r\n"  # fmt: skip
    return body + f"--{boundary}--\r\n".encode()


def assert_refused_as_json(response) -> None:
    """A 4xx with a JSON error of one line (never a 500 or a traceback)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and "\n" not in body["error"]
    assert "Traceback" not in body["error"]


fuzz = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@fuzz
@given(body=st.binary(max_size=3000), boundary=st.text("abcdefXYZ0123456789-'", min_size=0, max_size=30))
def test_random_bytes_as_a_form_are_refused(client, good, body, boundary):
    response = client.post(
        "/api/compare", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert_refused_as_json(response)


@fuzz
@given(cut=st.floats(0, 1), flip=st.integers(0, 10_000), byte=st.integers(0, 255), other=st.booleans())
def test_truncated_or_corrupted_forms_are_refused_or_read(client, good, cut, flip, byte, other):
    """A real form cut short, with one byte changed, or sent with another boundary than its own: a 4xx, or (where
    the change left both pictures readable) the answer itself; never a 500."""
    body = bytearray(form_body([("first", good[0]), ("second", good[1])]))
    body[flip % len(body)] = byte
    body = bytes(body[: max(1, int(cut * len(body)))])
    boundary = "another" if other else BOUNDARY
    response = client.post(
        "/api/compare", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    if response.status_code != 200:
        assert_refused_as_json(response)


@fuzz
@given(content_type=st.one_of(st.sampled_from(["text/plain", "application/json", "image/png",
                                                "application/x-www-form-urlencoded", "multipart/mixed", ""]),
                              st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)))  # fmt: skip
def test_wrong_content_types_are_refused(client, good, content_type):
    body = form_body([("first", good[0]), ("second", good[1])])
    response = client.post("/api/compare", content=body, headers={"content-type": content_type})
    assert_refused_as_json(response)


def not_a_count(text: str) -> bool:
    return not text.strip().isdigit()


@fuzz
@given(length=st.one_of(st.integers(-(10**12), -1), st.integers(serve_module.MAX_BODY_BYTES + 1, 10**15),
                        st.text("0123456789-+.xe ", min_size=1, max_size=20).filter(not_a_count)))  # fmt: skip
def test_huge_negative_or_garbled_lengths_are_refused(client, good, length):
    body = form_body([("first", good[0]), ("second", good[1])])
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}", "content-length": str(length).strip()}
    if not headers["content-length"]:
        return
    assert_refused_as_json(client.post("/api/compare", content=body, headers=headers))


@fuzz
@given(
    names=st.lists(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12), min_size=0, max_size=12),
    data=st.binary(max_size=200),
)
def test_wrong_or_too_many_fields_are_refused(client, good, names, data):
    parts = [(name, data) for name in names]
    body = form_body(parts)
    response = client.post(
        "/api/compare", content=body, headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    )
    assert_refused_as_json(response)


@fuzz
@given(which=st.sampled_from(["first", "second"]), cut=st.integers(0, 400), noise=st.binary(min_size=1, max_size=300))
def test_truncated_and_random_image_bytes_are_refused(client, good, which, cut, noise):
    images = dict(zip(("first", "second"), good, strict=True))
    images[which] = images[which][:cut] + noise if cut < len(images[which]) else noise
    response = post(client, images["first"], images["second"])
    if response.status_code != 200:
        assert_refused_as_json(response)


def test_after_the_fuzzing_the_server_still_answers(client, good):
    assert post(client, *good).status_code == 200


# ---- slow and vanishing clients, on a real server ----


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def live(monkeypatch):
    """A uvicorn server in a thread, whose request bodies must arrive within 1 s."""
    monkeypatch.setattr(serve_module, "BODY_SECONDS", 1.0)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(serve_module.create_app(), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def raw_request(port: int, body: bytes, declared: int | None = None) -> socket.socket:
    """A socket that has sent a compare request's headers and ``body`` (of a declared length, default its own)."""
    connection = socket.create_connection(("127.0.0.1", port))
    head = (f"POST /api/compare HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}"
            f"\r\nContent-Length: {declared if declared is not None else len(body)}\r\n\r\n")  # fmt: skip
    connection.sendall(head.encode() + body)
    return connection


def answer_of(connection: socket.socket, seconds: float = 10) -> tuple[int, bytes]:
    connection.settimeout(seconds)
    received = b""
    while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < content_length(received):
        chunk = connection.recv(65536)
        if not chunk:
            break
        received += chunk
    return int(received.split(b" ", 2)[1]), received.split(b"\r\n\r\n", 1)[1]


def content_length(received: bytes) -> int:
    found = re.search(rb"content-length: (\d+)", received.lower())
    return int(found.group(1)) if found else 0


def test_a_client_that_trickles_its_body_does_not_stall_the_others_and_times_out(live, good):
    import httpx

    body = form_body([("first", good[0]), ("second", good[1])])
    slow = raw_request(live, body[:50], declared=len(body))  # then nothing more
    started = time.perf_counter()
    fast = httpx.post(f"http://127.0.0.1:{live}/api/compare",
                      files={"first": ("a.png", good[0]), "second": ("b.png", good[1])}, timeout=10)  # fmt: skip
    fast_seconds = time.perf_counter() - started
    assert fast.status_code == 200 and fast_seconds < 0.9  # answered while the slow body is still outstanding
    status, payload = answer_of(slow)
    assert status == 408 and b"did not arrive within 1 s" in payload, payload
    slow.close()


def test_a_client_that_vanishes_mid_request_leaves_the_server_serving(live, good):
    import httpx

    body = form_body([("first", good[0]), ("second", good[1])])
    for _ in range(5):
        raw_request(live, body[: len(body) // 2], declared=len(body)).close()
    response = httpx.post(f"http://127.0.0.1:{live}/api/compare",
                          files={"first": ("a.png", good[0]), "second": ("b.png", good[1])}, timeout=10)  # fmt: skip
    assert response.status_code == 200


# ---- OpenAPI ----


def checker(document: dict, schema: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{schema}", "components": document["components"]})


def test_openapi_describes_the_api_and_real_answers_fit_it(client, good):
    openapi_spec_validator = pytest.importorskip("openapi_spec_validator")
    document = client.get("/openapi.json").json()
    openapi_spec_validator.validate(document)
    assert set(document["paths"]) == {"/api/compare", "/api/model", "/healthz"}
    fields = document["paths"]["/api/compare"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(fields["properties"]) == {*serve_module.FIELDS, serve_module.SHEET}
    answers = {
        "Comparison": [post(client, *good), post(client, *good, params={"include": "digits"}),
                       client.post("/api/compare", files={"sheet": ("s.png", png(sheet(list(labelled_pair(2, 7)))))})],
        "Model": [client.get("/api/model")],
        "Health": [client.get("/healthz")],
        "Error": [post(client, good[0], b"not an image"), client.post("/api/compare", content=b"{}"),
                  client.get("/api/compare")],
    }  # fmt: skip
    for schema, responses in answers.items():
        for response in responses:
            checker(document, schema).validate(response.json())
    for response in answers["Error"][:2]:
        assert str(response.status_code) in document["paths"]["/api/compare"]["post"]["responses"]


def test_the_openapi_schemas_catch_a_wrong_answer(client, good):
    """The schemas are strict enough to matter: an answer missing a field or with a probability over 1 fails."""
    document = client.get("/openapi.json").json()
    answer = post(client, *good).json()
    for broken in ({k: v for k, v in answer.items() if k != "unsure"}, {**answer, "probability": 1.5},
                   {**answer, "first": {**answer["first"], "digit": 10}}):  # fmt: skip
        assert not checker(document, "Comparison").is_valid(broken)


# ---- safe defaults ----


def test_the_page_allows_only_its_own_script_and_style(client):
    import base64
    import hashlib

    response = client.get("/")
    policy = response.headers["content-security-policy"]
    script = re.search(r"<script>(.*?)</script>", response.text, flags=re.DOTALL).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'" and directives["script-src"] == f"'sha256-{digest}'"
    assert directives["style-src"].startswith("'sha256-") and "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_api_answers_carry_nosniff_and_no_cross_origin_access_unless_asked(good):
    origin = {"origin": "https://elsewhere.example"}
    with TestClient(serve_module.create_app()) as closed:
        answer = post(closed, *good, headers=origin)
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "access-control-allow-origin" not in answer.headers
    with TestClient(serve_module.create_app(cors=["https://elsewhere.example"])) as open_to_one:
        assert post(open_to_one, *good, headers=origin).headers["access-control-allow-origin"] == origin["origin"]
        other = post(open_to_one, *good, headers={"origin": "https://third.example"})
        assert "access-control-allow-origin" not in other.headers


def test_serve_listens_locally_by_default_and_warns_on_every_interface(monkeypatch):
    started = []
    monkeypatch.setattr(serve_module, "serve", lambda *args, ready: (started.append(args), ready()))
    local = CliRunner().invoke(app, ["serve"])
    assert local.exit_code == 0 and started[-1][1] == "127.0.0.1" and "warning" not in local.output
    assert "digitcmp serve: http://127.0.0.1:8000/" in local.output  # announced once the server is ready
    everywhere = CliRunner().invoke(
        app, ["serve", "--host", "0.0.0.0", "--workers", "2", "--cors", "https://a.example"]
    )
    assert everywhere.exit_code == 0 and started[-1][1:] == ("0.0.0.0", 8000, 2, ("https://a.example",))
    assert "no authentication" in everywhere.output
