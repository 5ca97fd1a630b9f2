"""The objects-format reader, and every bad input it must name."""

import re
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cnnlab.data.crops import crop_split
from cnnlab.data.objects import DatasetError, load_rgb, read_objects


def _rows(root):
    return pd.read_csv(root / "boxes.csv", dtype=str, keep_default_na=False)


def _write_rows(root, rows):
    rows.to_csv(root / "boxes.csv", index=False)


def test_reads_the_generated_dataset(tiny_objects):
    ds = read_objects(tiny_objects)
    assert ds.classes == tuple(f"{i:02d}" for i in range(8))
    assert len(ds.split("train")) == 24 and len(ds.split("test")) == 8
    assert (ds.rows["mask"] != "").all()  # every image has its ground-truth mask
    assert (ds.split("test").label != "").all()  # test labels were merged from test_labels.csv
    assert ds.source.startswith("synthetic (cnnlab generator, seed 1)")
    # labels were read as strings: "00", not 0
    assert set(ds.split("train").label) == set(ds.classes)
    assert (ds.rows.width == 64).all()


def test_user_folder_without_marker_masks_or_test_labels(tiny_objects):
    (tiny_objects / "cnnlab_generator.json").unlink()
    (tiny_objects / "test_labels.csv").unlink()
    shutil.rmtree(tiny_objects / "masks")
    shutil.rmtree(tiny_objects / "paired")  # BG-gap pairs need test labels
    ds = read_objects(tiny_objects)
    assert ds.source == f"folder {tiny_objects}"
    assert (ds.rows["mask"] == "").all()
    assert (ds.split("test").label == "").all()


def test_greyscale_and_rgba_images_are_read_as_rgb(tiny_objects):
    path = tiny_objects / _rows(tiny_objects).path[0]
    Image.open(path).convert("L").save(path)
    assert load_rgb(path).shape == (64, 64, 3)
    path2 = tiny_objects / _rows(tiny_objects).path[1]
    Image.open(path2).convert("RGBA").save(path2.with_suffix(".png"))
    assert load_rgb(path2.with_suffix(".png")).shape == (64, 64, 3)


def test_missing_folder_names_the_params_key(tmp_path):
    with pytest.raises(DatasetError, match="objects.root"):
        read_objects(tmp_path / "nowhere")


def test_truncated_image_is_named_when_decoded(tiny_objects):
    rel = _rows(tiny_objects).path[2]
    data = (tiny_objects / rel).read_bytes()
    (tiny_objects / rel).write_bytes(data[: len(data) // 3])
    ds = read_objects(tiny_objects)  # the header is intact
    with pytest.raises(DatasetError, match=f"{rel}: unreadable or truncated image"):
        crop_split(ds, "train", 16)


def test_unreadable_image_is_named(tiny_objects):
    rel = _rows(tiny_objects).path[0]
    (tiny_objects / rel).write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match=f"{rel}: unreadable image"):
        read_objects(tiny_objects)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(x="60"), r"line 4 \(.*\): box x=60 y=.* outside the 64x64 image"),
        (dict(x="-1"), "outside the 64x64 image"),
        (dict(w="0"), r"line 4 \(.*\): zero-size box \(w=0"),
        (dict(h="-5"), "zero-size box"),
        (dict(w="3.5"), "column w must be a whole number of pixels, got '3.5'"),
        (dict(y="abc"), "column y must be a whole number"),
        (dict(x="inf"), "column x must be a whole number of pixels, got 'inf'"),  # found by hypothesis
        (dict(label="09"), "line 4 .*unknown class '09'; classes are the folders of train/"),
        (dict(label="01"), "label '01' does not match its folder '00'"),
        (dict(split="valid"), "split must be 'train' or 'test'"),
    ],
)
def test_bad_box_rows_name_the_line(tiny_objects, change, message):
    rows = _rows(tiny_objects)
    for key, value in change.items():
        rows.loc[2, key] = value
    _write_rows(tiny_objects, rows)
    with pytest.raises(DatasetError, match=message):
        read_objects(tiny_objects)


def test_row_without_its_image(tiny_objects):
    rel = _rows(tiny_objects).path[5]
    (tiny_objects / rel).unlink()
    with pytest.raises(DatasetError, match=f"line 7 \\({rel}\\): image .* does not exist"):
        read_objects(tiny_objects)


def test_image_without_a_row(tiny_objects):
    rows = _rows(tiny_objects)
    rel = rows.path[1]
    _write_rows(tiny_objects, rows.drop(index=1))
    with pytest.raises(DatasetError, match=f"{rel}: image without a row"):
        read_objects(tiny_objects)


def test_test_image_without_a_row(tiny_objects):
    Image.new("RGB", (64, 64)).save(tiny_objects / "test" / "stray.png")
    with pytest.raises(DatasetError, match="stray.png: image without a row"):
        read_objects(tiny_objects)


def test_empty_class_folder(tiny_objects):
    (tiny_objects / "train" / "08").mkdir()
    with pytest.raises(DatasetError, match="class '08' is empty"):
        read_objects(tiny_objects)


def test_duplicate_row(tiny_objects):
    rows = _rows(tiny_objects)
    _write_rows(tiny_objects, pd.concat([rows, rows.iloc[[0]]]))
    with pytest.raises(DatasetError, match="appears twice"):
        read_objects(tiny_objects)


def test_missing_column(tiny_objects):
    _write_rows(tiny_objects, _rows(tiny_objects).drop(columns=["h"]))
    with pytest.raises(DatasetError, match="missing column.*h"):
        read_objects(tiny_objects)


