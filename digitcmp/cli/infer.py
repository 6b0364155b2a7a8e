"""``digitcmp export``, ``predict``, ``serve`` and ``list``: the trained model to ONNX, and the ONNX model at work
(onnxruntime, no torch needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..config import DATA_ENV
from ..errors import DigitcmpError, require_extra
from ..settings import ADVANCED
from .app import app, examples, friendly

Model = Annotated[Path | None, typer.Option(help="ONNX model.", show_default="the model shipped with digitcmp")]
Checkpoint = Annotated[Path | None, typer.Argument(help="Checkpoint of a train or bench run.",
                                                   show_default="the newest under runs/")]  # fmt: skip
OnnxOut = Annotated[Path | None, typer.Option(help="ONNX file.", show_default="<variant>.onnx beside the checkpoint")]
TestDigits = Annotated[Path | None, typer.Option(
    envvar=DATA_ENV, show_default="the bundled sample",
    help="Folder with MNIST IDX files: the test pairs that check the file.")]  # fmt: skip
Opset = Annotated[int, typer.Option(min=17, help="ONNX opset.", rich_help_panel=ADVANCED)]
Images = Annotated[list[Path] | None, typer.Argument(
    help="Two image files (PNG, JPEG, BMP, GIF, TIFF, WebP) or .npy digits, or one picture holding both digits.",
    show_default=False)]  # fmt: skip
PairsCsv = Annotated[Path | None, typer.Option("--pairs", help="CSV with header first,second: many pairs in batches.")]
SaveDigits = Annotated[Path | None, typer.Option(
    "--save-digits", help="Write the 28×28 digit the model saw for each input, as PNG, into this folder.")]  # fmt: skip
Host = Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")]
Port = Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")]
Workers = Annotated[int, typer.Option(min=1, max=64, help="Server processes, each with its own model.")]
Cors = Annotated[
    list[str] | None,
    typer.Option("--cors", help="An origin whose pages may call the API (repeat for several; none by default)."),
]


PredictJson = Annotated[bool, typer.Option("--json", help="JSON on stdout (one object per pair with --pairs).")]
ListJson = Annotated[bool, typer.Option("--json", help="Print only JSON on stdout.")]


@app.command(epilog=examples("digitcmp export", "digitcmp export runs/study/best.pt --out mine.onnx"))
@friendly
def export(checkpoint: Checkpoint = None, out: OnnxOut = None, data_dir: TestDigits = None,
           quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No notes on stderr.")] = False,
           opset: Opset = 17) -> None:  # fmt: skip
    """Export a checkpoint to ONNX, checked by onnx.checker and parity with torch on real test pairs."""
    require_extra("train", "'digitcmp export'")
    from ..data import load_source
    from ..export import export_onnx, latest_checkpoint
    from ..report import export_panel, stderr_console, stdout_console

    log = stderr_console(quiet)
    if checkpoint is None:
        log.print(f"checkpoint: {(checkpoint := latest_checkpoint())} (the newest under runs/)")
    summary = export_onnx(checkpoint, out, load_source(data_dir), opset)
    stdout_console().print(export_panel(summary))
    log.print(f"next: digitcmp predict first.png second.png --model {summary.path}")


@app.command(epilog=examples(
    "digitcmp predict three.png seven.jpg",
    "digitcmp predict a.png b.png --json",
    "digitcmp predict sheet.jpg",
    "digitcmp predict --pairs pairs.csv --model mine.onnx",
))  # fmt: skip
@friendly
def predict(images: Images = None, pairs: PairsCsv = None, model: Model = None,
            json_output: PredictJson = False,
            save_digits_to: SaveDigits = None) -> None:  # fmt: skip
    """Is the first digit ≤ the second? Two pictures, or one holding both (onnxruntime; no torch needed)."""
    from ..predict import Failed, pairs_to_read, save_digits, timed
    from ..report import prediction_panel, predictions_table, stderr_console, stdout_console
    from ..summary import counted

    todo = pairs_to_read(images, pairs)
    results, seconds = timed(model, todo, keep_going=pairs is not None)
    answered = [r for r in results if not isinstance(r, Failed)]
    if save_digits_to is not None:
        written = save_digits(answered, save_digits_to)
        stderr_console(json_output).print(f"{counted(len(written), 'digit')} as the model saw them: {save_digits_to}/")
    if json_output:
        for result in results:
            typer.echo(json.dumps(result.to_dict()))
    elif pairs is None:
        stdout_console().print(prediction_panel(results[0]))
    else:
        stdout_console().print(predictions_table(results))
        rate = f"{len(answered) / seconds:,.0f} pairs/s"
        stderr_console().print(f"{counted(len(answered), 'pair')} in {seconds:.2f} s ({rate})")
    if len(answered) < len(results):
        failed = len(results) - len(answered)
        raise DigitcmpError(f"{failed} of {counted(len(results), 'pair')} could not be read (their rows name the file "
                            "and why); every other pair is answered")  # fmt: skip


@app.command(epilog=examples(
    "digitcmp serve",
    "digitcmp serve --model mine.onnx --port 8080",
    "curl -F first=@three.png -F second=@seven.jpg http://127.0.0.1:8000/api/compare",
))  # fmt: skip
@friendly
def serve(
    model: Model = None, host: Host = "127.0.0.1", port: Port = 8000, workers: Workers = 1, cors: Cors = None
) -> None:
    """A web page to draw or drop two digits, and an HTTP API for the same comparison (no torch needed)."""
    require_extra("serve", "'digitcmp serve'")
    from ..report import stderr_console
    from ..serve import exposure_warning
    from ..serve import serve as run_server

    console = stderr_console()
    warning = exposure_warning(host)
    if warning:
        console.print(warning, style="yellow", highlight=False)
    announce = (f"digitcmp serve: http://{host}:{port}/  (API: POST /api/compare, described at /openapi.json; "
                "Ctrl-C stops)")  # fmt: skip
    run_server(model, host, port, workers, tuple(cors or ()), ready=lambda: console.print(announce, highlight=False))


@app.command("list", epilog=examples("digitcmp list", "digitcmp list --json"))
@friendly
def list_architectures(json_output: ListJson = False) -> None:
    """List the architectures (what each is, its parameters with and without weight sharing, its recipe) and the
    presets that reproduce the course reports."""
    from ..report import architectures_records, architectures_table, presets_records, presets_table, stdout_console

    if json_output:
        records = {"architectures": architectures_records(), "presets": presets_records()}
        typer.echo(json.dumps(records, indent=2, ensure_ascii=False))
        return
    stdout_console().print(architectures_table())
    stdout_console().print(presets_table())
