"""The model file of every model cnnlab logs to MLflow ("models from code": MLflow stores this
file with the model and runs it to load it, so no pickle is involved). The contract is in
cnnlab.serving."""

from mlflow.models import set_model

from cnnlab.serving import ImageClassifier

set_model(ImageClassifier())
