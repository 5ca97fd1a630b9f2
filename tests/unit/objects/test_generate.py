"""The generate stage's step (cnnlab.objects.generate)."""

import zipfile

from cnnlab.objects.generate import write_dataset
from tests.unit.objects.conftest import P


def test_generate_writes_one_zip_of_the_objects_format(tmp_path):
    cfg = P.generate.model_copy(update={"classes": 2, "train_per_class": 1, "test_per_class": 1, "image_size": 32})
    out = tmp_path / "raw" / "objects.zip"
    write_dataset(cfg, 0, out)
    names = zipfile.ZipFile(out).namelist()
    assert "boxes.csv" in names and any(n.startswith("train/") for n in names)
    assert not list(out.parent.glob(".generate-*"))  # the temporary folder is gone
