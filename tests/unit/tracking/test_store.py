import logging

from mlflow.utils import requirements_utils

from cnnlab.tracking import warm_up


def test_mlflow_builds_its_package_map_once_and_still_names_a_mismatch(caplog):
    warm_up()
    built = requirements_utils._PACKAGES_TO_MODULES
    assert built and built.get("torch") == "torch"
    warm_up()  # a second call (every logged model makes one) wraps nothing twice
    with caplog.at_level(logging.WARNING, logger="mlflow.utils.requirements_utils"):
        requirements_utils.warn_dependency_requirement_mismatches(["numpy==0.0.1", "torch"])
    assert requirements_utils._PACKAGES_TO_MODULES is built  # checked against the same map, not a rebuilt one
    assert "numpy (current: " in caplog.text and "required: numpy==0.0.1" in caplog.text
    assert "torch (current" not in caplog.text
