import pytest
import yaml

from cnnlab.config import Params, ParamsError, load_params, parse_params, to_flat_dict
from tests.conftest import REPO


def test_repository_params_yaml_is_valid():
    p = load_params(REPO / "params.yaml")
    assert p.lr > 0
    assert p.classifier_train().lr == p.lr
    assert p.backgrounds.classes == ("00", "04")
    assert p.crop.size == 64 and p.objects.seeds >= 3 and p.objects.strategies[0] == "none"


def test_defaults_fill_missing_keys_and_sections_keep_their_own_defaults():
    p = parse_params({"lr": 0.05, "classifier": {"epochs": 2}})
    assert p.classifier.epochs == 2
    assert p.classifier.batch_size == 32  # the classifier's default, not the background classifier's
    assert p.classifier.hidden == 1012
    assert p.background_classifier.batch_size == 8
    assert p.classifier_train().lr == 0.05


def test_integers_are_accepted_for_floats():
    assert parse_params({"lr": 1}).lr == 1.0


@pytest.mark.parametrize(
    "data, key",
    [
        ({"lrr": 0.1}, "'lrr'"),
        ({"classifier": {"epoch": 3}}, "'classifier.epoch'"),
        ({"gradcam": {"treshold": 0.3}}, "'gradcam.treshold'"),
    ],
)
def test_misspelled_key_is_rejected_by_name(data, key):
    with pytest.raises(ParamsError, match=key):
        parse_params(data)


@pytest.mark.parametrize(
    "data, key",
    [
        ({"lr": "fast"}, "'lr'"),
        ({"classifier": {"epochs": 2.5}}, "'classifier.epochs'"),
        ({"classifier": {"batch_size": True}}, "'classifier.batch_size'"),
        ({"backgrounds": {"classes": [0, 4]}}, r"'backgrounds.classes\[0\]'"),
        ({"backgrounds": {"classes": ["00"]}}, "'backgrounds.classes'"),
        ({"crop": 117}, "'crop'"),
    ],
)
def test_wrong_type_is_rejected_by_name(data, key):
    with pytest.raises(ParamsError, match=key):
        parse_params(data)


def test_unquoted_class_name_gets_a_quoting_hint():
    with pytest.raises(ParamsError, match="quote"):
        parse_params({"backgrounds": {"classes": [0, "04"]}})


@pytest.mark.parametrize(
    "data, key",
    [
        ({"lr": 0}, "'lr' must be > 0"),
        ({"lr": -0.1}, "'lr' must be > 0"),
        ({"gradcam": {"threshold": 1.5}}, "'gradcam.threshold' must be between 0 and 1"),
        ({"gradcam": {"threshold": -0.1}}, "'gradcam.threshold'"),
        ({"classifier": {"batch_size": 0}}, "'classifier.batch_size' must be >= 1"),
        ({"background_classifier": {"batch_size": 0}}, "'background_classifier.batch_size'"),
        ({"classifier": {"val_fraction": 1.0}}, "'classifier.val_fraction'"),
        ({"crop": {"size": 4}}, "'crop.size'"),
    ],
)
def test_out_of_range_is_rejected_by_name(data, key):
    with pytest.raises(ParamsError, match=key):
        parse_params(data)


def test_classifier_lr_is_refused_in_favour_of_top_level_lr():
    with pytest.raises(ParamsError, match="top-level 'lr'"):
        parse_params({"classifier": {"lr": 0.1}})


def test_load_params_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"seed": 0, "batchsize": 3}))
    with pytest.raises(ParamsError, match=r"params.yaml: unknown params key\(s\) 'batchsize'"):
        load_params(path)


def test_flat_dict_for_logging():
    flat = to_flat_dict(Params())
    assert flat["lr"] == Params().lr
    assert flat["backgrounds.classes"] == ["00", "04"]
    assert "classifier.hidden" in flat


def test_real_data_config_is_valid_and_uses_the_real_sources():
    p = load_params(REPO / "configs/real.yaml")
    assert p.datasets.cifar10.source == "torchvision" and p.datasets.imagenet10.source == "imagenette"
    assert len(p.study.models) == 6 and p.models.mish_cnn.epochs == 100
    assert p.models.mobilenet_v3.input_size == 224 and not p.models.mobilenet_v3.allow_random_init


@pytest.mark.parametrize(
    "data, message",
    [
        ({"models": {"vgg": {}}}, "valid keys: imagenet10_cnn, inception_v3, mish_cnn"),
        ({"study": {"models": ["vgg"]}}, "'study.models[0]': unknown name 'vgg'; valid names: simple_cnn"),
        ({"study": {"datasets": ["mnist"]}}, "valid names: cifar10, imagenet10"),
        ({"augment": {"mosaic": {"p": 1}}}, "valid keys: cutmix, cutout, hflip, mixup"),
        ({"datasets": {"cifar10": {"source": "folder"}}}, "valid names: synthetic, torchvision"),
        ({"models": {"resnet": {"optimizer": "rmsprop"}}}, "valid names: adam, sgd"),
        ({"study": {"models": ["resnet", "resnet"]}}, "lists a name twice"),
        ({"visualize": {"deconv_cell": "cifar10-vgg"}}, "'visualize.deconv_cell': unknown name 'cifar10-vgg'"),
        (
            {"study": {"models": ["simple_cnn"]}},  # the default cells are no longer in the matrix
            "'visualize.features_cell': unknown name 'imagenet10-imagenet10_cnn'; valid names: cifar10-simple_cnn,",
        ),
        ({"visualize": {"augment_dataset": "mnist"}}, "valid names: cifar10, imagenet10"),
        ({"study": {"models": []}}, "'study.models' must list at least one name"),  # found by hypothesis
    ],
)
def test_unknown_study_names_are_rejected_with_the_valid_ones(data, message):
    with pytest.raises(ParamsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_params(data)


@pytest.mark.parametrize("launcher", ["python", "torchrun --standalone --nproc_per_node 2"])
def test_launcher_is_python_or_torchrun(launcher):
    assert parse_params({"launcher": launcher}).launcher == launcher


def test_another_launcher_is_refused_with_an_example():
    with pytest.raises(ParamsError, match="launcher.*torchrun --standalone --nproc_per_node 2"):
        parse_params({"launcher": "mpirun -n 2"})


def test_deterministic_must_be_a_boolean():
    with pytest.raises(ParamsError, match="deterministic"):
        parse_params({"deterministic": "sometimes"})


def test_unknown_strategy_is_rejected_with_the_valid_ones():
    with pytest.raises(
        ParamsError, match=r"objects.strategies\[1\]'.*'grabcut'.*none, report, segment, mixed_rand, oracle"
    ):
        parse_params({"objects": {"strategies": ["none", "grabcut"]}})
    with pytest.raises(ParamsError, match="lists a name twice"):
        parse_params({"objects": {"strategies": ["none", "none"]}})
    with pytest.raises(ParamsError, match=r"'objects.seeds' must be >= 1"):
        parse_params({"objects": {"seeds": 0}})
    assert parse_params({"objects": {"seeds": 2}, "seed": 5}).objects.seed_list(5) == [5, 6]
