"""The errors cnnlab raises on purpose. A stage that meets one exits with a one-line message
(what is wrong, where, what to do) instead of a traceback; see :func:`cnnlab.stage.run_stage`."""


class CnnlabError(Exception):
    """An error whose message tells the user what to fix."""


class ParamsError(CnnlabError, ValueError):
    """A params.yaml key is missing, unknown, of the wrong type or out of range."""


class DatasetError(CnnlabError, ValueError):
    """A dataset folder or file does not follow its format."""


class WeightsError(CnnlabError, RuntimeError):
    """Pretrained weights are neither in the local torch cache nor downloadable."""


class TrackingError(CnnlabError, RuntimeError):
    """The MLflow tracking store cannot be used."""


class OutputError(CnnlabError, OSError):
    """An output could not be written (disk full, quota, permissions); what was there before is kept."""

    def __str__(self) -> str:
        return self.strerror
