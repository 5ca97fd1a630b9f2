from mlflow.utils import requirements_utils

from cnnlab.tracking import warm_up


def test_mlflow_builds_its_package_map_once_and_still_names_a_mismatch(monkeypatch):
    warm_up()
    built = requirements_utils._PACKAGES_TO_MODULES
    assert built and "torch" in built  # package -> one of its modules (torch ships torch and functorch)
    warm_up()  # a second call (every logged model makes one) wraps nothing twice
    warned = []  # MLflow's logger may not propagate to pytest's: read what it is given
    monkeypatch.setattr(requirements_utils._logger, "warning", lambda message, *a, **k: warned.append(message))
    requirements_utils.warn_dependency_requirement_mismatches(["numpy==0.0.1", "torch"])
    assert requirements_utils._PACKAGES_TO_MODULES is built  # checked against the same map, not a rebuilt one
    assert len(warned) == 1 and "required: numpy==0.0.1" in warned[0] and "torch (current" not in warned[0]
