"""Training: read the dbt features mart, fit, evaluate, export ONNX and write model bundles."""
