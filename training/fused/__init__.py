"""Compile the bundle's serving SQL into ONNX operators in front of the model ("fused" model).

The result is one ONNX file that takes raw fields and returns the model's outputs, the feature
vector and an "unsure" mask, runnable by any ONNX Runtime. The compiler understands a documented
subset of SQL (the registry in ``training.fused.emitters``) with DuckDB's semantics; anything
else raises ``FusedCompileError`` naming the expression, and the pipeline keeps the SQL path for
that model: it never emits a silently different graph. Rows where DuckDB would raise an error,
or where a value passes what float64 holds exactly, are flagged unsure and scored by the SQL
path.

Graph inputs, one per raw field the features use, shape [N]:

- double fields: float64, NaN for SQL NULL;
- integer fields: int64, ``INT64_NULL`` (the smallest int64) for NULL;
- boolean fields: bool (must not be null);
- string fields: string, ``STRING_NULL`` ("\\0") for NULL;
- timestamps: int64 microseconds since 1970-01-01 (UTC), ``INT64_NULL`` for NULL.

Where things are: ``types`` (DuckDB's types), ``values`` (symbolic values), ``compiler`` (inputs,
dispatch, shared helpers), ``scope`` (relations, joins, lookups), ``emitters`` (one per SQL
construct, registered), ``numeric`` (conversions, exactness, NaN order), ``folding`` (constant
folding), ``text`` and ``codes`` (DuckDB's string semantics and string codes), ``graph`` (nodes and
passes), ``assemble`` (the feature matrix and the merge with the model).
"""

from training.fused.assemble import FusedModel, compile_fused
from training.fused.emitters import supported

__all__ = ["FusedModel", "compile_fused", "supported"]
