"""``digitcmp serve``: a web page to draw or drop two digits, and an HTTP API for the same comparison.

Starlette on uvicorn (the serve extra), onnxruntime and predict's own preparation of images: no torch, and no second
way of reading a picture. The API answers with exactly the object ``digitcmp predict --json`` prints; every bad
request gets a 4xx response with a JSON body ``{"error": "..."}`` that names the field, and the server goes on.

Work per comparison: the images are prepared in a pool of processes as wide as the machine has cores, and
comparisons that arrive while the model reads others go to onnxruntime together as the next batch (at most
``MAX_BATCH``), which reads them with predict's early exit. ``GET /openapi.json`` describes the API
(digitcmp.openapi).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import importlib.resources
import io
import multiprocessing
import os
import re
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders, UploadFile
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from . import __version__
from .errors import DigitcmpError, TooLarge
from .openapi import openapi_document
from .predict import Digit, Model, Prediction, digit_from_bytes, load_model, pair_from_bytes, refused, run_batch

FIELDS = ("first", "second")
SHEET = "sheet"  # the form field of one picture holding both digits
MAX_IMAGE_BYTES = 10_000_000  # one image; a request holds two and a little form overhead
MAX_BODY_BYTES = 2 * MAX_IMAGE_BYTES + 100_000
BODY_SECONDS = 10.0  # a request's body must arrive within this, so a client that trickles it holds nothing long
MAX_BATCH = 32  # comparisons in one model call
EVERY_INTERFACE = ("0.0.0.0", "::", "")
SERVER_ERROR = "the server failed on this request; it goes on serving"
# Settings of ``serve`` for the application each uvicorn worker process builds (app_from_environment).
# SHARES: each worker's share of the cores, for its model's threads and its preparing processes.
MODEL_ENV, CORS_ENV, SHARES_ENV = "DIGITCMP_SERVE_MODEL", "DIGITCMP_SERVE_CORS", "DIGITCMP_SERVE_SHARES"


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def png_data_url(digit: Digit) -> str:
    """The 28×28 digit the model saw, as a PNG data URL the page can show."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(digit.image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class Batcher:
    """Comparisons from concurrent requests, answered by one model call per batch. The model runs in a thread of
    its own, so the server goes on reading requests meanwhile; the comparisons that arrive during one call go
    together (up to ``max_batch``) as the next. A comparison on an idle server goes at once, and one under load
    waits at most for the call in progress. Started and stopped with the application (its lifespan); outside it
    each comparison is its own call."""

    def __init__(self, model: Model, max_batch: int = MAX_BATCH) -> None:
        self.model, self.max_batch = model, max_batch
        self.runner = ThreadPoolExecutor(1, thread_name_prefix="digitcmp-model")
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None

    async def compare(self, pair: tuple[Digit, Digit]) -> Prediction:
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.get_loop() is not loop:
            [answer] = await loop.run_in_executor(self.runner, run_batch, self.model, [pair])
            return answer
        future = loop.create_future()
        self.queue.put_nowait((pair, future))
        return await future

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self.answer_batches())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.task = None

    async def answer_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            waiting = [await self.queue.get()]
            while len(waiting) < self.max_batch and not self.queue.empty():
                waiting.append(self.queue.get_nowait())
            waiting = [(pair, future) for pair, future in waiting if not future.done()]  # clients that left
            if not waiting:
                continue
            try:
                answers = await loop.run_in_executor(self.runner, run_batch, self.model, [p for p, _ in waiting])
            except Exception as exc:  # every request of the batch gets the failure (a 500), the loop goes on
                answers = [exc] * len(waiting)
            for (_, future), answer in zip(waiting, answers, strict=True):
                if future.done():
                    continue
                if isinstance(answer, Exception):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)


