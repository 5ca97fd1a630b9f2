import subprocess
import sys

import pytest
import torch

from cnnlab.data.split import stratified_split
from cnnlab.models import ObjectsCNN
from cnnlab.models.resnet import ResNet
from cnnlab.tensors import TensorData, memory_format, predict
from cnnlab.train.checkpoint import load_model, save_checkpoint
from cnnlab.train.loop import fit, make_optimizer, make_scheduler
from tests.conftest import training

CPU = torch.device("cpu")


def _two_colours(n=32, size=12):
    """Class 0: dark images, class 1: bright ones."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    base = torch.where(labels[:, None, None, None] == 1, 180, 40)
    images = (base + torch.randint(0, 40, (n, 3, size, size), generator=g)).to(torch.uint8)
    return TensorData(images, labels)


def test_fit_learns_an_easy_task_and_reports_every_epoch():
    data = _two_colours()
    torch.manual_seed(0)
    model = ObjectsCNN(2, 8, 12)
    seen = []
    cfg = training(lr=0.05, batch_size=8, epochs=4)
    result = fit(model, data, data, cfg, seed=0, device=CPU, on_epoch=seen.append)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4] and seen == result.history
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.history[-1]["val_acc"] == 1.0
    assert set(result.history[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc"}


def test_same_seed_same_weights():
    data = _two_colours()
    cfg = training(lr=0.05, batch_size=8, epochs=2)
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = ObjectsCNN(2, 8, 12)
        fit(model, data, data, cfg, seed=3, device=CPU)
        outs.append(predict(model, data.images, CPU))
    torch.testing.assert_close(outs[0], outs[1])


def test_early_stopping_restores_the_best_weights():
    data = _two_colours()
    torch.manual_seed(0)
    model = ObjectsCNN(2, 8, 12)
    # a far too high learning rate makes val loss go up after the first epochs
    cfg = training(lr=5.0, batch_size=4, epochs=30, patience=2)
    result = fit(model, data, data, cfg, seed=0, device=CPU)  # seeded: stops early, does not diverge
    assert result.stopped_early and len(result.history) < 30
    best = result.history[result.best_epoch - 1]["val_loss"]
    assert best == min(r["val_loss"] for r in result.history)
    loss = torch.nn.functional.cross_entropy(predict(model, data.images, CPU), data.labels).item()
    assert loss == pytest.approx(best, rel=1e-4)


def test_one_cycle_warms_up_to_lr_then_anneals_and_leaves_the_momentum_alone():
    model = ObjectsCNN(2, 8, 12)
    cfg = training(lr=0.2, momentum=0.9, epochs=3, schedule="onecycle")
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch=10)
    lrs, momenta = [], []
    for _ in range(30):  # every step of the fit
        lrs.append(optimizer.param_groups[0]["lr"])
        momenta.append(optimizer.param_groups[0]["momentum"])
        optimizer.step()
        scheduler.step()
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(0.2) and 5 <= peak <= 12  # ~30% of 30 steps
    assert lrs[0] < 0.2 / 10 and lrs[-1] < 0.2 / 1000
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1 : peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :]))
    assert set(momenta) == {0.9}
    assert make_scheduler(optimizer, training(schedule="constant"), 10) is None


def test_label_smoothing_is_in_the_training_loss_only():
    """An easy task learnt perfectly: with smoothing 0.4 the training loss cannot fall below the
    entropy of the smoothed targets (0.8 / 0.2: 0.50), the validation loss (plain cross-entropy)
    can and does; without smoothing the training loss goes to about zero."""
    last = {}
    for smoothing in (0.4, 0.0):
        data = _two_colours()
        torch.manual_seed(0)
        model = ObjectsCNN(2, 8, 12)
        cfg = training(lr=0.05, epochs=12, label_smoothing=smoothing)
        last[smoothing] = fit(model, data, data, cfg, seed=0, device=CPU).history[-1]
    assert last[0.4]["val_acc"] == last[0.0]["val_acc"] == 1.0
    assert last[0.4]["train_loss"] > 0.50 > 0.35 > last[0.4]["val_loss"]
    assert last[0.0]["train_loss"] < 0.1


def test_nan_loss_says_to_lower_the_learning_rate():
    data = _two_colours()
    model = ObjectsCNN(2, 8, 12)
    with torch.no_grad():
        model.classifier[-1].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit(model, data, data, training(lr=0.1, batch_size=8, epochs=1), seed=0, device=CPU)


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    model = ObjectsCNN(3, 8, 16).eval()
    save_checkpoint(tmp_path / "m.pt", model, classes=["a", "b", "c"])
    loaded, state = load_model(tmp_path / "m.pt")
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(loaded(x), model(x))
    assert state["classes"] == ["a", "b", "c"]
    with pytest.raises(FileNotFoundError, match="dvc repro"):
        load_model(tmp_path / "missing.pt")


def test_per_epoch_checkpoint_is_written(tmp_path):
    data = _two_colours()
    model = ObjectsCNN(2, 8, 12)
    fit(
        model,
        data,
        data,
        training(lr=0.05, batch_size=8, epochs=2),
        seed=0,
        device=CPU,
        checkpoint=tmp_path / "c.pt",
    )
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    assert state["epoch"] == 2 and len(state["history"]) == 2 and "optimizer" in state


def test_stratified_split():
    labels = [0] * 10 + [1] * 10
    train, val = stratified_split(labels, 0.2, seed=0)
    assert len(val) == 4 and sorted([labels[i] for i in val]) == [0, 0, 1, 1]
    assert set(train) | set(val) == set(range(20)) and not set(train) & set(val)
    assert (stratified_split(labels, 0.2, seed=0)[1] == val).all()


def test_split_with_too_few_images_says_so():
    with pytest.raises(ValueError, match="class 'b' has 1 of 5 images"):
        stratified_split(["a", "a", "a", "a", "b"], 0.2, seed=0)
    with pytest.raises(ValueError, match="class '07' has 1 of 5 images"):  # label indices: named by their folder
        stratified_split([0, 0, 0, 0, 1], 0.2, seed=0, classes=["00", "07"])


def test_predict_on_no_images_gives_an_empty_batch():
    model = ObjectsCNN(3, 8, 16)
    assert predict(model, torch.zeros(0, 3, 16, 16, dtype=torch.uint8), CPU).shape == (0, 3)


def test_summary_reports_the_weights_the_model_ends_with():
    from cnnlab.train.loop import FitResult

    history = [dict(epoch=e, train_loss=1.0, train_acc=0.5, val_loss=v, val_acc=a)
               for e, v, a in ((1, 0.9, 0.6), (2, 0.4, 0.8), (3, 0.7, 0.7))]  # fmt: skip
    s = FitResult(history, best_epoch=2, stopped_early=True).summary()
    assert s == {"val_accuracy": 0.8, "val_loss": 0.4, "best_epoch": 2, "epochs_run": 3, "stopped_early": True}


# oneDNN#6035: the weight gradient of a strided 1x1 convolution with few input channels corrupts
# the heap for channels-last input on CPU. The loop must pick the contiguous format for such a model.
STRIDED_1X1_BACKWARD = """
import sys, torch
from torch import nn
from cnnlab.tensors import memory_format, to_float
conv = nn.Conv2d(4, 8, 1, stride=2, bias=False)
fmt = memory_format(conv) if sys.argv[1] == "chosen" else torch.channels_last
g = torch.Generator().manual_seed(0)
for _ in range(1000):
    for batch in (8, 3):  # as a loop does: full batches, then the remainder
        x = to_float(torch.randint(0, 256, (batch, 4, 16, 16), dtype=torch.uint8, generator=g), fmt)
        conv(x).sum().backward()
