"""Features declare when they become available; training refuses a window that starts earlier."""

import datetime as dt
from pathlib import Path

import pytest
import yaml

from training.data import check_feature_availability, feature_availability
from training.dbt_manifest import FeatureSpec
from training.errors import FeatureAvailabilityError

REPO = Path(__file__).resolve().parents[2]


def _spec(**available_from: object) -> FeatureSpec:
    return FeatureSpec(model="m", relation="s.m", key="k", timestamp="t", label="y", features=tuple(available_from),
                       feature_meta={f: {"available_from": d} for f, d in available_from.items()})


def test_training_refuses_a_window_that_starts_before_a_feature_exists() -> None:
    spec = _spec(a="2026-01-01", b=dt.date(2026, 1, 5))
    check_feature_availability(spec, dt.date(2026, 1, 5))
    with pytest.raises(FeatureAvailabilityError, match=r"starts on 2026-01-04, before feature\(s\) b \(from 2026-01-05\)"):
        check_feature_availability(spec, dt.date(2026, 1, 4))


def test_a_feature_without_a_valid_date_is_named() -> None:
    with pytest.raises(FeatureAvailabilityError, match=r"feature\(s\) b \(None\), c \('soon'\) have no valid meta.available_from"):
        feature_availability(_spec(a="2026-01-01", b=None, c="soon"))


def test_every_feature_in_the_dbt_project_declares_its_availability() -> None:
    features = 0
    for path in (REPO / "dbt_project" / "models").rglob("*.yml"):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            for column in model.get("columns", []):
                meta = column.get("meta") or {}
                if meta.get("role") == "feature":
                    features += 1
                    assert dt.date.fromisoformat(str(meta.get("available_from"))), (path, column["name"])
    assert features > 0