class Preparer:
    """Pictures prepared in worker processes, as many as ``processes``: preparing one is hundreds of short numpy
    and OpenCV calls, and threads of one process doing it at once hand the interpreter's lock back and forth for
    longer than they prepare (docs/performance.md). Started with the application (its lifespan); outside it, each
    picture is prepared in a thread. A worker that dies (a picture that crashes a decoder) fails its request with
    a 500, and the next request gets a fresh pool."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.pool: ProcessPoolExecutor | None = None

    async def prepare(self, images: dict[str, bytes]) -> tuple[Digit, Digit]:
        loop = asyncio.get_running_loop()
        if self.pool is None:
            return await loop.run_in_executor(None, prepare_images, images)
        try:
            return await loop.run_in_executor(self.pool, prepare_images, images)
        except BrokenProcessPool:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self.new_pool()
            raise

    def new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the server process runs threads (the model's, the event loop's) that fork would not copy
        return ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))

    async def start(self) -> None:
        """Start every worker process before the first request (each imports digitcmp: about a second)."""
        self.pool = self.new_pool()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self.pool, ready) for _ in range(self.processes)))

    async def stop(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = None


def ready() -> bool:
    """A task for a fresh worker process: it has started and imported what preparing pictures needs."""
    return True


class SecurityHeaders:
    """Headers on every response: no content-type sniffing, no referrer; on the page, a Content-Security-Policy
    that allows its own inline script and style (by their hashes), its pictures and its calls to this server only."""

    def __init__(self, app, page_policy: str) -> None:
        self.app, self.page_policy = app, page_policy

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                if headers.get("content-type", "").startswith("text/html"):
                    headers["Content-Security-Policy"] = self.page_policy
                    headers["X-Frame-Options"] = "DENY"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def page_policy(page: str) -> str:
    """The page's Content-Security-Policy: nothing but its own inline script and style, data: pictures (the digits
    the model saw) and requests to this server."""

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
        digests = [base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() for block in blocks]
        return " ".join(f"'sha256-{digest}'" for digest in digests)

    return (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; img-src 'self' data: blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def create_app(
    model_path: Path | None = None,
    cors: Sequence[str] = (),
    threads: int | None = None,
    batch: bool = True,
    processes: int | None = None,
) -> Starlette:
    """The web application around one loaded model (the shipped one by default), kept in the app's state.

    ``cors``: origins whose pages may call the API (none by default); ``threads``: onnxruntime's threads (its
    default, every core, without); ``batch``: False answers each comparison with its own model call;
    ``processes``: the processes preparing pictures (one per core without)."""
    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/openapi.json", openapi),
        Route("/api/model", model_info),
        Route("/api/compare", compare_images, methods=["POST"]),
    ]
    page = (importlib.resources.files("digitcmp") / "web" / "index.html").read_text(encoding="utf-8")
    middleware = [Middleware(SecurityHeaders, page_policy=page_policy(page))]
    if cors:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(cors), allow_methods=["GET", "POST"]))
    model = load_model(model_path, threads)
    batcher = Batcher(model, MAX_BATCH if batch else 1)
    preparer = Preparer(processes or os.cpu_count() or 1)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await preparer.start()
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            await preparer.stop()

    handlers = {404: not_found, 405: not_allowed, 500: server_error}
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=lifespan)
    app.state.model, app.state.batcher, app.state.preparer, app.state.page = model, batcher, preparer, page
    return app


def app_from_environment() -> Starlette:
    """The application as ``serve`` configured it, for each uvicorn worker process (settings in the environment)."""
    model = os.environ.get(MODEL_ENV) or None
    cors = [origin for origin in os.environ.get(CORS_ENV, "").split(",") if origin]
    shares = int(os.environ[SHARES_ENV]) if os.environ.get(SHARES_ENV) else None
    return create_app(Path(model) if model else None, cors, shares, processes=shares)


async def index(request: Request) -> HTMLResponse:
    return HTMLResponse(request.app.state.page)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "version": __version__})


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())


async def model_info(request: Request) -> JSONResponse:
    return JSONResponse(model_summary(request.app.state.model))


async def compare_images(request: Request) -> Response:
    """POST first and second, or one sheet (multipart/form-data) → predict's JSON (``?include=digits`` adds what
    the model saw, for the page)."""
    images = await read_images(request)
    if isinstance(images, Response):
        return images
    state = request.app.state
    try:
        digits = await state.preparer.prepare(images)
        prediction = refused(await state.batcher.compare(digits), tuple(d.source for d in digits), keep_going=False)
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
    if length is not None and not length.isdigit():
        return error(400, f"content-length {length[:40]!r} is not a number of bytes")
    if length is not None and int(length) > MAX_BODY_BYTES:
        return error(413, f"the request is over {MAX_BODY_BYTES:,} bytes; send two images of at most "
                          f"{MAX_IMAGE_BYTES:,} bytes each")  # fmt: skip
    try:
        reading = request.form(max_files=2, max_fields=4, max_part_size=MAX_IMAGE_BYTES)
        form = await asyncio.wait_for(reading, BODY_SECONDS)
    except TimeoutError:
        return error(408, f"the request's body did not arrive within {BODY_SECONDS:g} s; send it at once")
    except ClientDisconnect:
        return error(400, "the client left before its request arrived")
    except Exception as exc:  # the multipart parser's own errors: malformed or oversized parts
        return error(400, f"the form cannot be read ({str(exc).splitlines()[0][:120] if str(exc) else 'malformed'})")
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


def prepare_images(images: dict[str, bytes]) -> tuple[Digit, Digit]:
    """Prepare the images as predict does (each named by its field): two pictures of one digit each, or one
    picture holding both."""
    if SHEET in images:
        return pair_from_bytes(images[SHEET], SHEET)
    first, second = (digit_from_bytes(images[field], field) for field in FIELDS)
    return first, second


def model_summary(model: Model) -> dict:
    """What GET /api/model answers: the variant, its accuracy, the input contract, the versions."""
    keys = ("variant", "variant_name", "params", "test_accuracy_mean", "test_accuracy_std", "test_rounds", "data",
            "input", "outputs", "labels", "digitcmp_version", "opset")  # fmt: skip
    return {"model": model.path.name, **{key: model.metadata.get(key) for key in keys}, "server_version": __version__}


async def not_found(request: Request, exc: Exception) -> JSONResponse:
    return error(404, f"{request.url.path}: no such page; try /, /api/compare, /api/model, /healthz or /openapi.json")


async def not_allowed(request: Request, exc: Exception) -> JSONResponse:
    return error(405, f"{request.method} {request.url.path}: not allowed; POST the images to /api/compare")


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    return error(500, SERVER_ERROR)


def exposure_warning(host: str) -> str | None:
    """The warning for an address that others can reach: the API has no authentication."""
    if host in EVERY_INTERFACE:
        return (
            f"warning: listening on every interface ({host or 'all'}): anyone who can reach this machine can use the "
            "page and the API, which have no authentication; use --host 127.0.0.1 to keep it local"
        )
    return None


def check_address(host: str, port: int) -> None:
    """Refuse, in one line, an address the server could not listen on (a port in use, a host not of this machine),
    before anything is announced or started."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's own socket: TIME_WAIT is no obstacle
        try:
            probe.bind((host, port))
        except OSError as error:
            raise DigitcmpError(
                f"cannot listen on {host}:{port} ({error.strerror or error}); stop what uses that port or choose "
                "another --port or --host"
            ) from None


def serve(
    model_path: Path | None,
    host: str,
    port: int,
    workers: int = 1,
    cors: Sequence[str] = (),
    ready: Callable[[], None] = lambda: None,
) -> None:
    """Run the application with uvicorn until Ctrl-C: ``workers`` processes, each its own model, sharing the cores
    (onnxruntime's threads and the preparing processes divided among them). ``ready`` runs once the model loaded
    and the address is free, just before the server starts."""
    import uvicorn

    load_model(model_path)  # a missing or broken model stops here, in one line, before any worker starts
    check_address(host, port)
    ready()
    os.environ[MODEL_ENV] = str(model_path or "")
    os.environ[CORS_ENV] = ",".join(cors)
    os.environ[SHARES_ENV] = str(max(1, (os.cpu_count() or 1) // workers)) if workers > 1 else ""
    uvicorn.run("digitcmp.serve:app_from_environment", factory=True, host=host, port=port, workers=workers,
                log_level="warning", timeout_keep_alive=5)  # fmt: skip
