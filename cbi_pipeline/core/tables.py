"""Tables for people: markdown for Dagster metadata, plain text for the terminal."""

from __future__ import annotations

import polars as pl


def _render(frame: pl.DataFrame, formatting: str) -> str:
    with pl.Config(
        tbl_formatting=formatting,  # type: ignore[arg-type]
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=400,
        fmt_str_lengths=200,
        float_precision=4,
    ):
        return str(frame)


def markdown_table(frame: pl.DataFrame) -> str:
    return _render(frame, "ASCII_MARKDOWN")


def text_table(frame: pl.DataFrame) -> str:
    return _render(frame, "ASCII_FULL_CONDENSED")
