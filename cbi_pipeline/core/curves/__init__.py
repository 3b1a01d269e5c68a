"""Futures curves: one row per (date, symbol, contract), validated, and the roll of a held front
contract into a continuous, ratio back-adjusted series.

The modules, in the order of the flow:

- ``contract``: the raw curve contract (``normalize_curve``, ``combine_curves``) and the contract
  code (root + month letter + 4-digit year, ``delivery_month``);
- ``roll``: the roll rule (``RollSpec``, ``first_notice_day``), the held contract per day
  (``roll_schedule``), the continuous series (``continuous_series``) and its rolls
  (``roll_table``).

Pure: no files, no environment, no orchestrator; the caller reads the files and passes frames.
"""
