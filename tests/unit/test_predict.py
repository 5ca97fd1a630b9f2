"""`cnnlab predict`: a trained model (a checkpoint of the pipeline or a registered MLflow model)
and images in, a CSV of predictions with every class's probability out; each bad input named."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cnnlab.data.crops import crop_resize
from cnnlab.errors import CnnlabError, DatasetError
from cnnlab.models import ObjectsCNN
from cnnlab.predict import image_files, load_predictor, predict_files, prepare, read_boxes
from cnnlab.train.checkpoint import save_checkpoint
from cnnlab.usage import ModelUsage
from tests.conftest import REPO

CPU = torch.device("cpu")
CLASSES = ["00", "01", "02"]


def _objects_model(tmp_path, strategy="none", **extra):
    torch.manual_seed(0)
    grabcut = {"iterations": 1, "max_side": 32, "margin": 0.25}
    usage = {"kind": "objects", "classes": CLASSES, "input_size": 16, "strategy": strategy,
             "segment": grabcut if strategy == "segment" else None}  # fmt: skip
    path = tmp_path / f"{strategy}.pt"
    save_checkpoint(path, ObjectsCNN(3, 8, 16), classes=CLASSES, usage=usage, **extra)
    return path


def _images(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.full((40, 50, 3), 30 * i, np.uint8)
        img[10:30, 15:35] = (200, 60 + 40 * i, 20)  # the object, in its box
        Image.fromarray(img).save(folder / f"img{i}.png")
    pd.DataFrame({"split": "test", "path": [f"test/img{i}.png" for i in range(n)], "label": "",
                  "x": 15, "y": 10, "w": 20, "h": 20}).to_csv(folder.parent / "boxes.csv", index=False)  # fmt: skip
    return folder


def test_objects_model_crops_by_box_and_gives_every_class_s_probability(tmp_path):
    folder = _images(tmp_path / "test")
    predictor = load_predictor(str(_objects_model(tmp_path)), CPU)
    boxes = read_boxes(tmp_path / "boxes.csv")
    files = image_files([str(folder)])
    crops = prepare(files, predictor.usage, boxes)
    expected = crop_resize(np.asarray(Image.open(files[1]).convert("RGB")), (15, 10, 20, 20), 16)
    np.testing.assert_array_equal(crops[1], expected)  # the training's own crop
    frame = predict_files(predictor, files, boxes, CPU)
    assert list(frame.columns) == ["path", "label", "probability", "p_00", "p_01", "p_02"]
    assert len(frame) == 3 and frame.label.isin(CLASSES).all()
    np.testing.assert_allclose(frame[["p_00", "p_01", "p_02"]].sum(1), 1, rtol=1e-5)
    assert (frame.probability == frame[["p_00", "p_01", "p_02"]].max(1)).all()


def test_a_segment_model_masks_crops_by_grabcut_and_needs_boxes(tmp_path):
    img = np.random.default_rng(0).integers(60, 120, (48, 48, 3), dtype=np.uint8)  # a textured background
    img[16:32, 16:32] = (230, 40, 40)  # the object; its box has background around it
    (tmp_path / "test").mkdir()
    Image.fromarray(img).save(tmp_path / "test" / "a.png")
    pd.DataFrame({"path": ["test/a.png"], "x": [10], "y": [10], "w": [28], "h": [28]}).to_csv(tmp_path / "b.csv")
    predictor = load_predictor(str(_objects_model(tmp_path, "segment")), CPU)
    with pytest.raises(CnnlabError, match="segment model masks each crop by GrabCut.*give every image.s box"):
        prepare([tmp_path / "test" / "a.png"], predictor.usage, None)
    crop = prepare([tmp_path / "test" / "a.png"], predictor.usage, read_boxes(tmp_path / "b.csv"))[0]
    black = crop.sum(0) == 0
    assert 0.2 < black.mean() < 0.8 and not black[8, 8]  # GrabCut kept the object, blacked out around it


MASKER = {"width": 4, "colour_components": 1, "colour_prior": 0.25, "seed_bins": 8, "seed_margin": 0.75,
          "context": 0.25}  # fmt: skip


def _pipeline_masks(files, box, size=16) -> tuple[np.ndarray, np.ndarray]:
    """(the crops of `box`, the masks the masker stage gives them): the batched path of the
    pipeline (context crops as the crop stage cuts them, cnnlab.train.masker.predict_masks)."""
    from cnnlab.data.crops import context_crop, context_pad
    from cnnlab.train.masker import Masking, predict_masks

    images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    crops = np.stack([crop_resize(image, box, size) for image in images])
    context = [context_crop(image, box, size, context_pad(size, MASKER["context"])) for image in images]
    masks, _ = predict_masks(_masker(), crops, np.stack([c for c, _ in context]), np.stack([v for _, v in context]),
                             Masking.of(MASKER), CPU)  # fmt: skip
    return crops, masks


def _masker():
    """A tiny masker fitted for a few steps to the centre square of 16 px crops (enough to tell
    the object from its background in these tests)."""
    from cnnlab.models.mask_net import MaskNet

    torch.manual_seed(1)
    masker = MaskNet(MASKER["width"])
    x = torch.rand(8, 3, 16, 16) * 0.3
    x[:, 0, 4:12, 4:12] = 0.8  # a red square on dark noise
    target = torch.zeros(8, 16, 16, dtype=torch.long)
    target[:, 4:12, 4:12] = 1
    optimizer = torch.optim.Adam(masker.parameters(), lr=0.02)
    for _ in range(30):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(masker(x), target).backward()
        optimizer.step()
    return masker.eval()


def _learned_model(tmp_path):
    """A segment_learned checkpoint as train_classifier saves it: the masker of its test crops inside."""
    torch.manual_seed(0)
    usage = {"kind": "objects", "classes": CLASSES, "input_size": 16, "strategy": "segment_learned", "segment": None,
             "masker": MASKER}  # fmt: skip
    masker = _masker()
    path = tmp_path / "segment_learned.pt"
    save_checkpoint(path, ObjectsCNN(3, 8, 16), classes=CLASSES, usage=usage,
                    masker={"arch": masker.arch, "model": masker.state_dict()})  # fmt: skip
    return path


def test_a_segment_learned_model_masks_crops_with_its_own_masker_and_needs_boxes(tmp_path):
    folder = _images(tmp_path / "test")
    predictor = load_predictor(str(_learned_model(tmp_path)), CPU)
    files = image_files([str(folder)])
    pd.DataFrame({"path": [f"test/{f.name}" for f in files], "x": 5, "y": 5, "w": 40, "h": 30}).to_csv(
        tmp_path / "wide.csv", index=False)  # boxes with background around the object
    with pytest.raises(CnnlabError, match="segment_learned model masks each crop by the learned masker.*box"):
        prepare(files, predictor.usage, None, predictor.masker)
    crops = prepare(files, predictor.usage, read_boxes(tmp_path / "wide.csv"), predictor.masker)
    unmasked, masks = _pipeline_masks(files, (5, 5, 40, 30))  # what the masker stage gives these crops
    assert 0.05 < masks.mean() < 0.95  # the masker keeps part of each crop ...
    np.testing.assert_array_equal(crops, unmasked * masks[:, None])  # ... and only that part reaches the model


def test_a_study_model_resizes_and_centre_crops(tmp_path):
    from cnnlab.models.zoo import build_model
    from tests.conftest import make_params

    cfg = make_params().models["simple_cnn"]
    model, _ = build_model("simple_cnn", cfg, 3, 24)
    usage = {"kind": "study", "classes": ["a", "b", "c"], "input_size": 24, "model": "simple_cnn",
             "family": "simple_cnn"}  # fmt: skip
    save_checkpoint(tmp_path / "model.pt", model, classes=["a", "b", "c"], usage=usage)
    folder = _images(tmp_path / "imgs", n=2)
    predictor = load_predictor(str(tmp_path / "model.pt"), CPU)
    assert prepare(image_files([str(folder)]), predictor.usage, None).shape == (2, 3, 24, 24)
    frame = predict_files(predictor, image_files([str(folder / "img0.png"), str(folder / "img1.png")]), None, CPU)
    assert frame.path.str.endswith(("img0.png", "img1.png")).all() and frame.label.isin(["a", "b", "c"]).all()


def _register(tmp_path, monkeypatch, strategy):
    """A checkpoint's model logged and registered as the pipeline does; its URI by the alias
    (models:/cnnlab-objects-<strategy>@champion)."""
    from cnnlab import tracking
    from cnnlab.serving import log_model

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    path = _learned_model(tmp_path) if strategy == "segment_learned" else _objects_model(tmp_path, strategy)
    checkpoint = load_predictor(str(path), CPU)
    with tracking.stage_run("train_classifier", {}) as run:
        log_model(run, checkpoint.model, f"{strategy}-seed0", registered=f"cnnlab-objects-{strategy}",
                  usage=checkpoint.usage, tags={"seed": 0, "val_accuracy": 0.5},
                  masker=checkpoint.masker)  # fmt: skip
    return checkpoint, f"models:/cnnlab-objects-{strategy}@champion"


def test_the_registered_masker_masks_new_images_as_the_pipeline_masks_its_crops(tmp_path, monkeypatch):
    import io

    import mlflow.pyfunc

    from cnnlab import tracking
    from cnnlab.serving import log_model

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    with tracking.stage_run("masker", {}) as run:
        log_model(run, _masker(), "masker-seed0", registered="cnnlab-objects-masker",
                  usage={"kind": "masker", "input_size": 16, **MASKER}, tags={"seed": 0})  # fmt: skip
    served = mlflow.pyfunc.load_model("models:/cnnlab-objects-masker/1")
    files = image_files([str(_images(tmp_path / "test"))])
    out = served.predict(pd.DataFrame({"image": [f.read_bytes() for f in files], "x": 5, "y": 5, "w": 40, "h": 30}))
    assert list(out.columns) == ["mask", "kept_fraction"]
    masks = np.stack([np.asarray(Image.open(io.BytesIO(png))) == 255 for png in out["mask"]])
    _, expected = _pipeline_masks(files, (5, 5, 40, 30))
    np.testing.assert_array_equal(masks, expected)
    np.testing.assert_allclose(out["kept_fraction"], expected.mean((1, 2)))
    assert 0.05 < expected.mean() < 0.95
    with pytest.raises(Exception, match="Model is missing input"):  # the masker needs every image's box (x, y, w, h)
        served.predict(pd.DataFrame({"image": [files[0].read_bytes()]}))


@pytest.mark.parametrize("strategy", ["none", "segment", "segment_learned"])
def test_a_registered_model_serves_what_predict_gives_from_image_bytes_and_boxes(tmp_path, monkeypatch, strategy):
    import base64
    import json

    import mlflow.pyfunc
    from mlflow.models import validate_serving_input

    checkpoint, uri = _register(tmp_path, monkeypatch, strategy)
    registered = load_predictor(uri, CPU)
    assert registered.usage == checkpoint.usage
    folder = _images(tmp_path / "test")
    files, boxes = image_files([str(folder)]), read_boxes(tmp_path / "boxes.csv")
    predicted = predict_files(registered, files, boxes, CPU)  # `cnnlab predict models:/...`
    columns = ["p_00", "p_01", "p_02"]
    np.testing.assert_allclose(predicted[columns], predict_files(checkpoint, files, boxes, CPU)[columns],
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    # the MLflow model: image file bytes and the box in; label, probability, p_<class> out, the same numbers
    table = pd.DataFrame({"image": [f.read_bytes() for f in files], "x": 15, "y": 10, "w": 20, "h": 20})
    served = mlflow.pyfunc.load_model(uri).predict(table)
    assert list(served.columns) == ["label", "probability", *columns]
    pd.testing.assert_frame_equal(served, predicted.drop(columns="path"))
    # ... and over REST, as `mlflow models serve` takes it (the JSON of docs/manual.md's curl)
    request = {"dataframe_split": {"columns": ["image", "x", "y", "w", "h"],
                                   "data": [[base64.b64encode(f.read_bytes()).decode(), 15, 10, 20, 20]
                                            for f in files]}}  # fmt: skip
    over_rest = pd.DataFrame(validate_serving_input(uri, json.dumps(request)))
    pd.testing.assert_frame_equal(over_rest, served)


def test_the_served_model_names_a_bad_row(tmp_path, monkeypatch):
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(_register(tmp_path, monkeypatch, "segment")[1])
    png = (_images(tmp_path / "test") / "img0.png").read_bytes()
    with pytest.raises(Exception, match="segment model masks each crop by GrabCut.*columns x, y, w, h"):
        model.predict(pd.DataFrame({"image": [png]}))
    with pytest.raises(Exception, match="row 1: box 40,0,20,20 lies outside the 50x40 image"):
        model.predict(pd.DataFrame({"image": [png, png], "x": [0, 40], "y": 0, "w": 20, "h": 20}))
    with pytest.raises(Exception, match="row 0: unreadable or truncated image"):
        model.predict(pd.DataFrame({"image": [b"not an image"], "x": 0, "y": 0, "w": 20, "h": 20}))


def test_a_registered_model_outside_the_repository_says_where_to_run(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CnnlabError, match="no MLflow store here .*mlflow.db does not exist.*MLFLOW_TRACKING_URI"):
        load_predictor("models:/cnnlab-objects-none/1", CPU)
    assert list(tmp_path.iterdir()) == []  # no empty store made on the way


def test_bad_inputs_are_named(tmp_path):
    folder = _images(tmp_path / "test")
    with pytest.raises(CnnlabError, match="nothing.pt: no such model file"):
        load_predictor(str(tmp_path / "nothing.pt"), CPU)
    with pytest.raises(CnnlabError, match="oracle model masks test crops with ground-truth masks"):
        load_predictor(str(_objects_model(tmp_path, "oracle")), CPU)
    # never unmasked: a segment_learned model was trained and scored on the masker's masked crops
    learned = _objects_model(tmp_path, "segment_learned")  # saved without its masker
    with pytest.raises(CnnlabError, match="masks test crops with the masker it was trained with, and this one does "
                                          "not carry it.*dvc repro"):  # fmt: skip
        load_predictor(str(learned), CPU)
    boxes = read_boxes(tmp_path / "boxes.csv")
    with pytest.raises(CnnlabError, match="does not carry it"):  # the served model's path
        prepare([folder / "img0.png"], ModelUsage.from_dict(torch.load(learned, weights_only=True)["usage"]), boxes)
    save_checkpoint(tmp_path / "old.pt", ObjectsCNN(3, 8, 16), classes=CLASSES)
    with pytest.raises(CnnlabError, match="old.pt: this model does not say how to prepare images"):
        load_predictor(str(tmp_path / "old.pt"), CPU)
    with pytest.raises(DatasetError, match="nowhere: no such image file or folder"):
        image_files([str(tmp_path / "nowhere")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty: no images"):
        image_files([str(tmp_path / "empty")])
    (folder / "broken.png").write_bytes(b"not a png")
    usage = load_predictor(str(_objects_model(tmp_path)), CPU).usage
    with pytest.raises(DatasetError, match="broken.png: unreadable or truncated image"):
        prepare([folder / "broken.png"], usage, None)
    pd.DataFrame({"path": ["test/img0.png"], "x": [40], "y": [0], "w": [20], "h": [20]}).to_csv(tmp_path / "b.csv")
    with pytest.raises(DatasetError, match=r"img0.png \(.*b.csv line 2\): box 40,0,20,20 lies outside the 50x40 image"):
        prepare([folder / "img0.png"], usage, read_boxes(tmp_path / "b.csv"))
    pd.DataFrame({"path": ["a.png", "test/img0.png"], "x": [0, -3], "y": 0, "w": 20, "h": 20}).to_csv(
        tmp_path / "negative.csv", index=False)
    with pytest.raises(DatasetError, match=r"negative.csv line 3 \(test/img0.png\): box -3,0,20,20 must have"):
        read_boxes(tmp_path / "negative.csv")
    with pytest.raises(DatasetError, match="img1.png: no row in the boxes CSV"):
        prepare([folder / "img1.png"], usage, read_boxes(tmp_path / "b.csv"))
    pd.DataFrame({"path": ["x"], "x": [1]}).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(DatasetError, match="c.csv: missing column.*y, w, h"):
        read_boxes(tmp_path / "c.csv")
    pd.DataFrame({"path": ["x"], "x": ["a"], "y": [0], "w": [1], "h": [1]}).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DatasetError, match="d.csv line 2: x, y, w, h must be whole numbers"):
        read_boxes(tmp_path / "d.csv")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_the_command_writes_the_csv_and_fails_with_one_line(tmp_path):
    folder = _images(tmp_path / "test")
    model = _objects_model(tmp_path)
    out = tmp_path / "predictions.csv"
    cmd = [sys.executable, "-m", "cnnlab.cli", "predict", str(model), str(folder),
           "--boxes", str(tmp_path / "boxes.csv"), "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={"TQDM_DISABLE": "1", "PATH": ""})
    assert done.returncode == 0, done.stderr
    assert "3 predictions of" in done.stdout and len(pd.read_csv(out)) == 3
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # as any new file, not private (0600)
    bad = subprocess.run(cmd[:4] + [str(tmp_path / "missing.pt"), str(folder)], cwd=REPO, capture_output=True,
                         text=True)  # fmt: skip
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    elsewhere = subprocess.run(cmd[:-1] + [str(tmp_path / "typo" / "p.csv")], cwd=REPO, capture_output=True, text=True)
    assert elsewhere.returncode == 1 and "no such folder" in elsewhere.stderr and not (tmp_path / "typo").exists()


def test_boxes_csv_is_read_like_the_objects_format_s(tmp_path):
    # the objects reader's CSV rules: a spreadsheet's byte-order mark, spaces, Windows paths
    (tmp_path / "b.csv").write_text("\ufeffpath, x, y, w, h\nsub\\a.png, 1, 2, 3, 4\n", encoding="utf-8")
    assert read_boxes(tmp_path / "b.csv") == {"sub/a.png": (1, 2, 3, 4)}
    with pytest.raises(CnnlabError, match="no such boxes CSV"):
        read_boxes(tmp_path / "missing.csv")


def test_a_usage_record_round_trips_and_reads_what_older_models_stored():
    usage = ModelUsage("objects", classes=CLASSES, input_size=16, strategy="segment", segment={"iterations": 1})
    assert usage.as_dict() == {"kind": "objects", "classes": CLASSES, "input_size": 16, "strategy": "segment",
                               "segment": {"iterations": 1}}  # fmt: skip
    assert ModelUsage.from_dict(usage.as_dict()) == usage
    old = {"kind": "objects", "classes": CLASSES, "input_size": 16, "strategy": "none", "segment": None, "masker": None}
    assert ModelUsage.from_dict(old) == ModelUsage("objects", classes=CLASSES, input_size=16, strategy="none")
    flat = {"kind": "masker", "input_size": 16, **MASKER}  # a masker logged before the record: settings at the top
    assert ModelUsage.from_dict(flat).masker == MASKER
    with pytest.raises(CnnlabError, match="m.pt: its usage record holds unknown keys colour"):
        ModelUsage.from_dict({**old, "colour": 1}, "m.pt")
    with pytest.raises(CnnlabError, match="m.pt: its usage record needs kind .* it holds dataset, source"):
        ModelUsage.from_dict({"dataset": "shapes", "source": "x"}, "m.pt")
    with pytest.raises(CnnlabError, match="a study model's usage record needs its classes"):
        ModelUsage.from_dict({"kind": "study", "input_size": 8})
