"""INT8 calibration from a folder of real JPEG/PNG files (devices/calib_images.py), through the
one ``--calib`` decoder that ``build``, ``exec`` and the Python API share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tandem
from devices.calib_images import ImageFolder, Preprocess, image_batches, parse_preprocess
from devices.calibration import Calibration, NpzFolder, calibrate, source_from_path
from devices.plan import read_plan
from partitioner.errors import ConfigError, InputError
from tandem.cli import main
from tests.dla_sim.graphs import Builder
from tests.models import zoo_model_path

Image = pytest.importorskip("PIL.Image")

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
IMAGENET = "resize=40,crop=32,mean=0.485,0.456,0.406,std=0.229,0.224,0.225"


def _graph(shape: tuple[int, ...] = (1, 3, 32, 32)):  # type: ignore[no-untyped-def]
    b = Builder("img")
    x = b.input("x", shape)
    return b.output(b.op("Relu", [x], shape))


def _pixels(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _folder(tmp_path: Path, count: int = 2, size: tuple[int, int] = (32, 32)) -> Path:
    """PNGs (lossless, so the expected tensors are exact) of ``size`` = (H, W)."""
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    for i in range(count):
        Image.fromarray(_pixels(*size, seed=i)).save(folder / f"{i:02d}.png")
    return folder


def test_png_pixels_become_the_normalised_input(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    spec = parse_preprocess("mean=0.485,0.456,0.406,std=0.229,0.224,0.225,order=rgb,layout=nchw")
    assert spec.mean == MEAN and spec.std == STD and spec.range == 1.0
    source = source_from_path(folder, preprocess=spec)
    assert source == ImageFolder(folder, spec)
    batches = list(image_batches(_graph(), source))
    assert len(batches) == 2
    expected = (_pixels(32, 32, 0) / 255.0 - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(batches[0]["x"][0], expected.transpose(2, 0, 1), atol=1e-5)
    assert batches[0]["x"].dtype == np.float32 and batches[0]["x"].shape == (1, 3, 32, 32)


def test_bgr_nhwc_and_0_255_range(tmp_path: Path) -> None:
    folder = _folder(tmp_path, count=4)
    spec = parse_preprocess("order=bgr,layout=nhwc,range=255,mean=104,117,123")
    # a batch of 2 takes the images two at a time, in file-name order
    batches = list(image_batches(_graph((2, 32, 32, 3)), ImageFolder(folder, spec)))
    assert [b["x"].shape for b in batches] == [(2, 32, 32, 3)] * 2
    expected = _pixels(32, 32, 3)[..., ::-1] - np.array([104.0, 117.0, 123.0])
    np.testing.assert_allclose(batches[1]["x"][1], expected, atol=1e-4)


def test_resize_shorter_side_then_centre_crop(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    # 48 x 64 (H x W): resize=40 -> 40 x 53 (the left half is columns 0..26), crop=32 takes
    # rows 4..36 and columns 10..42, so the crop's columns 0..16 are bright
    left = np.zeros((48, 64, 3), np.uint8)
    left[:, :32] = 200
    Image.fromarray(left).save(folder / "a.png")
    (batch,) = image_batches(_graph(), ImageFolder(folder, parse_preprocess("resize=40,crop=32")))
    x = batch["x"][0, 0]
    assert x.shape == (32, 32)
    np.testing.assert_allclose(x[:, :16], 200 / 255, atol=1e-6)
    np.testing.assert_allclose(x[:, 17:], 0.0, atol=1e-6)
    # without resize/crop every image is resized to the input's H x W
    (plain,) = image_batches(_graph((1, 3, 12, 16)), ImageFolder(folder, Preprocess()))
    assert plain["x"].shape == (1, 3, 12, 16)


def test_jpeg_decodes_within_its_compression_error(tmp_path: Path) -> None:
    folder = tmp_path / "jpegs"
    folder.mkdir()
    Image.new("RGB", (32, 32), (10, 128, 250)).save(folder / "flat.jpg", quality=95)
    (batch,) = image_batches(_graph(), source_from_path(folder))  # type: ignore[arg-type]
    got = batch["x"][0].reshape(3, -1).mean(axis=1) * 255
    np.testing.assert_allclose(got, [10, 128, 250], atol=2.0)


def test_a_yaml_spec_is_read_by_the_project_reader_with_lines(tmp_path: Path) -> None:
    good = tmp_path / "pre.yaml"
    good.write_text(
        "resize: 40\ncrop: 32\nmean: [0.485, 0.456, 0.406]\n"
        "std: [0.229, 0.224, 0.225]\norder: rgb\nlayout: nchw\n",
        encoding="utf-8",
    )
    assert parse_preprocess(good) == parse_preprocess(IMAGENET)
    bad = tmp_path / "bad.yaml"
    bad.write_text("resize: 40\nstd: [0.2, 0, 0.2]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^\S*bad\.yaml:2: std: expected non-zero numbers"):
        parse_preprocess(bad)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("resize=256,colour=rgb", r"^--calib-preprocess: colour: unknown key; expected one of"),
        ("resize=abc", r"^--calib-preprocess: resize: expected a positive size N or HxW"),
        ("order=rbg", r"^--calib-preprocess: order: expected rgb or bgr, got 'rbg'$"),
        ("layout=chw", r"^--calib-preprocess: layout: expected nchw or nhwc"),
        ("range=100", r"^--calib-preprocess: range: expected 1 or 255"),
        ("mean=0.5,x", r"^--calib-preprocess: mean: expected a number or a list of numbers"),
        ("resize 256", r"^--calib-preprocess: cannot read 'resize 256'; expected key=value"),
    ],
)
def test_bad_specs_are_one_line_naming_the_field(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_preprocess(spec)


def test_bad_images_and_folders_are_one_line_naming_the_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "03.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(InputError, match=r"^\S*03\.jpg: not a readable JPEG/PNG image \("):
        list(image_batches(_graph(), ImageFolder(folder)))
    (folder / "03.jpg").unlink()
    with pytest.raises(InputError, match=r"2 values for an input with 3 channels"):
        list(image_batches(_graph(), ImageFolder(folder, parse_preprocess("mean=0.5,0.5"))))
    with pytest.raises(
        InputError,
        match=r"^\S*00\.png: preprocessed to 16x16; the model input "
        r"takes 32x32",
    ):
        list(image_batches(_graph(), ImageFolder(folder, parse_preprocess("resize=16"))))
    with pytest.raises(InputError, match=r"2 image\(s\) for a batch of 4"):
        list(image_batches(_graph((4, 3, 32, 32)), ImageFolder(folder)))
    with pytest.raises(InputError, match=r"crop 64x64 is larger than the resized 32x32"):
        list(image_batches(_graph(), ImageFolder(folder, parse_preprocess("crop=64"))))
    np.savez(folder / "feed.npz", x=np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(InputError, match=r"holds both \.npz files and images"):
        source_from_path(folder)
    with pytest.raises(InputError, match=r"a single \.png file"):
        source_from_path(folder / "00.png")
    npz_only = tmp_path / "npz"
    npz_only.mkdir()
    assert source_from_path(npz_only) == NpzFolder(npz_only)
    with pytest.raises(InputError, match="--calib-preprocess applies to a folder of images"):
        source_from_path(npz_only, preprocess=Preprocess())


def test_images_calibrate_like_the_same_feeds_from_npz(tmp_path: Path) -> None:
    folder = _folder(tmp_path, count=3)
    spec = parse_preprocess("mean=0.5,std=0.25")
    g = _graph()
    from_images = calibrate(g, Calibration(source_from_path(folder, preprocess=spec)))
    npz = tmp_path / "npz"
    npz.mkdir()
    for i, batch in enumerate(image_batches(g, ImageFolder(folder, spec))):
        np.savez(npz / f"{i}.npz", **batch)
    assert from_images == calibrate(g, Calibration(source_from_path(npz)))
    assert set(from_images) == {"x", g.outputs[0].name}


def test_build_and_exec_take_the_same_image_folder(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    model = zoo_model_path("resnet18", resolution=32)
    folder = _folder(tmp_path, count=2, size=(48, 40))
    plan = tmp_path / "r.plan"
    code = main(
        [
            "build",
            str(model),
            "--target",
            "orin-agx-64gb",
            "--int8",
            "--calib",
            str(folder),
            "--calib-preprocess",
            IMAGENET,
            "-o",
            str(plan),
        ]
    )
    assert code == 0, capsys.readouterr().err
    scales = read_plan(plan).header["calibration"]
    code = main(
        [
            "exec",
            f"--onnx={model}",
            "--int8",
            f"--calib={folder}",
            f"--calibPreprocess={IMAGENET}",
            "--target=orin-agx-64gb",
            f"--saveEngine={tmp_path / 'e.plan'}",
            "--iterations=1",
            "--duration=0",
            "--warmUp=0",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "INT8 without --calib" not in out.out
    assert read_plan(tmp_path / "e.plan").header["calibration"] == scales
    # the Python API: the same decoder's source as the config's calibrator
    builder = tandem.Builder()
    network = builder.create_network()
    assert tandem.OnnxParser(network).parse_from_file(str(model))
    config = builder.create_builder_config()
    config.target = "orin-agx-64gb"
    config.set_flag(tandem.BuilderFlag.INT8)
    config.int8_calibrator = source_from_path(folder, preprocess=parse_preprocess(IMAGENET))
    engine = tandem.Runtime().deserialize_cuda_engine(
        builder.build_serialized_network(network, config)
    )
    assert engine.plan.header["calibration"] == scales
    code = main(
        [
            "build",
            str(model),
            "--target",
            "orin-agx-64gb",
            "--int8",
            "--calib",
            str(folder),
            "--calib-preprocess",
            "crop=64",
            "-o",
            str(tmp_path / "x.plan"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "crop 64x64 is larger than the resized" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x.plan").exists()
