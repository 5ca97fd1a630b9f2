import ast
import copy
from pathlib import Path

import pytest
import yaml

from cnnlab.errors import ParamsError
from cnnlab.params.schema import Params, load_params, merge, parse_params
from tests.conftest import REPO, REPO_PARAMS, make_params


def _leaves(data: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for key, value in data.items():
        out += _leaves(value, (*prefix, key)) if isinstance(value, dict) else [(*prefix, key)]
    return out


def _without(path: tuple) -> dict:
    data = copy.deepcopy(REPO_PARAMS)
    node = data
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return data


def test_repository_params_yaml_is_valid():
    p = load_params(REPO / "params.yaml")
    assert p.classifier.lr == p.lr  # the 8-class classifier's lr is the top-level one
    assert p.backgrounds.classes == "auto"  # find_shortcut decides
    assert p.crop.size == 32 and p.objects.seeds >= 3 and p.objects.strategies[0] == "none"
    assert p.models["resnet"].family == "resnet" and p.datasets["cifar10"].source == "synthetic"


@pytest.mark.parametrize("path", _leaves(REPO_PARAMS), ids=".".join)
def test_deleting_any_key_fails_naming_it(path):
    """Every setting lives in params.yaml: nothing falls back to a default in the code."""
    key = ".".join(path)  # a deleted `source` or `family` leaves its entry without a kind: named as such
    if path[0] == "model_defaults":  # a shared setting gone: the models that took it are missing it
        key = rf"models\.\w+\.{path[-1]}"
    if path[0] == "models" and path[-1] in REPO_PARAMS["model_defaults"]:  # a model's own value gone: the shared one
        p = parse_params(_without(path))
        assert getattr(p.models[path[1]], path[-1]) == REPO_PARAMS["model_defaults"][path[-1]]
        return
    with pytest.raises(ParamsError, match=rf"'{key}' is missing|'{'.'.join(path[:-1])}' needs a '{path[-1]}'"):
        parse_params(_without(path))


def test_no_params_default_in_the_code():
    """No class of config.py gives a field a default, and no function of the library gives a
    default value (other than None) to an argument named like a params key."""

    def required(model) -> None:
        for name, field in model.model_fields.items():
            assert field.is_required(), f"{model.__name__}.{name} has a default"
            for tp in _types(field.annotation):
                if isinstance(tp, type) and hasattr(tp, "model_fields"):
                    required(tp)

    required(Params)
    keys = {path[-1] for path in _leaves(REPO_PARAMS)}
    found = []
    for path in sorted((REPO / "src").rglob("*.py")) + sorted((REPO / "stages").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                positional = a.posonlyargs + a.args
                pairs = list(zip(positional[len(positional) - len(a.defaults) :], a.defaults))
                pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
                found += [f"{path.relative_to(REPO)}:{node.lineno} {node.name}({arg.arg}={ast.unparse(d)})"
                          for arg, d in pairs
                          if arg.arg in keys and not (isinstance(d, ast.Constant) and d.value is None)]  # fmt: skip
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and len(node.args) == 3:
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {ast.unparse(node)}")
    assert found == []


def _types(tp) -> list:
    import typing

    args = typing.get_args(tp)
    return [tp, *[t for arg in args for t in _types(arg)]]


def test_integers_are_accepted_for_floats():
    assert make_params({"lr": 1}).lr == 1.0


@pytest.mark.parametrize(
    "data, message",
    [
        ({"lrr": 0.1}, "unknown params key 'lrr' in the top level; valid keys: seed, lr,"),
        ({"classifier": {"epoch": 3}}, "unknown params key 'classifier.epoch' in section 'classifier'; valid keys:"),
        ({"gradcam": {"treshold": 0.3}}, "'gradcam.treshold'"),
        ({"datasets": {"cifar10": {"root": "x"}}}, "'datasets.cifar10.root' in section 'datasets.cifar10'"),
        ({"models": {"resnet": {"dropout": 0.1}}}, "'models.resnet.dropout'.*valid keys:.* width"),
    ],
)
def test_misspelled_or_foreign_key_is_rejected_by_name(data, message):
    with pytest.raises(ParamsError, match=message):
        make_params(data)


@pytest.mark.parametrize(
    "data, key",
    [
        ({"lr": "fast"}, "'lr' must be a number, got 'fast'"),
        ({"classifier": {"epochs": 2.5}}, "'classifier.epochs' must be a whole number"),
        ({"classifier": {"batch_size": True}}, "'classifier.batch_size'"),
        ({"backgrounds": {"classes": [0, "04"]}}, r"'backgrounds.classes\[0\]'"),
        ({"backgrounds": {"classes": ["00"]}}, "'backgrounds.classes' must list 2 values"),
        ({"backgrounds": {"classes": "automatic"}}, "'backgrounds.classes'"),
        ({"crop": 117}, "'crop' must be a mapping"),
        ({"deterministic": "sometimes"}, "'deterministic' must be true or false"),
    ],
)
def test_wrong_type_is_rejected_by_name(data, key):
    with pytest.raises(ParamsError, match=key):
        make_params(data)


def test_unquoted_class_name_gets_a_quoting_hint():
    with pytest.raises(ParamsError, match="quote"):
        make_params({"backgrounds": {"classes": [0, "04"]}})


@pytest.mark.parametrize(
    "data, key",
    [
        ({"lr": 0}, "'lr' must be > 0"),
        ({"lr": -0.1}, "'lr' must be > 0"),
        ({"gradcam": {"threshold": 1.5}}, "'gradcam.threshold' must be <= 1"),
        ({"gradcam": {"threshold": -0.1}}, "'gradcam.threshold' must be >= 0"),
        ({"gradcam": {"candidates": [0.1, 2]}}, r"'gradcam.candidates\[1\]' must be <= 1"),
        ({"classifier": {"batch_size": 0}}, "'classifier.batch_size' must be >= 1"),
        ({"background_classifier": {"batch_size": 0}}, "'background_classifier.batch_size'"),
        ({"classifier": {"val_fraction": 1.0}}, "'classifier.val_fraction' must be < 1"),
        ({"crop": {"size": 4}}, "'crop.size' must be >= 8"),
        ({"objects": {"seeds": 0}}, "'objects.seeds' must be >= 1"),
    ],
)
def test_out_of_range_is_rejected_by_name(data, key):
    with pytest.raises(ParamsError, match=key):
        make_params(data)


def test_classifier_lr_is_refused_in_favour_of_top_level_lr():
    with pytest.raises(ParamsError, match="top-level 'lr'"):
        make_params({"classifier": {"lr": 0.1}})


def test_load_params_names_the_file_and_every_problem(tmp_path):
    path = tmp_path / "params.yaml"
    data = merge(REPO_PARAMS, {"batchsize": 3})
    del data["crop"]["size"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ParamsError) as e:
        load_params(path)
    lines = str(e.value).splitlines()
    assert lines == [f"{path}: params key 'crop.size' is missing; every setting lives in params.yaml: add it "
                     "(see the comments there, or git diff params.yaml)",
                     f"{path}: unknown params key 'batchsize' in the top level; valid keys: seed, lr, deterministic, "
                     "launcher, objects, generate, crop, segment, masker, backgrounds, background_classifier, gradcam, "
                     "classifier, study, transfer, datasets, model_defaults, models, augment, visualize, "
                     "tracking"]  # fmt: skip


def test_load_params_applies_overrides():
    p = load_params(REPO / "params.yaml", {"models": {"resnet": {"width": 8}}, "lr": 0.5})
    assert p.models["resnet"].width == 8 and p.models["resnet"].lr == REPO_PARAMS["models"]["resnet"]["lr"]
    assert p.classifier.lr == 0.5


def test_flat_for_logging():
    flat = make_params().flat()
    assert flat["lr"] == REPO_PARAMS["lr"] and flat["classifier.lr"] == REPO_PARAMS["lr"]
    assert flat["backgrounds.classes"] == "auto"
    assert make_params({"backgrounds": {"classes": ["00", "04"]}}).flat()["backgrounds.classes"] == ["00", "04"]
    assert flat["models.resnet.width"] == REPO_PARAMS["models"]["resnet"]["width"]


def test_the_full_stand_in_delta_adds_the_imagenet10_stand_in_to_both_matrices():
    p = make_params(yaml.safe_load((REPO / "configs/full.yaml").read_text()))
    assert make_params().study.datasets == ("cifar10",)
    assert p.study.datasets == ("cifar10", "imagenet10") and p.datasets["imagenet10"].source == "synthetic"
    assert len(p.cells()) == 2 * (len(p.study.models) + len(p.transfer.models)) == 16
    assert p.cell("features_cell") == ("imagenet10-imagenet10_cnn", "")


def test_real_data_delta_is_small_and_valid():
    delta = yaml.safe_load((REPO / "configs/real.yaml").read_text())
    p = make_params(delta)
    assert [p.datasets[d].source for d in p.study.datasets] == ["cifar10", "imagenette"]
    assert len(p.study.models) == 5 and p.models["mish_cnn"].epochs == 100
    assert p.transfer.models == ("mobilenet_v3",) and p.transfer.train_per_class == 0
    assert p.models["mobilenet_v3"].input_size == 224 and p.models["mobilenet_v3"].fallback == "error"
    assert len(_leaves(delta)) < len(_leaves(REPO_PARAMS)) / 3  # a delta, not a copy


@pytest.mark.parametrize(
    "data, message",
    [
        ({"study": {"models": ["vgg"]}}, "'study.models[0]': unknown name 'vgg'; valid names: simple_cnn"),
        ({"study": {"datasets": ["mnist"]}}, "valid names: cifar10, imagenet10"),
        ({"augment": {"mosaic": {"p": 1}}}, "valid keys: rotate90, resized_crop, translate, hflip"),
        ({"datasets": {"x": {"source": "mnist"}}}, "'datasets.x.source': unknown name 'mnist'; valid names: synthetic, "
                                                   "cifar10, imagenette, folder"),
        ({"datasets": {"my-flowers": {"source": "folder"}}}, "'datasets.my-flowers': names must be letters, digits"),
        ({"models": {"x": {"dropout": 0.1}}}, "'models.x' needs a 'family' key: one of simple_cnn, mish_cnn"),
        ({"models": {"resnet": {"optimizer": "rmsprop"}}}, "valid names: adam, sgd"),
        ({"study": {"models": ["resnet", "resnet"]}}, "lists a name twice"),
        ({"study": {"models": []}}, "'study.models' must list at least 1 item"),  # found by hypothesis
        ({"visualize": {"deconv_cell": "cifar10-vgg"}}, "'visualize.deconv_cell': unknown name 'cifar10-vgg'"),
        ({"visualize": {"augment_dataset": "mnist"}}, "valid names: cifar10, imagenet10"),
    ],
)
def test_unknown_names_are_rejected_with_the_valid_ones(data, message):
    with pytest.raises(ParamsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_params(data)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"transfer": {"source": "cifar10"}}, "'transfer.source': 'cifar10' is in study.datasets"),
        ({"transfer": {"pretrain": "mobilenet_v3"}}, "'transfer.pretrain': models.mobilenet_v3 must be a transfer "
                                                     "family .* with weights: none and freeze_backbone: false"),
        ({"transfer": {"pretrain": "resnet"}}, "'transfer.pretrain': models.resnet must be a transfer family"),
        ({"transfer": {"models": ["resnet"]}}, "'transfer.models[0]': 'resnet' is in study.models too"),
        ({"study": {"models": ["mobilenet_v3"]}}, "'transfer.models[0]': 'mobilenet_v3' is in study.models too"),
        ({"study": {"models": ["mobilenet_v3"]}, "transfer": {"models": ["mobilenet_v3_scratch"]}},
         "'study.models[0]': models.mobilenet_v3 may load the pretrain stage's backbone .* list it in transfer.models"),
        ({"models": {"mobilenet_v3": {"family": "inception_v3"}}},
         "'models.mobilenet_v3.family': inception_v3 cannot load the pretrained backbone, a mobilenet_v3"),
        ({"transfer": {"models": ["mobilenet_v3", "mobilenet_v3"]}}, "'transfer.models' lists a name twice"),
    ],
)
def test_the_transfer_matrix_and_its_pretrained_backbone_must_fit_together(data, message):
    with pytest.raises(ParamsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_params(data)
    # a model that falls back to random weights, not to the pretrained backbone, may be in the study
    p = make_params({"study": {"models": ["mobilenet_v3"]}, "transfer": {"models": ["mobilenet_v3_scratch"]},
                     "models": {"mobilenet_v3": {"fallback": "random"}}})  # fmt: skip
    assert p.cells()[-1] == "cifar10-mobilenet_v3_scratch"


def test_changing_the_study_matrix_alone_never_fails_and_figures_fall_back_to_cells_in_it():
    p = make_params({"study": {"datasets": ["imagenet10"], "models": ["simple_cnn"]}})
    assert p.cell("deconv_cell") == (
        "imagenet10-simple_cnn", "visualize.deconv_cell 'cifar10-resnet' is not in the study matrix: using "
        "'imagenet10-simple_cnn'")  # fmt: skip
    assert p.augment_dataset()[0] == "imagenet10"
    p = make_params({"visualize": {"features_cell": None, "augment_dataset": None}})
    assert p.cell("features_cell") == (
        "cifar10-simple_cnn", "visualize.features_cell not set: using 'cifar10-simple_cnn'")  # fmt: skip
    assert p.augment_dataset()[0] == "cifar10"
    assert make_params().cell("deconv_cell") == ("cifar10-resnet", "")


def test_a_user_named_folder_dataset_and_a_second_resnet_are_just_params():
    p = make_params({
        "datasets": {"my_flowers": {"source": "folder", "root": "data/flowers", "image_size": 32, "val_fraction": 0.2,
                                    "limit_per_class": 0}},
        "models": {"wide_resnet": {**REPO_PARAMS["models"]["resnet"], "width": 32}},
        "study": {"datasets": ["my_flowers"], "models": ["wide_resnet", "resnet"]},
    })  # fmt: skip
    assert p.cells() == ["my_flowers-wide_resnet", "my_flowers-resnet",
                         *[f"my_flowers-{m}" for m in p.transfer.models]]  # fmt: skip
    assert p.models["wide_resnet"].family == "resnet" and p.models["wide_resnet"].width == 32


@pytest.mark.parametrize("launcher", ["python", "torchrun --standalone --nproc_per_node 2"])
def test_launcher_is_python_or_torchrun(launcher):
    assert make_params({"launcher": launcher}).launcher == launcher


def test_another_launcher_is_refused_with_an_example():
    with pytest.raises(ParamsError, match="launcher.*torchrun --standalone --nproc_per_node 2"):
        make_params({"launcher": "mpirun -n 2"})


def test_unknown_strategy_is_rejected_with_the_valid_ones():
    with pytest.raises(
        ParamsError, match=r"objects.strategies\[1\]'.*'grabcut'.*none, report, segment, segment_learned, mixed_rand, "
        r"mixed_rand_learned, oracle"
    ):
        make_params({"objects": {"strategies": ["none", "grabcut"]}})
    with pytest.raises(ParamsError, match="lists a name twice"):
        make_params({"objects": {"strategies": ["none", "none"]}})
    assert make_params({"objects": {"seeds": 2}, "seed": 5}).objects.seed_list(5) == [5, 6]


def test_params_file_is_only_yaml_and_not_found_is_clear(tmp_path):
    (tmp_path / "bad.yaml").write_text("seed: [0\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")
    with pytest.raises(FileNotFoundError, match="run from the repository root"):
        load_params(tmp_path / "none.yaml")
    with pytest.raises(ParamsError, match="mapping of keys at the top level"):
        parse_params([1, 2])
    assert Path(REPO / "params.yaml").is_file()


def test_models_start_from_model_defaults_and_their_own_keys_win():
    p = make_params({"model_defaults": {"batch_size": 32}, "models": {"resnet": {"batch_size": 16}}})
    assert p.models["resnet"].batch_size == 16  # its own key
    assert {p.models[m].batch_size for m in p.models if m != "resnet"} == {32}  # the shared one, everywhere else
    assert p.models["mobilenet_v3"].head_hidden == REPO_PARAMS["model_defaults"]["head_hidden"]
    assert "head_hidden" not in p.models["resnet"].model_dump()  # a key its family lacks is not applied
    assert all("batch_size" not in block for block in REPO_PARAMS["models"].values())  # said once, in params.yaml


@pytest.mark.parametrize(
    "defaults, message",
    [
        ({"batch_sise": 8}, "'model_defaults.batch_sise': no model family has this setting; the settings are .*batch"),
        ({"batch_size": 0}, "'model_defaults.batch_size' must be >= 1, got 0"),
        ({"optimizer": "rmsprop"}, "'model_defaults.optimizer'.*valid names: adam, sgd"),
    ],
)
def test_a_bad_model_default_is_named_as_such(defaults, message):
    with pytest.raises(ParamsError, match=message):
        make_params({"model_defaults": defaults})


def test_the_real_data_delta_adds_keys_its_model_blocks_do_not_write():
    """configs/real.yaml sets batch sizes per model; params.yaml says them once in model_defaults,
    so `cnnlab overrides` adds them to the model's block (`+models.x.key=`), as DVC needs."""
    from cnnlab.cli import overrides

    args = overrides(yaml.safe_load((REPO / "configs/real.yaml").read_text()), REPO_PARAMS)
    assert "+models.simple_cnn.batch_size=256" in args and "models.simple_cnn.lr=0.001" in args
