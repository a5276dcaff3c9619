"""Errors raised by the training package. Each subclasses a built-in and says how to fix it."""


class FeatureSpecError(ValueError):
    """The dbt manifest does not describe the features mart the way training needs."""


class TrainingDataError(ValueError):
    """The feature table cannot be trained on (empty split, single class, missing columns)."""


class ExportError(RuntimeError):
    """The model could not be exported to ONNX faithfully; it is not bundled."""


class UnservableFeatureError(ValueError):
    """A feature's SQL cannot run at serving (other rows, clock, randomness, unfrozen tables)."""


class FusedCompileError(ValueError):
    """The serving SQL uses an expression outside the fused compiler's subset; keep the SQL path."""


class FeatureAvailabilityError(ValueError):
    """The training window starts before a feature is available (its column meta ``available_from``)."""