def test_missing_boxes_csv(tiny_objects):
    (tiny_objects / "boxes.csv").unlink()
    with pytest.raises(DatasetError, match="boxes.csv not found"):
        read_objects(tiny_objects)


def test_test_label_of_unknown_class(tiny_objects):
    labels = pd.read_csv(tiny_objects / "test_labels.csv", dtype=str)
    labels.loc[0, "label"] = "99"
    labels.to_csv(tiny_objects / "test_labels.csv", index=False)
    with pytest.raises(DatasetError, match="test_labels.csv line 2 .*unknown class '99'"):
        read_objects(tiny_objects)


def test_test_labels_incomplete(tiny_objects):
    labels = pd.read_csv(tiny_objects / "test_labels.csv", dtype=str)
    labels.iloc[1:].to_csv(tiny_objects / "test_labels.csv", index=False)
    with pytest.raises(DatasetError, match="no label for test/"):
        read_objects(tiny_objects)


def test_masks_are_cropped_with_their_image(tiny_objects):
    ds = read_objects(tiny_objects)
    crops = crop_split(ds, "train", 16)
    assert crops.images.shape == (24, 3, 16, 16) and crops.images.dtype == np.uint8
    assert crops.masks.shape == (24, 16, 16) and crops.index.has_mask.all()
    # the generator's boxes hug the object, so every crop holds a good share of object pixels
    assert (crops.masks.mean(axis=(1, 2)) > 0.2).all()


def test_spreadsheet_csv_with_bom_and_windows_paths(tiny_objects):
    rows = _rows(tiny_objects)
    rows["path"] = rows.path.str.replace("/", "\\", regex=False)
    (tiny_objects / "boxes.csv").write_text(
        "\ufeff" + rows.to_csv(index=False, lineterminator="\r\n"), encoding="utf-8"
    )
    ds = read_objects(tiny_objects)
    assert ds.split("train").path[0].startswith("train/00/")


def test_folder_without_test_images(tiny_objects):
    rows = _rows(tiny_objects)
    for rel in rows.path[rows.split == "test"]:
        (tiny_objects / rel).unlink()
    _write_rows(tiny_objects, rows[rows.split == "train"])
    (tiny_objects / "test_labels.csv").unlink()
    shutil.rmtree(tiny_objects / "paired")
    ds = read_objects(tiny_objects)
    assert len(ds.split("test")) == 0
    assert crop_split(ds, "test", 16).images.shape == (0, 3, 16, 16)


def test_paired_images_take_their_test_images_label_and_box(tiny_objects):
    ds = read_objects(tiny_objects)
    test, paired = ds.split("test"), ds.split("paired")
    assert len(paired) == len(test) == 8
    by_name = test.set_index(test.path.str.replace("test/", "", regex=False))
    for r in paired.itertuples():
        t = by_name.loc[r.path.replace("paired/", "")]
        assert (r.label, r.x, r.y, r.w, r.h) == (t.label, t.x, t.y, t.w, t.h) and r.label != ""
        assert r.mask == "masks/" + r.path.replace(".jpg", ".png")


def test_paired_image_without_its_test_image_is_an_error(tiny_objects):
    shutil.copy(tiny_objects / "paired/img_0000.jpg", tiny_objects / "paired/img_9999.jpg")
    with pytest.raises(DatasetError, match=r"img_9999.jpg: paired image without a test image .*test/img_9999.jpg"):
        read_objects(tiny_objects)


def _zip_of(folder, path, top=""):
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:  # as a user's zip tool would: with folder entries
        for p in sorted(folder.rglob("*")):
            zf.write(p, f"{top}{p.relative_to(folder).as_posix()}")
    return path


@pytest.mark.parametrize("top", ["", "objects/"], ids=["files at the top", "one top folder"])
def test_a_zip_of_the_folder_reads_as_the_folder_with_the_same_pixels(tiny_objects, tmp_path, top):
    folder = read_objects(tiny_objects)
    packed = read_objects(_zip_of(tiny_objects, tmp_path / "objects.zip", top))
    pd.testing.assert_frame_equal(packed.rows, folder.rows)
    assert packed.classes == folder.classes
    assert packed.source == f"synthetic (cnnlab generator, seed 1) at {tmp_path / 'objects.zip'}"
    for split in ("train", "test", "paired"):
        a, b = crop_split(folder, split, 16), crop_split(packed, split, 16)
        assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)


def test_the_generate_stages_pack_is_byte_stable_and_reads_back(tiny_objects, tmp_path):
    from cnnlab.io import pack_folder

    first = pack_folder(tiny_objects, tmp_path / "a.zip").read_bytes()
    (tiny_objects / "boxes.csv").touch()  # a newer modification time changes nothing
    assert pack_folder(tiny_objects, tmp_path / "b.zip").read_bytes() == first
    assert len(read_objects(tmp_path / "b.zip").rows) == len(read_objects(tiny_objects).rows)


def test_bad_zips_are_named(tiny_objects, tmp_path):
    (tmp_path / "not.zip").write_bytes(b"plain text")
    fix = "; set params key 'objects.root' to a folder in the objects format, or a .zip of one"
    not_zip = f"{tmp_path / 'not.zip'} is neither a folder nor a .zip file{fix}"
    with pytest.raises(DatasetError, match=re.escape(not_zip)):
        read_objects(tmp_path / "not.zip")
    with pytest.raises(DatasetError, match=re.escape(f"{tmp_path / 'gone'} does not exist{fix}")):
        read_objects(tmp_path / "gone")
    (tiny_objects / "boxes.csv").unlink()
    with pytest.raises(DatasetError, match=r"objects.zip/boxes.csv not found"):
        read_objects(_zip_of(tiny_objects, tmp_path / "objects.zip"))
