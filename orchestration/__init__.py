"""Orchestration: the pipeline's stages, their order, and the command line."""
