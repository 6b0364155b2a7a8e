"""``digitcmp serve``: a web page to draw or drop two digits, and an HTTP API for the same comparison.

Starlette on uvicorn (the serve extra), onnxruntime and predict's own preparation of images: no torch, and no second
way of reading a picture. The API answers with exactly the object ``digitcmp predict --json`` prints; every bad
request gets a 4xx response with a JSON body ``{"error": "..."}`` that names the field, and the server goes on.
"""

from __future__ import annotations

import base64
import importlib.resources
import io
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from . import __version__
from .errors import DigitcmpError, TooLarge
from .predict import Digit, Model, digit_from_bytes, load_model, pair_from_bytes, refused, run_pairs

FIELDS = ("first", "second")
SHEET = "sheet"  # the form field of one picture holding both digits
MAX_IMAGE_BYTES = 10_000_000  # one image; a request holds two and a little form overhead
MAX_BODY_BYTES = 2 * MAX_IMAGE_BYTES + 100_000


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def png_data_url(digit: Digit) -> str:
    """The 28×28 digit the model saw, as a PNG data URL the page can show."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(digit.image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def create_app(model_path: Path | None = None) -> Starlette:
    """The web application around one loaded model (the shipped one by default), kept in the app's state."""
    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/api/model", model_info),
        Route("/api/compare", compare_images, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed, 500: server_error})
    app.state.model = load_model(model_path)
    app.state.page = (importlib.resources.files("digitcmp") / "web" / "index.html").read_text(encoding="utf-8")
    return app


async def index(request: Request) -> HTMLResponse:
    return HTMLResponse(request.app.state.page)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "version": __version__})


async def model_info(request: Request) -> JSONResponse:
    return JSONResponse(model_summary(request.app.state.model))


async def compare_images(request: Request) -> Response:
    """POST first and second, or one sheet (multipart/form-data) → predict's JSON (``?include=digits`` adds what
    the model saw, for the page)."""
    images = await read_images(request)
    if isinstance(images, Response):
        return images
    try:
        prediction, digits = await run_in_threadpool(predict_images, request.app.state.model, images)
    except TooLarge as exc:
        return error(413, str(exc))
    except DigitcmpError as exc:
        return error(400, str(exc))
    answer = prediction.to_dict()
    if request.query_params.get("include") == "digits":
        answer["seen"] = {field: png_data_url(digit) for field, digit in zip(FIELDS, digits, strict=True)}
    return JSONResponse(answer)


async def read_images(request: Request) -> dict[str, bytes] | Response:
    """The images' bytes by field (``first`` and ``second``, or ``sheet``: one picture holding both digits), or the
    4xx response that says what is wrong with the request."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return error(415, "send the images as multipart/form-data fields 'first' and 'second' (or one 'sheet')")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        return error(413, f"the request is over {MAX_BODY_BYTES:,} bytes; send two images of at most "
                          f"{MAX_IMAGE_BYTES:,} bytes each")  # fmt: skip
    try:
        form = await request.form(max_files=2, max_fields=4, max_part_size=MAX_IMAGE_BYTES)
    except Exception as exc:  # the multipart parser's own errors: malformed or oversized parts
        return error(400, f"the form cannot be read ({str(exc).splitlines()[0][:120]})")
    fields = (SHEET,) if SHEET in form else FIELDS
    if SHEET in form and any(field in form for field in FIELDS):
        return error(400, f"send either '{SHEET}' (one picture with both digits) or 'first' and 'second', not both")
    images = {}
    for field in fields:
        upload = form.get(field)
        if not isinstance(upload, UploadFile):
            return error(400, f"{field}: missing; send an image file in the form field '{field}'")
        data = await upload.read()
        if len(data) > MAX_IMAGE_BYTES:
            return error(413, f"{field}: {len(data):,} bytes, over the {MAX_IMAGE_BYTES:,}-byte limit")
        if not data:
            return error(400, f"{field}: empty; send an image file")
        images[field] = data
    return images


def predict_images(model: Model, images: dict[str, bytes]):
    """Prepare the images as predict does (each named by its field) and compare them: two pictures of one digit
    each, or one picture holding both."""
    if SHEET in images:
        digits = list(pair_from_bytes(images[SHEET], SHEET))
    else:
        digits = [digit_from_bytes(images[field], field) for field in FIELDS]
    [prediction] = run_pairs(model, [(digits[0], digits[1])])
    return refused(prediction, tuple(d.source for d in digits), keep_going=False), digits


def model_summary(model: Model) -> dict:
    """What GET /api/model answers: the variant, its accuracy, the input contract, the versions."""
    keys = ("variant", "variant_name", "params", "test_accuracy_mean", "test_accuracy_std", "data", "input",
            "outputs", "labels", "digitcmp_version", "opset")  # fmt: skip
    return {"model": model.path.name, **{key: model.metadata.get(key) for key in keys}, "server_version": __version__}


async def not_found(request: Request, exc: Exception) -> JSONResponse:
    return error(404, f"{request.url.path}: no such page; try /, /api/compare, /api/model or /healthz")


async def not_allowed(request: Request, exc: Exception) -> JSONResponse:
    return error(405, f"{request.method} {request.url.path}: not allowed; POST the images to /api/compare")


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    return error(500, "the server failed on this request; it goes on serving")


def serve(model_path: Path | None, host: str, port: int) -> None:
    """Run the application with uvicorn until Ctrl-C."""
    import uvicorn

    uvicorn.run(create_app(model_path), host=host, port=port, log_level="warning")
