"""The report: the figures no other stage owns and the HTML page (`visualize`), the experiment's
headline row in DVC and MLflow (`summary`)."""
