import pytest
import torch

from cnnlab.models import ObjectsCNN


@pytest.mark.parametrize(
    "classes, hidden, size, flat",
    [
        (2, 512, 200, 80000),  # the report's background classifier: 32 x 50 x 50
        (8, 1012, 124, 30752),  # the report's 8-class CNN: 32 x 31 x 31
        (8, 1012, 117, 32 * 29 * 29),  # cnnlab's default crop size
    ],
)
def test_flatten_size_follows_the_input_size(classes, hidden, size, flat):
    model = ObjectsCNN(classes, hidden, size)
    fc = model.classifier[1]
    assert fc.in_features == flat and fc.out_features == hidden
    assert model(torch.rand(2, 3, size, size)).shape == (2, classes)


def test_last_conv_is_the_32_channel_layer():
    model = ObjectsCNN(2, 16, 32)
    assert model.last_conv.out_channels == 32 and model.last_conv.kernel_size == (3, 3)


def test_forward_and_backward():
    model = ObjectsCNN(8, 16, 24)
    loss = model(torch.rand(4, 3, 24, 24)).sum()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_a_stage_without_study_models_loads_neither_torchvision_nor_inductor(tmp_path):
    """torchvision (via torch._dynamo) and torch._inductor (via torch.use_deterministic_algorithms)
    each cost 1-2 s of every stage process's start-up; the objects chain needs neither."""
    import subprocess
    import sys

    script = f"""
import sys
from cnnlab.models import ObjectsCNN
from cnnlab.stage import set_deterministic
from cnnlab.train.checkpoint import load_model, save_checkpoint
set_deterministic(False)
save_checkpoint({str(tmp_path / "m.pt")!r}, ObjectsCNN(8, hidden=16, in_size=32))
model, _ = load_model({str(tmp_path / "m.pt")!r})
print(type(model).__name__, sorted(m for m in ("torchvision", "torch._inductor", "torch._dynamo") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["ObjectsCNN", "[]"], out.stdout
