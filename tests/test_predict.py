"""Predict: MNIST-style preprocessing of real images in every style, the shipped model's accuracy, JSON and CSV
output, refusal of bad input with one line, and no torch."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import assert_one_line_error
from digits import PAIRS, labelled_pair, png, sheet, write_pair
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

import digitcmp.predict as predict_module
from digitcmp.cli import app
from digitcmp.contract import input_contract
from digitcmp.data import load_source
from digitcmp.errors import DigitcmpError
from digitcmp.predict import SURE, Digit, Prediction, load_digit, load_model, predict_pairs, run_pairs, shipped_model
from digitcmp.preprocess import model_digits, pool_digits

runner = CliRunner()


@pytest.fixture(scope="module")
def test_digits():
    """Real MNIST test digits: the bundled test pool, sorted by class."""
    return load_source(None).test


def save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


STYLES = {
    "white on black png": lambda d, p: save(Image.fromarray(d), p / "x.png"),
    "black on white png": lambda d, p: save(Image.fromarray(255 - d), p / "x.png"),
    "rgba transparent": lambda d, p: save(transparent(d), p / "x.png"),
    "large rgb jpeg": lambda d, p: save(large_rgb(d), p / "x.jpg", quality=90),
    "off-centre big canvas": lambda d, p: save(off_centre(d), p / "x.png"),
    "14x14 png": lambda d, p: save(Image.fromarray(d).resize((14, 14), Image.Resampling.BOX), p / "x.png"),
    "16-bit png": lambda d, p: save(Image.fromarray(d.astype(np.uint16) * 257), p / "x.png"),
    "palette gif": lambda d, p: save(Image.fromarray(d).convert("P"), p / "x.gif"),
    "bmp": lambda d, p: save(Image.fromarray(d), p / "x.bmp"),
    "tiff": lambda d, p: save(Image.fromarray(255 - d), p / "x.tiff"),
    "webp": lambda d, p: save(Image.fromarray(d), p / "x.webp", lossless=True),
}  # fmt: skip


def transparent(digit: np.ndarray) -> Image.Image:
    """Black ink on a transparent background: the digit lives in the alpha channel only."""
    black = Image.fromarray(np.zeros_like(digit))
    return Image.merge("RGBA", [black, black, black, Image.fromarray(digit)])


def large_rgb(digit: np.ndarray) -> Image.Image:
    return Image.fromarray(255 - digit).convert("RGB").resize((280, 280), Image.Resampling.BICUBIC)


def off_centre(digit: np.ndarray) -> Image.Image:
    canvas = np.full((300, 400), 255, dtype=np.uint8)
    canvas[30:142, 250:362] = 255 - np.asarray(Image.fromarray(digit).resize((112, 112), Image.Resampling.BICUBIC))
    return Image.fromarray(canvas)


def test_npy_mnist_digit_is_exactly_the_training_tensor(tmp_path, test_digits):
    digit = test_digits.images[3]
    np.save(tmp_path / "d.npy", digit)
    assert np.array_equal(load_digit(tmp_path / "d.npy").pooled, pool_digits(digit[None])[0])
    assert np.array_equal(load_digit(tmp_path / "d.npy").image, digit)
    np.save(tmp_path / "p.npy", pool_digits(digit[None])[0])
    assert np.array_equal(load_digit(tmp_path / "p.npy").pooled, pool_digits(digit[None])[0])
    assert digit.max() == 255  # so the 0-1 copy below reaches exactly 1.0
    np.save(tmp_path / "f.npy", digit.astype(np.float32) / 255)  # the same digit as floats in [0, 1]
    assert np.array_equal(load_digit(tmp_path / "f.npy").image, digit)


@pytest.mark.parametrize("style", list(STYLES))
def test_every_image_style_becomes_the_mnist_digit(tmp_path, test_digits, style):
    """Images prepared like MNIST come out close to the training tensor of the same digit."""
    differences = []
    for digit in test_digits.images[:20]:
        path = STYLES[style](digit, tmp_path)
        differences.append(np.abs(load_digit(path).pooled - pool_digits(digit[None])[0]).mean())
    assert np.median(differences) < 0.06, differences


def style_accuracy(tmp_path, digits, labels, style) -> float:
    model = load_model()
    pairs, truth = [], []
    for i in range(0, 2 * 60, 2):
        folder = tmp_path / f"{style}-{i}"
        folder.mkdir()
        a = STYLES[style](digits[i], folder).rename(folder / f"a{STYLES[style](digits[i], folder).suffix}")
        b = STYLES[style](digits[i + 1], folder)
        pairs.append((a, b))
        truth.append(labels[i] <= labels[i + 1])
    predictions = list(predict_pairs(model, pairs, keep_going=True))  # a picture refused counts as wrong
    right = [isinstance(p, Prediction) and p.first_le_second == t for p, t in zip(predictions, truth, strict=True)]
    return float(np.mean(right))


@pytest.mark.parametrize("style", ["white on black png", "black on white png", "rgba transparent", "large rgb jpeg",
                                   "off-centre big canvas", "14x14 png"])  # fmt: skip
def test_shipped_model_is_right_on_real_digits_in_every_style(tmp_path, mnist_test_dir, style):
    source = load_source(mnist_test_dir)
    accuracy = style_accuracy(tmp_path, source.test.images[1000:], source.test.labels[1000:], style)
    assert accuracy >= 0.95, f"{style}: {accuracy:.3f}"


def test_a_model_must_return_its_outputs_in_the_contracts_order():
    from digitcmp.contract import OUTPUT_NAMES, describe_violation

    shape = [["batch", 2, 14, 14]]
    assert describe_violation(shape, list(OUTPUT_NAMES)) is None
    assert "does not return" in describe_violation(shape, list(reversed(OUTPUT_NAMES)))
    assert describe_violation([[1, 2, 28, 28]], list(OUTPUT_NAMES)) is None  # a model of full resolution
    assert "does not take" in describe_violation([["batch", 2, 20, 20]], list(OUTPUT_NAMES))
    assert "does not take" in describe_violation([["batch", 2, 14, 28]], list(OUTPUT_NAMES))


def test_shipped_model_metadata_and_contract():
    model = load_model()
    assert model.metadata["input"] == input_contract(model.size)
    assert model.metadata["variant"]["arch"] and model.metadata["test_accuracy_mean"] > 0.9
    assert shipped_model().is_file()


@pytest.fixture(params=PAIRS, ids=lambda labels: f"{labels[0]}-then-{labels[1]}")
def pair(request, tmp_path) -> tuple[Path, Path, int, int]:
    """Two image files of real digits and their labels: one pair each of first <, = and > second."""
    first, second = labelled_pair(*request.param)
    return (*write_pair(tmp_path / "pair", first, second), first.label, second.label)


@pytest.fixture()
def two_images(tmp_path) -> tuple[Path, Path]:
    """Two image files of clearly read digits of different classes, for tests about anything but the answer."""
    return write_pair(tmp_path / "pair", *labelled_pair(*PAIRS[0]))


def test_predict_json_answers_for_both_digits_in_order(pair):
    a, b, label_a, label_b = pair
    result = runner.invoke(app, ["predict", str(a), str(b), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"first", "second", "first_le_second", "probability", "consistent", "unsure"}
    read_keys = {"path", "digit", "probability", "runner_up", "runner_up_probability", "unsure", "picture"}
    assert set(data["first"]) == set(data["second"]) == read_keys
    picture = data["first"]["picture"]  # how the picture's ink was isolated: a clean scan, no specks to drop
    assert picture["even_background"] is True and picture["parts_dropped"] == 0 and picture["stroke_scale"] > 0
    assert (data["first"]["path"], data["second"]["path"]) == (str(a), str(b))
    assert (data["first"]["digit"], data["second"]["digit"]) == (label_a, label_b)
    assert data["first_le_second"] is (label_a <= label_b) and data["consistent"] is True
    # Clear digits: both reads and the answer, whichever way it goes, come with a high probability.
    assert data["unsure"] is False and data["probability"] >= SURE
    for side in ("first", "second"):
        read = data[side]
        assert read["probability"] >= SURE and read["runner_up"] != read["digit"] and read["unsure"] is False


def test_predict_panel_shows_the_verdict(pair):
    a, b, label_a, label_b = pair
    result = runner.invoke(app, ["predict", str(a), str(b)])
    assert result.exit_code == 0, result.output
    verdict = "yes" if label_a <= label_b else "no"
    assert f"{label_a} {'≤' if label_a <= label_b else '>'} {label_b} — {verdict}" in result.stdout


def test_predict_pairs_csv_answers_every_row_in_order(tmp_path):
    rows, expected = [], []
    for number, labels in enumerate(PAIRS):
        a, b = write_pair(tmp_path / f"pair{number}", *labelled_pair(*labels))
        rows += [(a.relative_to(tmp_path), b), (b, a)]  # a relative path is read from the CSV's folder
        expected += [labels, labels[::-1]]
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("first,second\n" + "".join(f"{first},{second}\n" for first, second in rows))
    result = runner.invoke(app, ["predict", "--pairs", str(csv_path), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["first"]["path"], line["second"]["path"]) for line in lines] == [
        (str(tmp_path / first), str(tmp_path / second)) for first, second in rows
    ]
    assert [(line["first"]["digit"], line["second"]["digit"]) for line in lines] == expected
    assert [line["first_le_second"] for line in lines] == [first <= second for first, second in expected]
    table = runner.invoke(app, ["predict", "--pairs", str(csv_path)])
    assert table.exit_code == 0 and f"{len(rows)} pairs" in table.stdout and "pairs/s" in table.output


def test_a_batch_answers_every_readable_pair_and_names_each_file_it_could_not_read(tmp_path):
    a, b = write_pair(tmp_path, *labelled_pair(2, 7))
    damaged, empty = tmp_path / "damaged.png", tmp_path / "empty.png"
    damaged.write_bytes(png(labelled_pair(5, 5)[0].image)[:60])  # a PNG cut short
    empty.write_bytes(b"")
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text(f"first,second\n{a},{b}\n{a},{damaged}\n{b},{a}\n{empty},{b}\n")
    result = runner.invoke(app, ["predict", "--pairs", str(csv_path), "--json"])
    assert result.exit_code == 2, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line.get("error") is None for line in lines] == [True, False, True, False]
    assert [(line["first"]["digit"], line["second"]["digit"]) for line in (lines[0], lines[2])] == [(2, 7), (7, 2)]
    assert str(damaged) in lines[1]["error"] and lines[1]["second"]["path"] == str(damaged)
    assert str(empty) in lines[3]["error"] and "empty" in lines[3]["error"]
    assert_one_line_error(result, 2, "2 of 4 pairs could not be read")
    table = runner.invoke(app, ["predict", "--pairs", str(csv_path)])
    assert table.exit_code == 2 and "4 pairs" in table.stdout and "error: " in table.stdout
    assert "2 pairs in" in table.output  # the throughput line counts the answered pairs
    assert_one_line_error(table, 2, "2 of 4 pairs could not be read")
    csv_path.write_text(f"first,second\n{a},{damaged}\n{b},{a}\n")  # one pair answered, of two: counted singular
    single = runner.invoke(app, ["predict", "--pairs", str(csv_path)])
    assert "1 pair in" in single.output and "2 pairs" in single.stdout
    assert_one_line_error(single, 2, "1 of 2 pairs could not be read")
    # The library stops at an unreadable pair unless asked to go on; two files on the command line are one answer.
    with pytest.raises(DigitcmpError, match="damaged"):
        list(predict_pairs(load_model(), [(a, b), (a, damaged)]))
    assert_one_line_error(runner.invoke(app, ["predict", str(a), str(damaged)]), 2, str(damaged))


def test_a_lone_pair_reads_both_pictures_at_once_while_the_model_loads_and_answers_as_in_turn(tmp_path, monkeypatch):
    a, b = write_pair(tmp_path, *labelled_pair(3, 8))
    expected = next(predict_pairs(load_model(), [(a, b)])).to_dict()
    threads = set()
    reading = predict_module.load_digit

    def slow_read(path: Path) -> Digit:  # as slow as a camera photo: the second file must not wait for the first
        threads.add(threading.get_ident())
        time.sleep(0.2)
        return reading(path)

    monkeypatch.setattr(predict_module, "load_digit", slow_read)
    results, _ = predict_module.timed(None, [(a, b)])  # the shipped model, loading in a thread of its own
    assert [r.to_dict() for r in results] == [expected] and len(threads) == 2
    damaged, missing = tmp_path / "damaged.png", tmp_path / "missing.png"
    damaged.write_bytes(png(labelled_pair(5, 5)[0].image)[:60])
    with pytest.raises(DigitcmpError, match=r"damaged\.png is damaged"):  # the first file that fails, both read at once
        predict_module.timed(None, [(damaged, missing)])
    with pytest.raises(DigitcmpError, match=r"nothing\.onnx does not exist"):  # the model's failure, once it is needed
        predict_module.timed(tmp_path / "nothing.onnx", [(a, b)])


@pytest.mark.parametrize("stacked", [False, True], ids=["side by side", "one above the other"])
@pytest.mark.parametrize("labels", PAIRS, ids=[f"{a} vs {b}" for a, b in PAIRS])
def test_one_picture_holding_both_digits_is_read_in_order(tmp_path, labels, stacked):
    path = tmp_path / "sheet.png"
    path.write_bytes(png(sheet(list(labelled_pair(*labels)), stacked)))
    result = runner.invoke(app, ["predict", str(path), "--json", "--save-digits", str(tmp_path / "seen")])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert (answer["first"]["digit"], answer["second"]["digit"]) == labels
    assert answer["first_le_second"] is (labels[0] <= labels[1])
    places = ("top", "bottom") if stacked else ("left", "right")
    assert (answer["first"]["place"], answer["second"]["place"]) == places
    assert answer["first"]["path"] == answer["second"]["path"] == str(path)
    assert sorted(p.name for p in (tmp_path / "seen").iterdir()) == ["first-sheet.png", "second-sheet.png"]
    panel = runner.invoke(app, ["predict", str(path)])
    assert f"sheet.png ({places[0]})" in panel.stdout and f"sheet.png ({places[1]})" in panel.stdout


def test_one_picture_holding_a_large_and_a_small_digit_is_still_a_pair(tmp_path):
    """A writer's two digits may differ in size: the second, drawn at 40% of the first's height (less than a
    single picture's digit count allows a digit), is still read as the pair's second digit."""
    first, second = labelled_pair(3, 8)
    page = sheet([first, second])
    side = 28 * 4
    cell = page[side // 2 : -side // 2, -side - side // 2 : -side // 2]  # the second digit's (half a cell of margin)
    small = np.asarray(Image.fromarray(cell).resize((side * 2 // 5, side * 2 // 5), Image.BILINEAR))
    cell[:] = 255
    cell[side // 3 : side // 3 + len(small), side // 3 : side // 3 + len(small)] = small
    path = tmp_path / "sheet.png"
    path.write_bytes(png(page))
    answer = json.loads(runner.invoke(app, ["predict", str(path), "--json"]).stdout)
    assert (answer["first"]["digit"], answer["second"]["digit"]) == (3, 8)


@pytest.mark.parametrize("count", [1, 3])
def test_a_picture_of_one_or_three_digits_is_not_a_pair(tmp_path, count):
    path = tmp_path / "sheet.png"
    path.write_bytes(png(sheet([labelled_pair(2, 7)[0], *labelled_pair(5, 9)][:count])))
    assert_one_line_error(runner.invoke(app, ["predict", str(path)]), 2, f"holds {count} digit", "two image files")


def test_two_files_where_one_holds_several_digits_say_so_instead_of_reading_one(tmp_path):
    a, _ = write_pair(tmp_path, *labelled_pair(2, 7))
    several = tmp_path / "several.png"
    several.write_bytes(png(sheet(list(labelled_pair(5, 9)))))
    result = runner.invoke(app, ["predict", str(a), str(several)])
    assert_one_line_error(result, 2, str(several), "holds 2 digits", "give it alone")


def bad_inputs(tmp_path) -> dict:
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(png, format="PNG")
    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 9000)).save(bomb)
    files = {
        "missing": (tmp_path / "nope.png", "does not exist"),
        "directory": (tmp_path, "is a directory"),
        "empty": (tmp_path / "empty.png", "is empty"),
        "truncated": (tmp_path / "trunc.png", "damaged or truncated"),
        "not an image": (tmp_path / "text.png", "not an image"),
        "too large": (bomb, "pixel"),
        "wrong npy shape": (tmp_path / "shape.npy", "shape (3, 5)"),
    }
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "trunc.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    (tmp_path / "text.png").write_text("hello, I am not a picture")
    np.save(tmp_path / "shape.npy", np.zeros((3, 5)))
    return files


@pytest.mark.parametrize(
    "case", ["missing", "directory", "empty", "truncated", "not an image", "too large", "wrong npy shape"]
)
def test_bad_images_are_refused_with_one_line_naming_the_file(tmp_path, two_images, case):
    """The command answers in one line, and the library raises DigitcmpError (which serve turns into a 4xx)."""
    path, words = bad_inputs(tmp_path)[case]
    assert_one_line_error(runner.invoke(app, ["predict", str(path), str(two_images[1])]), 2, str(path), words)
    with pytest.raises(DigitcmpError) as error:
        load_digit(path)
    assert str(path) in str(error.value) and words in str(error.value)


def test_bad_models_are_refused(tmp_path, two_images):
    import onnx
    from onnx import TensorProto, helper

    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 10)
    plain = onnx.load(str(shipped_model()))
    del plain.metadata_props[:]
    no_metadata = tmp_path / "plain.onnx"
    onnx.save(plain, str(no_metadata))
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])])  # fmt: skip
    wrong = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    wrong.metadata_props.add(key="digitcmp", value=json.dumps(load_model().metadata))  # valid, on the wrong graph
    wrong_path = tmp_path / "wrong.onnx"
    onnx.save(wrong, str(wrong_path))
    for model, words in ((tmp_path / "none.onnx", "does not exist"), (corrupt, "cannot be loaded"),
                         (no_metadata, "no digitcmp metadata"), (wrong_path, "N×2×14×14")):  # fmt: skip
        result = runner.invoke(app, ["predict", str(two_images[0]), str(two_images[1]), "--model", str(model)])
        assert_one_line_error(result, 2, str(model), words)


def test_usage_mistakes(two_images):
    count = "error: predict needs two image files, one picture with both digits, or --pairs CSV"
    for args, line in (
        (["predict"], count),
        (["predict", *map(str, two_images * 2)], count),
        (
            ["predict", *map(str, two_images), "--pairs", "x.csv"],
            "error: give either image files or --pairs CSV, not both",
        ),
    ):
        result = runner.invoke(app, args)
        assert_one_line_error(result, 2)
        assert result.output.strip().splitlines()[-1] == line  # the whole line: it tells the fix


@pytest.mark.slow
def test_predict_runs_without_torch(two_images):
    a, b = two_images
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any 'import torch' now fails
        "from digitcmp.cli import app\n"
        f"app(['predict', {str(a)!r}, {str(b)!r}, '--json'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["first"]["path"] == str(a)


def test_a_picture_without_a_digit_is_refused_in_one_line(tmp_path, two_images):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (400, 300), (236, 233, 225)).save(blank)
    assert_one_line_error(
        runner.invoke(app, ["predict", str(blank), str(two_images[1])]), 2, f"no digit found in {blank}"
    )


def test_save_digits_writes_what_the_model_saw(tmp_path, two_images):
    a, b = two_images
    out = tmp_path / "seen"
    result = runner.invoke(app, ["predict", str(a), str(b), "--save-digits", str(out), "--json"])
    assert result.exit_code == 0, result.output
    saved = sorted(p.name for p in out.iterdir())
    assert saved == ["first-a.png", "second-b.png"]
    for name, source in (("first-a.png", a), ("second-b.png", b)):
        seen = np.asarray(Image.open(out / name))
        assert seen.shape == (28, 28) and seen.dtype == np.uint8
        assert np.array_equal(pool_digits(seen[None])[0], load_digit(source).pooled)  # exactly the model's input


def test_an_unsure_read_names_the_runner_up():
    from digitcmp.predict import Digit, Prediction

    digit = Digit("x.png", np.zeros((28, 28), np.uint8), np.zeros((14, 14), np.float32))
    probabilities = np.full((2, 10), 0.01)
    probabilities[0, 4], probabilities[0, 9] = 0.55, 0.37  # a 4 that might be a 9
    probabilities[1, 7] = 0.91
    data = Prediction(digit, digit, 0.93, probabilities).to_dict()
    assert data["first"]["unsure"] and (data["first"]["digit"], data["first"]["runner_up"]) == (4, 9)
    assert not data["second"]["unsure"] and data["unsure"]  # one unsure digit makes the answer unsure
    from digitcmp.report import prediction_panel

    console = Console(width=120, record=True)
    console.print(prediction_panel(Prediction(digit, digit, 0.93, probabilities)))
    text = console.export_text()
    assert "unsure: or 9" in text and "4 ≤ 7 — yes (93.0%)" in text


def blank(source: str) -> Digit:
    return Digit(source, np.zeros((28, 28), np.uint8), np.zeros((14, 14), np.float32))


def test_a_read_rounds_to_six_places_and_is_sure_from_the_threshold_up():
    """Digit probabilities exactly at SURE are sure; just under it, unsure; values are rounded to 6 decimals."""
    probabilities = np.zeros((2, 10))
    probabilities[0, [4, 7]] = SURE, 1 - SURE
    probabilities[1, [2, 5]] = 0.7999996, 0.2000004
    answer = Prediction(blank("a.png"), blank("b.png"), 0.123456789, probabilities).to_dict()
    assert answer["first"] == {"path": "a.png", "digit": 4, "probability": SURE, "runner_up": 7,
                               "runner_up_probability": round(1 - SURE, 6), "unsure": False}  # fmt: skip
    assert answer["second"]["probability"] == 0.8 and answer["second"]["runner_up_probability"] == 0.2
    assert answer["second"]["unsure"] is True and answer["probability"] == 0.876543


def test_every_view_is_read_a_few_pairs_at_a_time_with_the_answers_of_one_call(monkeypatch, test_digits) -> None:
    """Every-view reads go to the graph VIEWS_BATCH pairs per call, which bounds their memory, and give what one
    call on all the pairs gives."""
    model = load_model()
    pairs = model_digits(test_digits.images[:22], model.size).reshape(-1, 2, model.size, model.size)
    whole_le, whole_digits = model.session.run(None, {"pairs": pairs})
    calls, session = [], model.session
    monkeypatch.setattr(predict_module, "VIEWS_BATCH", 4)
    model.session = SimpleNamespace(run=lambda out, feeds: calls.append(len(feeds["pairs"])) or session.run(out, feeds))
    model.all_views = True
    le, digits = model.run(pairs)
    assert calls == [4, 4, 3]
    assert np.allclose(le, whole_le, atol=1e-6) and np.allclose(digits, whole_digits, atol=1e-6)


def test_compare_answers_every_pair_when_they_span_several_batches(monkeypatch):
    """More pairs than one batch: every pair answered, in order."""
    monkeypatch.setattr(predict_module, "BATCH", 2)
    pairs = [labelled_pair(*labels) for labels in ((1, 2), (3, 3), (8, 0), (0, 9), (6, 6))]
    prepared = [tuple(digit_of(d.image, f"{d.label}.png") for d in pair) for pair in pairs]
    answers = run_pairs(load_model(), prepared)
    assert [answer.digits for answer in answers] == [(a.label, b.label) for a, b in pairs]


def drawn_nondigit(kind: str) -> Image.Image:
    """Something that is no digit, drawn in dark ink on white paper as a user might: a letter, a symbol, a shape
    or a face."""
    from PIL import ImageDraw, ImageFont

    image = Image.new("L", (200, 200), 255)
    pen = ImageDraw.Draw(image)
    if kind in ("A", "#", "K"):
        font = ImageFont.load_default(size=150)
        pen.text((100, 100), kind, fill=0, font=font, anchor="mm", stroke_width=4, stroke_fill=0)
    elif kind == "smiley":
        pen.ellipse((30, 30, 170, 170), outline=0, width=9)
        pen.ellipse((70, 70, 85, 85), fill=0)
        pen.ellipse((115, 70, 130, 85), fill=0)
        pen.arc((65, 80, 135, 140), 20, 160, fill=0, width=9)
    elif kind == "star":
        points = [(100 + 80 * r * np.sin(i * np.pi / 5), 105 - 80 * r * np.cos(i * np.pi / 5))
                  for i, r in zip(range(10), [1, 0.4] * 5, strict=True)]  # fmt: skip
        pen.line(points + points[:1], fill=0, width=9, joint="curve")
    else:  # a square
        pen.rectangle((40, 40, 160, 160), outline=0, width=10)
    return image


NONDIGITS = ("A", "#", "K", "smiley", "star", "square")


@pytest.mark.parametrize("kind", NONDIGITS)
def test_a_drawn_letter_symbol_shape_or_face_is_refused_in_one_line(kind: str, tmp_path: Path) -> None:
    picture = save(drawn_nondigit(kind), tmp_path / "thing.png")
    first, _ = write_pair(tmp_path / "digits", *labelled_pair(*PAIRS[0]))
    result = runner.invoke(app, ["predict", str(first), str(picture)])
    assert_one_line_error(result, 2, f"no digit in {picture}: it does not look like a handwritten digit")


def test_real_digits_are_almost_never_refused_as_no_digit(test_digits) -> None:
    every = np.arange(0, len(test_digits.labels), 5)  # 500 digits, 50 of each class
    model = load_model()
    answers = run_pairs(model, [(digit_of(image), digit_of(image)) for image in test_digits.images[every]])
    refused = sum(not answer.is_digit(0) for answer in answers)
    assert model.refuses_nondigits and refused <= 5  # at most 1%


def digit_of(image: np.ndarray, name: str = "mnist") -> Digit:
    """An MNIST digit (uint8 28×28) as predict prepares one, for a model of either input side."""
    return Digit(name, image, pool_digits(image[None])[0])


def test_the_shipped_model_is_calibrated_on_held_out_training_digits_and_unsure_follows_its_probabilities(
    test_digits,
) -> None:
    model = load_model()
    calibration = model.metadata["calibration"]
    assert calibration["digit_temperature"] > 0 and calibration["digits"] >= 1000
    assert calibration["digit_ece_calibrated"] <= calibration["digit_ece"]
    images = test_digits.images[::50]
    answers = run_pairs(model, [(digit_of(a), digit_of(b)) for a, b in zip(images, images[::-1], strict=True)])
    for answer in answers:
        assert np.all(answer.digit_probabilities >= 0) and np.allclose(answer.digit_probabilities.sum(-1), 1, atol=1e-5)
        assert 0 <= answer.le_probability <= 1
        for which in (0, 1):
            read = answer.read(which)
            assert read["unsure"] == (read["probability"] < SURE)
        assert answer.unsure == (answer.probability < SURE or any(answer.read(w)["unsure"] for w in (0, 1)))


def test_early_exit_answers_from_the_first_view_only_where_it_is_sure_and_else_from_every_view(test_digits) -> None:
    """Each pair's answer is the first view's where both digits and the comparison reach EARLY_EXIT there, every
    view's otherwise; most clear MNIST pairs exit early, and the decisions are those of every view."""
    from digitcmp.contract import VIEWS_INPUT

    model = load_model()
    assert model.first_view
    pairs = model_digits(test_digits.images[::5], model.size).reshape(-1, 2, model.size, model.size)
    first_le, first_digits = model.session.run(None, {"pairs": pairs, VIEWS_INPUT: np.array(False)})
    every_le, every_digits = model.session.run(None, {"pairs": pairs})
    le, digits = model.run(pairs)
    sure = (first_digits.max(-1) >= predict_module.EARLY_EXIT).all(-1)
    sure &= np.maximum(first_le, 1 - first_le) >= predict_module.EARLY_EXIT
    assert 0.5 < sure.mean() < 1  # both rules at work on these pairs
    assert np.allclose(le, np.where(sure, first_le, every_le), atol=1e-6)
    assert np.allclose(digits, np.where(sure[:, None, None], first_digits, every_digits), atol=1e-6)
    assert not np.allclose(first_digits, every_digits, atol=1e-3)  # the two readings do differ
    assert ((le > 0.5) == (every_le > 0.5)).mean() >= 0.99
    model.all_views = True
    assert np.array_equal(model.run(pairs)[1], every_digits)


def test_early_exit_needs_both_digits_and_the_comparison_sure() -> None:
    """Pairs whose first view is unsure of either digit or of the comparison alone are read again in every view."""
    from digitcmp.contract import VIEWS_INPUT

    sure, doubt = predict_module.EARLY_EXIT, predict_module.EARLY_EXIT - 0.01
    digit = np.array([sure] + [(1 - sure) / 9] * 9, dtype=np.float32)
    unsure_digit = np.array([doubt] + [(1 - doubt) / 9] * 9, dtype=np.float32)
    first_le = np.array([sure, 1 - sure, doubt, sure], dtype=np.float32)  # the third: comparison unsure
    first_digits = np.stack([np.stack([digit, digit])] * 3 + [np.stack([digit, unsure_digit])])  # the fourth: a digit

    class Session:
        def __init__(self) -> None:
            self.calls: list[int] = []

        def run(self, outputs, feeds):
            n = len(feeds["pairs"])
            self.calls.append(n)
            if feeds.get(VIEWS_INPUT) is not None and not feeds[VIEWS_INPUT]:
                return first_le.copy(), first_digits.copy()
            return np.full(n, 0.25, np.float32), np.full((n, 2, 10), 0.1, np.float32)

    session = Session()
    model = predict_module.Model(Path("m.onnx"), session, "pairs", {}, first_view=True)
    le, digits = model.run(np.zeros((4, 2, 14, 14), np.float32))
    assert session.calls == [4, 2]
    assert np.allclose(le, [sure, 1 - sure, 0.25, 0.25]) and np.allclose(digits[2:], 0.1)
    assert np.allclose(digits[:2], first_digits[:2])
