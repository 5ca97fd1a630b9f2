"""The study runner and the loop features it uses: single-batch overfitting, resuming from a
checkpoint, retraining on train+val, the reports."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cnnlab.data.arrays import ImageSet, Split
from cnnlab.metrics import classification_metrics
from cnnlab.models.zoo import build_model
from cnnlab.tensors import TensorData
from cnnlab.train.cell import run_study
from cnnlab.train.loop import fit
from tests.conftest import make_params

CPU = torch.device("cpu")
P = make_params()
NO_AUG = make_params({"augment": {"hflip": {"p": 0}, "rotate_shift": {"p": 0}}}).augment


def model(name: str, **settings):
    return P.models[name].model_copy(update=settings)


def tiny_prepared(n_train=40, n_val=20, n_test=10, size=16, classes=4) -> ImageSet:
    """Classes told apart by which colour channel is bright."""
    g = np.random.default_rng(0)

    def split(n, labelled=True):
        labels = np.arange(n) % classes
        images = g.integers(0, 60, (n, 3, size, size), dtype=np.uint8)
        for i, c in enumerate(labels):
            images[i, c % 3] += np.uint8(120 + 60 * (c // 3))
        names = [f"c{c}" if labelled else "" for c in labels]
        return Split(images, pd.DataFrame({"id": [f"img{i}" for i in range(n)], "label": names}))

    return ImageSet("cifar10", "test data", [f"c{i}" for i in range(classes)],
                    {"train": split(n_train), "val": split(n_val), "test": split(n_test)})  # fmt: skip


def tensors(data: ImageSet, split: str) -> TensorData:
    return TensorData.from_numpy(data.splits[split].images, data.splits[split].labels(data.classes))


def test_single_batch_mode_drives_the_training_loss_to_about_zero():
    data = tiny_prepared(n_train=64)
    cfg = model("simple_cnn", batch_size=8, epochs=60, dropout=0.0, lr=3e-3, single_batch=True, schedule="constant",
                label_smoothing=0.0)  # smoothing would keep the loss above its targets' entropy
    result = run_study(data, "simple_cnn", cfg, P.augment, seed=0, device=CPU)
    history = result.fit.history
    assert result.metrics["sizes"]["train"] == 64 and result.metrics["single_batch"] is True
    assert history[-1]["train_loss"] < 0.02 < history[0]["train_loss"]
    assert len(result.predictions["train"]) == len(result.labels["train"]) == 8  # trained (and scored) on one batch


def test_resume_after_interruption_ends_like_an_uninterrupted_fit(tmp_path):
    data = tiny_prepared()
    train, val = tensors(data, "train"), tensors(data, "val")
    cfg = model("simple_cnn", batch_size=8, epochs=4, dropout=0.3, schedule="constant")

    def run(epochs, checkpoint=None):
        torch.manual_seed(0)
        net, _ = build_model("simple_cnn", cfg, 4, 16)
        result = fit(net, train, val, cfg.model_copy(update={"epochs": epochs}), seed=0, device=CPU,
                     checkpoint=checkpoint, fingerprint="same")  # fmt: skip
        return net, result

    whole, whole_result = run(4)
    ckpt = tmp_path / "ckpt.pt"
    run(2, ckpt)  # "interrupted" after epoch 2: its checkpoint is what a killed run leaves behind
    torch.manual_seed(123)  # the restarted process's RNG state differs; resuming restores it
    resumed, resumed_result = run(4, ckpt)
    assert resumed_result.history == whole_result.history
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_a_one_cycle_fit_resumed_after_a_crash_ends_like_an_uninterrupted_one(tmp_path):
    """The schedule's position is part of the checkpoint: without it the resumed fit would
    restart the warm-up and end with other weights."""
    data = tiny_prepared()
    train, val = tensors(data, "train"), tensors(data, "val")
    cfg = model("resnet", batch_size=8, epochs=4, width=4, schedule="onecycle", lr=0.05)

    def run(checkpoint=None, crash_at=None):
        def on_epoch(row):
            if row["epoch"] == crash_at:  # before that epoch's checkpoint is written
                raise KeyboardInterrupt

        torch.manual_seed(0)
        net, _ = build_model("resnet", cfg, 4, 16)
        result = fit(net, train, val, cfg, seed=0, device=CPU, checkpoint=checkpoint, fingerprint="same",
                     on_epoch=on_epoch)  # fmt: skip
        return net, result

    whole, whole_result = run()
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        run(ckpt, crash_at=3)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    torch.manual_seed(123)
    resumed, resumed_result = run(ckpt)
    assert resumed_result.history == whole_result.history
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    data = tiny_prepared()
    train = tensors(data, "train")
    cfg = model("resnet", batch_size=8, epochs=1, width=4)
    net, _ = build_model("resnet", cfg, 4, 16)
    fit(net, train, None, cfg, seed=0, device=CPU, checkpoint=tmp_path / "c.pt", fingerprint="old")
    result = fit(net, train, None, cfg.model_copy(update={"epochs": 2}), seed=0, device=CPU,
                 checkpoint=tmp_path / "c.pt", fingerprint="new")  # fmt: skip
    assert [r["epoch"] for r in result.history] == [1, 2]


def test_study_reports_and_retraining_on_train_and_val():
    data = tiny_prepared()
    cfg = model("resnet", batch_size=8, epochs=3, width=4, retrain_epochs=2)
    result = run_study(data, "resnet", cfg, NO_AUG, seed=0, device=CPU)
    m = result.metrics
    assert m["data_source"] == "test data" and m["weights"] == "random"
    assert m["test_predictions_from"] == "model retrained on train+val for 2 epochs"
    assert [r["epoch"] for r in result.retrain.history] == [1, 2] and "val_loss" not in result.retrain.history[0]
    assert set(m["val"]) == {"loss", "accuracy", "macro_precision", "macro_recall", "macro_f1"}
    assert 0 <= m["test"]["accuracy"] <= 1
    assert len(result.predictions["test"]) == 10 and result.probabilities["test"].shape == (10, 4)
    assert [r["class"] for r in result.report] == ["c0", "c1", "c2", "c3", "macro avg"]
    assert np.isclose(result.report[-1]["f1"], m["val"]["macro_f1"])


def test_a_transfer_cell_resumes_only_from_a_checkpoint_of_the_same_pretrained_backbone(tmp_path, monkeypatch):
    from cnnlab.errors import WeightsError
    from cnnlab.models import zoo
    from cnnlab.train import cell as study
    from cnnlab.train.checkpoint import save_checkpoint

    def offline(family):
        raise WeightsError("no ImageNet weights")

    monkeypatch.setattr(zoo, "imagenet_state_dict", offline)
    fingerprints = []
    monkeypatch.setattr(study, "fit", lambda *a, **k: fingerprints.append(k["fingerprint"]) or study.FitResult([], 1))
    cfg = model("mobilenet_v3", epochs=1)
    for seed in (0, 0, 1):  # the same backbone twice, then another
        torch.manual_seed(seed)
        scratch, _ = build_model("mobilenet_v3_pretrain", P.models["mobilenet_v3_pretrain"], 4, 32)
        usage = {"kind": "study", "role": "pretrain", "classes": list("abcd"), "input_size": 32, "dataset": "shapes",
                 "source": "test"}  # fmt: skip
        save_checkpoint(tmp_path / "model.pt", scratch, usage=usage)
        result = run_study(tiny_prepared(size=32), "mobilenet_v3", cfg, NO_AUG, seed=0, device=CPU,
                           checkpoint=tmp_path / "cell.pt", pretrained=tmp_path / "model.pt")  # fmt: skip
        assert result.init == "pretrained on shapes (test) (ImageNet weights unavailable; fallback: pretrained)"
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]


def test_a_last_batch_that_batchnorm_cannot_train_on_names_the_key_to_change():
    from cnnlab.errors import ParamsError

    cfg = model("mobilenet_v3_scratch", batch_size=8, epochs=1)  # 32 px: MobileNetV3's last layers are 1 x 1
    with pytest.raises(ParamsError, match=r"models.mobilenet_v3_scratch: the last training batch holds 1 image "
                                          r"\(9 images, batch_size 8\).*set models.mobilenet_v3_scratch.batch_size"):
        run_study(tiny_prepared(n_train=9, size=32), "mobilenet_v3_scratch", cfg, NO_AUG, seed=0, device=CPU)
    run_study(tiny_prepared(n_train=10, size=32), "mobilenet_v3_scratch", cfg, NO_AUG, seed=0, device=CPU)


def test_unlabelled_test_set_gets_predictions_but_no_test_metrics():
    data = tiny_prepared()
    data.splits["test"].index["label"] = ""
    cfg = model("simple_cnn", batch_size=8, epochs=1)
    result = run_study(data, "simple_cnn", cfg, NO_AUG, seed=0, device=CPU)
    assert "test" not in result.metrics and len(result.predictions["test"]) == 10


def test_classification_metrics_by_hand():
    # class 0: 2 right, class 1: 1 right + 1 called 0, class 2: never present, predicted once
    y_true = [0, 0, 1, 1, 0]
    y_pred = [0, 0, 1, 0, 2]
    summary, rows = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert summary["accuracy"] == pytest.approx(3 / 5)
    a, b, c, macro = rows
    assert (a["precision"], a["recall"], a["support"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 3)
    assert (b["precision"], b["recall"], b["f1"]) == (1.0, 0.5, pytest.approx(2 / 3))
    assert (c["precision"], c["recall"], c["support"]) == (0.0, 0.0, 0)
    assert macro["f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3) == summary["macro_f1"]
