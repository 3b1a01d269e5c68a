"""JSON Schema of ``diagnostics/{h}.json`` and a small validator for the subset it uses.

The schema is standard JSON Schema (draft 2020-12) so other tools can validate the file; the
validator here covers the keywords used (type, properties, required, additionalProperties,
items, enum, minimum, maximum) because the ``jsonschema`` package is not a dependency.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cbi_pipeline.core.diagnostics import SCHEMA_VERSION
from cbi_pipeline.core.vocabulary import CHECK_NAMES, HORIZON_LABELS

NUM_OR_NULL: dict[str, Any] = {"type": ["number", "null"]}
STR_OR_NULL: dict[str, Any] = {"type": ["string", "null"]}
COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
SHARE: dict[str, Any] = {"type": "number", "minimum": 0, "maximum": 1}
STRINGS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}


def _obj(props: Mapping[str, Any], extra: bool = False) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": dict(props),
        "required": list(props),
        "additionalProperties": extra,
    }


def _optional(schema: dict[str, Any], **props: Any) -> dict[str, Any]:
    """``schema`` (an object) that may also have ``props``, none of them required."""
    schema["properties"].update(props)
    return schema


def _array(items: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": dict(items)}


CHECK = _obj(
    {
        "passed": {"type": "boolean"},
        "summary": {"type": "string"},
        "offending": STRINGS,
        "warnings": STRINGS,
    }
)

LAG_EVIDENCE: dict[str, Any] = {
    "feature": {"type": "string"},
    "transform": {"enum": ["level", "change"]},
    "statistic": {"enum": ["return", "absolute return"]},
    "lag": {"type": "integer", "minimum": 1},
    "corr": {"type": "number"},
    "z": {"type": "number"},
    "past_corr": {"type": "number"},
    "past_z": {"type": "number"},
    "z_limit": {"type": "number"},
    "first_date": {"type": "string"},
    "last_date": {"type": "string"},
}

SCREENED = _obj(
    {
        "feature": {"type": "string"},
        "reasons": STRINGS,
        "windows": {"type": "number", "minimum": 0},
        "future_limit": NUM_OR_NULL,
        "future_corr": NUM_OR_NULL,
        "past_corr": NUM_OR_NULL,
        "transform": {"enum": ["level", "h_change", "price_residual"]},
        "target_corr": NUM_OR_NULL,
        "price_corr": NUM_OR_NULL,
        "return_corr": NUM_OR_NULL,
        "equal_shift": {"type": ["integer", "null"]},
        "equal_share": SHARE,
    }
)

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "cbi_pipeline pre-training diagnostics of one horizon",
    **_obj(
        {
            "schema_version": {"enum": [SCHEMA_VERSION]},
            "horizon": {"enum": list(HORIZON_LABELS)},
            "horizon_days": {"type": "integer", "minimum": 1},
            "target_column": {"type": "string"},
            "source": {"type": "string"},
            "rows": COUNT,
            "first_date": STR_OR_NULL,
            "last_date": STR_OR_NULL,
            "features": COUNT,
            "passed": {"type": "boolean"},
            "checks": _obj({name: CHECK for name in CHECK_NAMES}),
            "regime_statistics": _array(
                _obj(
                    {
                        "regime": {"type": "string"},
                        "rows": COUNT,
                        "labelled_rows": COUNT,
                        "first_date": STR_OR_NULL,
                        "last_date": STR_OR_NULL,
                        "mean_log_return": NUM_OR_NULL,
                        "std_log_return": NUM_OR_NULL,
                        "annualised_vol": NUM_OR_NULL,
                        "rw_mape_pct": NUM_OR_NULL,
                        "buy_hold_sharpe": NUM_OR_NULL,
                        "sharpe_origins": COUNT,
                    }
                )
            ),
            "regime_weights": _array(
                _obj(
                    {
                        "regime": {"type": "string"},
                        "rows": COUNT,
                        "labelled_rows": COUNT,
                        "weight": NUM_OR_NULL,
                        "weight_share": NUM_OR_NULL,
                        "row_share": NUM_OR_NULL,
                    }
                )
            ),
            "price_spikes": _obj(
                {
                    "rule": {"type": "string"},
                    "daily_sigma": NUM_OR_NULL,
                    "spikes": _array(
                        _obj(
                            {
                                "date": {"type": "string"},
                                "previous": {"type": "number"},
                                "price": {"type": "number"},
                                "next": {"type": "number"},
                                "jump_pct": {"type": "number"},
                                "reversal_pct": {"type": "number"},
                            }
                        )
                    ),
                }
            ),
            "missing_data": _obj(
                {
                    "limits": _obj(
                        {"flag_share": SHARE, "max_flagged_share": SHARE, "max_block_share": SHARE}
                    ),
                    "rows": COUNT,
                    "price_missing_rows": COUNT,
                    "features": _array(
                        _obj(
                            {
                                "feature": {"type": "string"},
                                "block": {"type": "string"},
                                "missing_rows": COUNT,
                                "missing_share": SHARE,
                                "longest_gap_rows": COUNT,
                                "longest_gap_start": STR_OR_NULL,
                                "longest_gap_end": STR_OR_NULL,
                                "first_valid_date": STR_OR_NULL,
                                "flagged": {"type": "boolean"},
                            }
                        )
                    ),
                    "blocks": _array(
                        _obj(
                            {
                                "block": {"type": "string"},
                                "features": COUNT,
                                "missing_share": SHARE,
                                "flagged_features": COUNT,
                            }
                        )
                    ),
                    "by_year": _array(
                        _obj(
                            {
                                "block": {"type": "string"},
                                "year": {"type": "integer"},
                                "missing_share": SHARE,
                            }
                        )
                    ),
                    "flagged": STRINGS,
                    "empty": STRINGS,
                }
            ),
            "leakage": _obj(
                {
                    "alignment": _obj(
                        {
                            "passed": {"type": "boolean"},
                            "rows_checked": COUNT,
                            "mismatch_count": COUNT,
                            "dates_increasing": {"type": "boolean"},
                            "best_matching_shift": {"type": ["integer", "null"]},
                            "mismatches": _array(
                                _obj(
                                    {
                                        "row": COUNT,
                                        "date": {"type": "string"},
                                        "target": NUM_OR_NULL,
                                        "price_h_ahead": NUM_OR_NULL,
                                        "date_h_ahead": STR_OR_NULL,
                                    }
                                )
                            ),
                        }
                    ),
                    "truncation": _optional(
                        _obj(
                            {
                                "status": {"enum": ["passed", "failed", "not_run"]},
                                "reason": {"type": "string"},
                                "dates": STRINGS,
                                "mismatch_count": COUNT,
                                "mismatches": _array(
                                    _obj(
                                        {
                                            "date": {"type": "string"},
                                            "column": {"type": "string"},
                                            "stored": {},
                                            "recomputed": {},
                                        }
                                    )
                                ),
                                "unexplained_columns": STRINGS,
                                "stored_missing": COUNT,
                            }
                        ),
                        # whether the recomputed rows were computed or reused from the cache
                        recomputed={"enum": ["computed", "reused"]},
                    ),
                    "lags": _obj(
                        {
                            "lags": COUNT,
                            "features": COUNT,
                            "tests": COUNT,
                            "z_limit": {"type": "number"},
                            "windows": {"type": "array", "items": STRINGS},
                            "note": {"type": "string"},
                            "flagged": _array(_obj({**LAG_EVIDENCE, "reason": {"type": "string"}})),
                            "closest": _array(_obj(LAG_EVIDENCE)),
                        }
                    ),
                    "screen": _obj(
                        {
                            "thresholds": _obj(
                                {
                                    k: {"type": "number"}
                                    for k in (
                                        "future_corr",
                                        "future_z",
                                        "future_margin",
                                        "min_windows",
                                        "identity_corr",
                                        "identity_ratio",
                                        "equal_share",
                                    )
                                }
                            ),
                            "windows": {"type": "number", "minimum": 0},
                            "correlation_rule_run": {"type": "boolean"},
                            "correlation_rule_features": COUNT,
                            "note": {"type": "string"},
                            "features_screened": COUNT,
                            "not_screened": STRINGS,
                            "suspects": _array(SCREENED),
                            "closest": _array(SCREENED),
                        }
                    ),
                    "canary": _obj(
                        {
                            "passed": {"type": "boolean"},
                            "planted": STRINGS,
                            "expected": STRINGS,
                            "caught": STRINGS,
                            "note": {"type": "string"},
                        }
                    ),
                }
            ),
        }
    ),
}

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[kind])


def schema_errors(value: Any, schema: Mapping[str, Any] = SCHEMA, path: str = "$") -> list[str]:
    """Every violation of ``schema`` in ``value``, each naming its JSON path; [] when valid."""
    errors: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, k) for k in kinds):
            return [
                f"{path}: expected {' or '.join(kinds)}, got {type(value).__name__} {value!r:.60}"
            ]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} is above the maximum {schema['maximum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}: required property {key!r} is missing")
        for key, item in value.items():
            if key in props:
                errors += schema_errors(item, props[key], f"{path}.{key}")
            elif schema.get("additionalProperties", True) is False:
                errors.append(f"{path}: unexpected property {key!r}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{i}]")
    return errors


class DiagnosticsSchemaError(ValueError):
    """A diagnostics payload does not match its schema; the message lists the violations."""


def validate_diagnostics(payload: Any, source: str = "diagnostics") -> None:
    errors = schema_errors(payload)
    if errors:
        shown = "; ".join(errors[:10]) + (
            f"; ... {len(errors) - 10} more" if len(errors) > 10 else ""
        )
        raise DiagnosticsSchemaError(f"{source}: does not match the diagnostics schema: {shown}")
