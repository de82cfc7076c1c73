"""The MLflow drop-in: MLflow's tracking protocol for traces (REST and OTLP ingest), mounted on
the search API, so the unmodified ``mlflow`` client exports to and searches through tracestream."""

from tracestream.search_api.mlflow_rest.routes import MLFLOW_SERVER_VERSION as MLFLOW_SERVER_VERSION
from tracestream.search_api.mlflow_rest.routes import MlflowBackend as MlflowBackend
from tracestream.search_api.mlflow_rest.routes import router as router
