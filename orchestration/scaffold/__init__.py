"""``orchestrate.py init``: a working dbt project and pipeline config from a landing folder.

inference.py reads the folder (types, roles); recipes.py is the registry of default features per
column type; templates.py holds the files' text; writer.py renders and writes them.
"""
