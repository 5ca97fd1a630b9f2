"""The crop stage's step (cnnlab.objects.crop) on the tiny folder."""

from tests.unit.objects.conftest import P


def test_crop_cuts_every_split_with_its_context(cropped):
    ds, cut = cropped
    pad = round(P.crop.context * 16)
    for split, crops in cut.crops.splits.items():
        assert crops.images.shape == (len(ds.split(split)), 3, 16, 16)
        context = cut.context.splits[split]
        assert context.images.shape[-1] == 16 + 2 * pad
        assert context.masks.dtype == bool and context.masks.any()  # which pixels lie inside the photograph
    assert cut.counts() == {f"{s}_crops": len(ds.split(s)) for s in cut.crops.splits}