print("survived")
"""


def test_memory_format_avoids_the_onednn_strided_1x1_bug():
    assert memory_format(ResNet(10, width=4)) == torch.contiguous_format  # 1x1 stride-2 convs from 4 channels
    assert memory_format(ResNet(10, width=16)) == torch.channels_last
    assert memory_format(ResNet(10, width=4), "cuda") == torch.channels_last
    assert memory_format(ObjectsCNN(2, 8, 12)) == torch.channels_last


def test_the_chosen_format_survives_the_strided_1x1_backward():
    out = subprocess.run([sys.executable, "-c", STRIDED_1X1_BACKWARD, "chosen"], capture_output=True, text=True)
    assert out.returncode == 0 and "survived" in out.stdout, out.stderr[-2000:]


@pytest.fixture
def deterministic():
    from cnnlab.stage import set_deterministic

    set_deterministic(True)
    yield
    set_deterministic(False)


def test_deterministic_switch_turns_on_deterministic_kernels_and_training_runs(deterministic):
    import os

    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    # every op of the loop has a deterministic kernel (else torch raises and names the op)
    data = _two_colours()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = ResNet(2, width=16)
        fit(model, data, data, training(lr=0.05, batch_size=8, epochs=1), seed=0, device=CPU)
        runs.append(predict(model, data.images, CPU))
    assert torch.equal(runs[0], runs[1])


def test_autocast_is_bf16_on_gpu_only():
    from cnnlab.tensors import autocast

    with autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu")  # CPU numbers must not depend on the machine's bf16


def test_adam_is_fused_and_steps_as_torch_default_adam_does():
    torch.manual_seed(0)
    model = ObjectsCNN(2, 8, 12)
    twin = ObjectsCNN(2, 8, 12)
    twin.load_state_dict(model.state_dict())
    cfg = training(lr=0.01, momentum=0.9, weight_decay=0.01, optimizer="adam")
    ours = make_optimizer(model, cfg)
    plain = torch.optim.Adam(twin.parameters(), lr=0.01, betas=(0.9, 0.999), weight_decay=0.01)
    assert ours.param_groups[0]["fused"] is True and not plain.param_groups[0]["fused"]
    x = torch.rand(4, 3, 12, 12)
    for _ in range(3):
        for net, opt in ((model, ours), (twin, plain)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # lr 0.01 steps, equal to 0.1% of one
