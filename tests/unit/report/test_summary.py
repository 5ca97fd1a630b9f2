"""The experiment's headline row (cnnlab.report.summary) from evaluate's and the study's metrics."""

from cnnlab.report.summary import data_sources, decision_tags, headline


def _m(mean, sd=0.0):
    return {"mean": mean, "sd": sd}


EVALUATION = {
    "data_source": "synthetic",
    "strategies": {
        "none": {"val_accuracy": _m(0.8), "test_accuracy": _m(0.3, 0.02), "shortcut_class_test_recall": _m(0.99)},
        "segment": {"val_accuracy": _m(0.9), "test_accuracy": _m(0.85, 0.01), "test_mask_iou": _m(0.84)},
        "oracle": {"skipped": "no ground-truth masks"},
        "unlabelled": {"val_accuracy": _m(0.7)},
    },
}
STUDY = {"cifar10-resnet": {"data_source": "synthetic cifar10", "val": {"accuracy": 0.9}, "test": {"accuracy": 0.88}},
         "mine-resnet": {"data_source": "folder", "val": {"accuracy": 0.5}}}  # fmt: skip


def test_headline_means_skips_and_leaves_out_what_is_not_measured():
    h = headline(EVALUATION, STUDY)
    assert h["objects"]["none"] == {"val_accuracy": 0.8, "test_accuracy": 0.3, "test_accuracy_sd": 0.02,
                                    "shortcut_class_test_recall": 0.99}  # fmt: skip
    segment = h["objects"]["segment"]
    assert segment["test_mask_iou"] == 0.84 and "shortcut_class_test_recall" not in segment
    assert "oracle" not in h["objects"] and h["objects"]["unlabelled"] == {"val_accuracy": 0.7}
    assert h["study"] == {"cifar10-resnet": {"val_accuracy": 0.9, "test_accuracy": 0.88},
                          "mine-resnet": {"val_accuracy": 0.5}}  # fmt: skip


def test_data_sources_and_the_decision_tags():
    assert data_sources(EVALUATION, STUDY) == {"objects": "synthetic", "cifar10-resnet": "synthetic cifar10",
                                               "mine-resnet": "folder"}  # fmt: skip
    found = {"shortcut": "00", "decided_by": "detected", "detected": {"share": {"00": 0.8123}, "top_share": 0.8123}}
    assert decision_tags(found) == {"shortcut/class": "00", "shortcut/decided_by": "detected",
                                    "shortcut/share": "0.812"}  # fmt: skip
    none = {"shortcut": None, "decided_by": "detected", "detected": {"top_share": 0.2}}
    assert decision_tags(none)["shortcut/class"] == "none" and decision_tags(none)["shortcut/share"] == "0.200"
    given = {"shortcut": "03", "decided_by": "params", "detected": None}
    assert decision_tags(given)["shortcut/share"] == ""
