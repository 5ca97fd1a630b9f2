"""The model file of every learned foreground masker cnnlab logs to MLflow ("models from code", no
pickle; cnnlab.serving.ForegroundMasker has the contract)."""

from mlflow.models import set_model

from cnnlab.serving import ForegroundMasker

set_model(ForegroundMasker())
