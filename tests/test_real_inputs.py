"""Inputs from files: .npy/.npz, images with declared preprocessing, ONNX test data sets, Polygraphy's inputs JSON.

Real images come from scikit-image's bundled samples (files inside the package, never downloaded); every other
file is written by the test itself, with numpy, onnx or polygraphy, never by parity.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from onnx import numpy_helper

from tests.conftest import SEARCHPATH
from tests.extras import needs_opencv, sample_images

MLP = ["model=mlp"]
RGB = [SEARCHPATH, "model=tiny_rgb", "exporter=torchscript"]
SMALL = ["inputs=images", "inputs.preprocess.resize_shorter=36", "inputs.preprocess.crop=[32,32]"]


def samples(count: int, seed: int = 0, features: int = 16, dtype: str = "float32") -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, features)).astype(dtype)


def manifest(root: Path, model: str, input_set: str) -> dict:
    return json.loads((root / model / input_set / "manifest.json").read_text())


def test_an_npz_input_set_is_stored_hashed_and_verified(run_parity, tmp_path: Path) -> None:
    np.savez(tmp_path / "mine.npz", x=samples(6))
    root = tmp_path / "golden"
    args = [*MLP, "inputs=files", "inputs.name=mine", "inputs.path=mine.npz"]
    made, code = run_parity([*args, "mode=golden"], root)
    assert code == 0, made.get("error")
    stored = manifest(root, "mlp", "mine")
    assert stored["num_samples"] == 6
    record = stored["inputs_source"]
    assert record["source"] == "npz" and record["path"] == str(tmp_path / "mine.npz")
    assert record["files"][0]["sha256"] == __import__("hashlib").sha256((tmp_path / "mine.npz").read_bytes()).hexdigest()
    checked, code = run_parity(args, root)
    assert code == 0, checked.get("error")
    assert checked["golden"]["inputs_source"]["files"] == record["files"]
    assert [c["batch_size"] for c in checked["checks"]] == [6, 6]
    with np.load(root / "mlp" / "mine" / "inputs.npz") as stored_inputs:
        np.testing.assert_array_equal(stored_inputs["x"], samples(6))  # the golden holds exactly the file's values


def test_changed_input_files_make_the_golden_stale(run_parity, tmp_path: Path) -> None:
    np.savez(tmp_path / "mine.npz", x=samples(4))
    root = tmp_path / "golden"
    args = [*MLP, "inputs=files", "inputs.path=mine.npz"]
    assert run_parity([*args, "mode=golden"], root)[1] == 0
    np.savez(tmp_path / "mine.npz", x=samples(4, seed=1))  # someone replaced the test data
    report, code = run_parity(args, root)
    assert code == 2 and "input files changed" in report["error"] and "mine.npz" in report["error"]
    assert "golden.overwrite=true" in report["error"]


def test_missing_input_files_verify_on_the_golden_copy(run_parity, tmp_path: Path, caplog) -> None:
    np.savez(tmp_path / "mine.npz", x=samples(4))
    root = tmp_path / "golden"
    args = [*MLP, "inputs=files", "inputs.path=mine.npz"]
    assert run_parity([*args, "mode=golden"], root)[1] == 0
    (tmp_path / "mine.npz").unlink()  # a CI checkout with the golden but not the data it was made from
    report, code = run_parity(args, root)
    assert code == 0, report.get("error")
    assert "the input files are not here" in caplog.text and "golden's stored copy" in caplog.text


def test_a_corrupted_input_file_is_a_changed_file_not_a_missing_one(run_parity, tmp_path: Path) -> None:
    np.savez(tmp_path / "mine.npz", x=samples(4))
    root = tmp_path / "golden"
    args = [*MLP, "inputs=files", "inputs.path=mine.npz"]
    assert run_parity([*args, "mode=golden"], root)[1] == 0
    (tmp_path / "mine.npz").write_bytes(b"truncated by a bad copy")
    report, code = run_parity(args, root)
    assert code == 2 and "input files changed" in report["error"]


def test_benchmarks_run_on_an_input_set_read_from_files(run_parity, tmp_path: Path) -> None:
    np.savez(tmp_path / "mine.npz", x=samples(3))
    quick = ["bench.runs=2", "bench.min_seconds=0", "bench.warmup_runs=0", "bench.plot=false"]
    report, code = run_parity([*MLP, "inputs=files", "inputs.path=mine.npz", "mode=bench", *quick],
                              tmp_path / "golden")
    assert code == 0, report.get("error")
    assert [r["batch_size"] for r in report["bench"]["results"]] == [1]  # no golden read: one sample per run
    assert run_parity([*MLP, "inputs=files", "inputs.path=mine.npz", "mode=golden"], tmp_path / "golden")[1] == 0
    report, code = run_parity([*MLP, "inputs=files", "inputs.path=mine.npz", "mode=verify+bench", *quick],
                              tmp_path / "golden")
    assert code == 0, report.get("error")
    assert [r["batch_size"] for r in report["bench"]["results"]] == [3]  # the sizes the verify ran


def test_one_npy_per_input_and_a_single_npy(run_parity, tmp_path: Path) -> None:
    np.save(tmp_path / "test_samples.npy", samples(10))  # seed 002's test_samples.npy, for a one-input model
    root = tmp_path / "golden"
    made, code = run_parity([*MLP, "inputs=files", "inputs.source=npy", "inputs.path=test_samples.npy",
                             "inputs.name=s002", "mode=golden"], root)
    assert code == 0, made.get("error")
    assert manifest(root, "mlp", "s002")["num_samples"] == 10
    made, code = run_parity([*MLP, "inputs=files", "inputs.source=npy", "+inputs.files={x: test_samples.npy}",
                             "inputs.name=byname", "mode=golden"], root)
    assert code == 0, made.get("error")
    assert manifest(root, "mlp", "byname")["inputs_source"]["files"][0]["path"] == str(tmp_path / "test_samples.npy")


@pytest.mark.parametrize("content, expected", [
    ({"x": samples(5)}, "the files hold 5 sample(s), input set 'files' declares inputs.num_samples=4"),
    ({"x": samples(3, dtype="float64")}, "input 'x' is float64 in the files, declared float32"),
    ({"x": samples(3, features=15)}, "input 'x' has shape [3, 15] in the files, declared ['batch', 16]"),
    ({"y": samples(4)}, "the files hold inputs ['y'], the model declares ['x'] (missing ['x']; not declared ['y'])"),
])
def test_files_that_do_not_fit_the_declaration_are_one_clear_error(run_parity, tmp_path: Path, content: dict,
                                                                    expected: str) -> None:
    np.savez(tmp_path / "bad.npz", **content)
    extra = ["inputs.num_samples=4"] if "5 sample" in expected else []
    report, code = run_parity([*MLP, "inputs=files", "inputs.path=bad.npz", *extra, "mode=golden"],
                              tmp_path / "golden")
    assert code == 2 and report["verdict"] == "ERROR"
    assert expected in report["error"], report["error"]
    assert not (tmp_path / "golden" / "mlp").exists()  # nothing written


def test_pickled_arrays_are_refused(run_parity, tmp_path: Path) -> None:
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    report, code = run_parity([*MLP, "inputs=files", "inputs.source=npy", "inputs.path=objects.npy", "mode=golden"],
                              tmp_path / "golden")
    assert code == 2 and "pickled" in report["error"] and "refused" in report["error"]


@pytest.mark.parametrize("overrides, expected", [
    (["inputs.path=x.npz"], "inputs.path is set but inputs.source is generated"),
    (["inputs.num_samples=null"], "inputs.num_samples is null"),
    (["inputs=images"], "inputs.source=images needs inputs.path"),
    (["inputs=images", "inputs.path=p", "inputs.preprocess.interpolation=INTER_LINEAR"],
     "'INTER_LINEAR' is not a Pillow filter"),
    (["inputs=images", "inputs.path=p", "inputs.preprocess.library=opencv"],
     "'bilinear' is not an OpenCV interpolation"),
    (["inputs=images", "inputs.path=p", "inputs.image_input=nope"], "inputs.image_input 'nope' is not an input"),
    (["inputs=images", "inputs.path=p", "inputs.preprocess.layout=CHW"], "layout 'CHW' is not one of NCHW, NHWC"),
    (["inputs=files", "inputs.source=npy", "+inputs.files={y: a.npy}"], "inputs.files names ['y']"),
])
def test_bad_input_settings_are_configuration_errors(run_parity, tmp_path: Path, overrides: list[str],
                                                     expected: str) -> None:
    report, code = run_parity([*MLP, *overrides, "mode=golden"], tmp_path / "golden")
    assert code == 2 and report["error"].startswith("configuration error") and expected in report["error"], \
        report["error"]


def test_images_are_preprocessed_as_declared_recorded_and_verified(run_parity, tmp_path: Path) -> None:
    photos = sample_images(tmp_path / "photos", 4)
    root = tmp_path / "golden"
    args = [*RGB, *SMALL, f"inputs.path={photos}/*.png", "inputs.name=photos"]
    made, code = run_parity([*args, "mode=golden"], root)
    assert code == 0, made.get("error")
    record = manifest(root, "tiny_rgb", "photos")["inputs_source"]
    assert [Path(f["path"]).name for f in record["files"]] == sorted(p.name for p in photos.glob("*.png"))
    steps = record["preprocess"]
    assert steps["library"] == "pillow" and steps["interpolation"] == "bilinear" and steps["crop"] == [32, 32]
    assert steps["pillow_version"] and steps["decoder"] == "pillow"
    with np.load(root / "tiny_rgb" / "photos" / "inputs.npz") as stored:
        image = stored["image"]
    assert image.shape == (4, 3, 32, 32) and image.dtype == np.float32
    # ImageNet-normalised real photos: values spread over roughly [-2.1, 2.6], every channel different
    assert image.min() < -1.0 and image.max() > 1.0 and len({float(image[:, c].mean()) for c in range(3)}) == 3
    checked, code = run_parity(args, root)
    assert code == 0, checked.get("error")
    assert checked["golden"]["inputs_source"]["preprocess"]["interpolation"] == "bilinear"
    # another preprocessing is another input set: the golden is stale, and says which step changed
    report, code = run_parity([*args, "inputs.preprocess.interpolation=bicubic"], root)
    assert code == 2 and "preprocessing changed (interpolation differ" in report["error"]


def test_images_must_match_the_declared_shape_and_count(run_parity, tmp_path: Path) -> None:
    photos = sample_images(tmp_path / "photos", 3)
    report, code = run_parity([*RGB, "inputs=images", f"inputs.path={photos}", "mode=golden"], tmp_path / "golden")
    assert code == 2 and "input 'image' has shape [3, 3, 224, 224] in the files, declared ['batch', 3, 32, 32]" \
        in report["error"]
    report, code = run_parity([*RGB, *SMALL, f"inputs.path={photos}", "inputs.num_samples=10", "mode=golden"],
                              tmp_path / "golden")
    assert code == 2 and "the files hold 3 sample(s)" in report["error"]
    report, code = run_parity([*RGB, *SMALL, f"inputs.path={tmp_path}/none/*.jpg", "mode=golden"],
                              tmp_path / "golden")
    assert code == 2 and "no images in pattern" in report["error"]


def test_pillow_filters_are_real_and_different(tmp_path: Path) -> None:
    from parity.config import PreprocessConfig
    from parity.preprocess import run

    photos = sample_images(tmp_path / "photos", 2)
    files = sorted(photos.glob("*.png"))
    base = dict(resize=[57, 61], mean=[], std=[], scale=1.0, dtype="float32")
    bilinear = run(files, PreprocessConfig(library="pillow", interpolation="bilinear", **base))
    nearest = run(files, PreprocessConfig(library="pillow", interpolation="nearest", **base))
    assert bilinear.shape == (2, 3, 57, 61) and not np.array_equal(bilinear, nearest)
    # nearest-neighbour picks existing pixel values; a shrinking bilinear (triangle) filter averages them
    from PIL import Image
    with Image.open(files[0]) as original:
        pixels = np.asarray(original.convert("RGB"))
    assert set(np.unique(nearest[0])) <= set(np.unique(pixels).astype(np.float32))
    nhwc = run(files, PreprocessConfig(library="pillow", interpolation="bilinear", layout="NHWC", **base))
    np.testing.assert_array_equal(nhwc.transpose(0, 3, 1, 2), bilinear)


def test_the_imagenet_option_is_torchvisions_pipeline_bit_for_bit(tmp_path: Path) -> None:
    """conf/inputs/images.yaml against what torchvision's Resize(256) + CenterCrop(224) + ToTensor + Normalize
    computes (torchvision does not import beside this torch build: its steps, written out with PIL and torch)."""
    import torch
    from PIL import Image

    from parity.config import PreprocessConfig
    from parity.preprocess import run

    files = sorted(sample_images(tmp_path / "photos", 2).glob("*.png"))
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    mine = run(files, PreprocessConfig(resize_shorter=256, crop=[224, 224], mean=mean, std=std))
    for path, tensor in zip(files, mine):
        with Image.open(path) as image:
            image = image.convert("RGB")
            w, h = image.size
            size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
            image = image.resize(size, Image.Resampling.BILINEAR)
            left, top = int(round((size[0] - 224) / 2.0)), int(round((size[1] - 224) / 2.0))
            image = image.crop((left, top, left + 224, top + 224))
            t = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)
            t = (t - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
        assert t.numpy().tobytes() == tensor.tobytes()


def test_images_of_more_than_8_bits_are_refused_not_clipped(run_parity, tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "photos").mkdir()
    deep = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    Image.fromarray(deep).save(tmp_path / "photos" / "deep.png")  # a 16-bit greyscale PNG (mode I;16)
    report, code = run_parity([*RGB, *SMALL, f"inputs.path={tmp_path / 'photos'}", "mode=golden"],
                              tmp_path / "golden")
    assert code == 2 and "more than 8 bits per channel" in report["error"], report["error"]


def test_images_need_an_input_with_a_batch_axis(run_parity, tmp_path: Path) -> None:
    from tests.test_own_model import dense_relu

    model = dense_relu(tmp_path / "fixed.onnx", batch=2)
    report, code = run_parity(["model=onnx", f"model.path={model}", "inputs=images", "inputs.path=p",
                               "mode=golden"], tmp_path / "golden")
    assert code == 2 and "images fill an input whose first axis is the batch" in report["error"]


@needs_opencv
def test_opencv_inter_linear_differs_from_pillows_triangle_filter(tmp_path: Path) -> None:
    """Seed 000: OpenCV INTER_LINEAR against a triangle (antialiased bilinear) filter on the same images."""
    from parity.config import PreprocessConfig
    from parity.preprocess import run

    files = sorted(sample_images(tmp_path / "photos", 2).glob("*.png"))
    base = dict(resize=[32, 32], mean=[], std=[], scale=1.0)
    opencv = run(files, PreprocessConfig(library="opencv", interpolation="INTER_LINEAR", **base))
    pillow = run(files, PreprocessConfig(library="pillow", interpolation="bilinear", **base))
    area = run(files, PreprocessConfig(library="opencv", interpolation="INTER_AREA", **base))
    assert opencv.shape == pillow.shape == (2, 3, 32, 32)
    assert np.abs(opencv - pillow).max() > 10  # pixel levels: shrinking ~10x, no antialias vs triangle filter
    assert np.abs(area - pillow).mean() < np.abs(opencv - pillow).mean()  # area averaging is the closer one


def test_onnx_test_data_sets_are_joined_in_order(run_parity, tmp_path: Path) -> None:
    first, second = samples(2, seed=3), samples(3, seed=4)
    for number, values in enumerate([first, second]):
        data_set = tmp_path / "model_dir" / f"test_data_set_{number}"
        data_set.mkdir(parents=True)
        (data_set / "input_0.pb").write_bytes(numpy_helper.from_array(values, "x").SerializeToString())
    root = tmp_path / "golden"
    made, code = run_parity([*MLP, "inputs=files", "inputs.source=onnx_test_data", "inputs.path=model_dir",
                             "mode=golden"], root)
    assert code == 0, made.get("error")
    with np.load(root / "mlp" / "files" / "inputs.npz") as stored:
        np.testing.assert_array_equal(stored["x"], np.concatenate([first, second]))
    assert len(manifest(root, "mlp", "files")["inputs_source"]["files"]) == 2


def test_polygraphy_inputs_json_is_read_through_polygraphy(run_parity, tmp_path: Path) -> None:
    from polygraphy.json import save_json

    feeds = [{"x": samples(2, seed=5)}, {"x": samples(2, seed=6)}]  # two iterations, as --save-inputs writes them
    save_json(feeds, str(tmp_path / "inputs.json"))
    root = tmp_path / "golden"
    made, code = run_parity([*MLP, "inputs=files", "inputs.source=polygraphy", "inputs.path=inputs.json",
                             "inputs.batch_sizes=[2,4]", "mode=golden"], root)
    assert code == 0, made.get("error")
    with np.load(root / "mlp" / "files" / "inputs.npz") as stored:
        np.testing.assert_array_equal(stored["x"], np.concatenate([f["x"] for f in feeds]))
    checked, code = run_parity([*MLP, "inputs=files", "inputs.source=polygraphy", "inputs.path=inputs.json",
                                "inputs.batch_sizes=[2,4]"], root)
    assert code == 0 and [c["batch_size"] for c in checked["checks"]] == [2, 2, 4, 4]


def test_the_cli_names_a_bad_input_file_in_one_line(cli, tmp_path: Path) -> None:
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    result = cli("mode=golden", "model=mlp", "inputs=files", "inputs.path=broken.npz",
                 f"golden.root={tmp_path / 'golden'}", cwd=tmp_path)
    assert result.returncode == 2
    assert "broken.npz is not an .npz archive" in result.stdout + result.stderr


# -- mode=compare_preprocess: two pipelines on the same images ----------------------------------------------------

COMPARE = [*RGB, *SMALL, "mode=compare_preprocess"]


def test_two_pipelines_are_compared_in_one_table_with_their_effect_on_the_model(cli, tmp_path: Path) -> None:
    photos = sample_images(tmp_path / "photos", 4)
    result = cli(*COMPARE, f"inputs.path={photos}", "compare_preprocess.against.interpolation=nearest")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "preprocessing a: pillow bilinear, shorter side 36" in out and "preprocessing b: pillow nearest" in out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0].split("|")[1].strip() == "image" and "scores top-1" in table[0] and "Δp pp" in table[0]
    assert [row.split("|")[1].strip() for row in table[1:]] == ["astronaut.png", "chelsea.png", "coffee.png",
                                                                "motorcycle_left.png", "all"]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    comparison = report["preprocess_comparison"]
    assert comparison["a"]["interpolation"] == "bilinear" and comparison["b"]["interpolation"] == "nearest"
    every = comparison["overall"]
    assert every["max_abs"] > 0.1 and 10 < every["pct_differ"] <= 100  # different pipelines: different tensors
    scores = every["outputs"]["scores"]
    assert 0 <= scores["top1_agreement"] <= 1 and scores["prob_diff_max_pp"] > 0 and scores["grade"]
    assert all(row["outputs"]["scores"]["top1_a"] in range(10) for row in comparison["images"])
    assert report["verdict"] == "PASS" and "reported" in comparison["message"]


def test_the_tolerance_decides_the_comparison_where_it_is_set(run_parity, tmp_path: Path) -> None:
    photos = sample_images(tmp_path / "photos", 3)
    report, code = run_parity([*COMPARE, f"inputs.path={photos}", "compare_preprocess.against.interpolation=nearest",
                               "tolerance.max_prob_diff_pp=0.000001"], tmp_path / "golden")
    assert code == 1 and report["verdict"] == "FAIL"
    assert "scores: probability diff" in report["preprocess_comparison"]["message"]
    report, code = run_parity([*COMPARE, f"inputs.path={photos}", "compare_preprocess.against.interpolation=nearest",
                               "tolerance.max_prob_diff_pp=100", "tolerance.min_top1_agreement=0"],
                              tmp_path / "golden")
    assert code == 0 and report["preprocess_comparison"]["message"] == "within tolerance"


@pytest.mark.parametrize("extra, expected", [
    ([], "mode=compare_preprocess needs the other pipeline"),
    (["compare_preprocess.against.interpolation=bilinear"], "changes nothing"),
    (["compare_preprocess.against.library=opencv"], "compare_preprocess.against.interpolation 'bilinear' is not an "
                                                    "OpenCV interpolation"),
])
def test_a_bad_pipeline_b_is_a_configuration_error(run_parity, tmp_path: Path, extra: list[str],
                                                   expected: str) -> None:
    photos = sample_images(tmp_path / "photos", 1)
    report, code = run_parity([*COMPARE, f"inputs.path={photos}", *extra], tmp_path / "golden")
    assert code == 2 and report["error"].startswith("configuration error") and expected in report["error"], \
        report["error"]


def test_compare_preprocess_needs_images(run_parity, tmp_path: Path) -> None:
    report, code = run_parity([*MLP, "mode=compare_preprocess"], tmp_path / "golden")
    assert code == 2 and "it needs inputs=images" in report["error"]


@needs_opencv
def test_seed_000_opencv_inter_linear_against_pillows_filter_through_the_model(run_parity, tmp_path: Path) -> None:
    photos = sample_images(tmp_path / "photos", 4)
    report, code = run_parity([*COMPARE, f"inputs.path={photos}", "compare_preprocess.against.library=opencv",
                               "compare_preprocess.against.interpolation=INTER_LINEAR"], tmp_path / "golden")
    assert code == 0, report.get("error")
    comparison = report["preprocess_comparison"]
    assert comparison["b"]["library"] == "opencv" and comparison["b"]["opencv_version"]
    assert comparison["overall"]["pct_differ"] > 50  # almost every value differs ...
    assert comparison["overall"]["outputs"]["scores"]["prob_diff_max_pp"] > 0  # ... and so do the probabilities
