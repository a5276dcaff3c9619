"""Serving runtime: score raw records with a model bundle, in-process or over HTTP.

Imports only onnxruntime, duckdb, numpy and pyarrow (plus FastAPI and orjson in ``serving.server``
and the modules only it uses: ``scoring``, ``prediction_log``), never ``training`` or dbt, so
applications can embed it.
"""

from serving.errors import BundleError, InputValidationError, RegistryError
from serving.predictor import Predictions, Predictor

__all__ = ["BundleError", "InputValidationError", "Predictions", "Predictor", "RegistryError"]
