"""Block-wise rolling correlations of daily returns (DESIGN §1, §6), built so that a later as-of
date extends an earlier one exactly.

What is computed, per as-of date and for windows of 90, 180 and 365 trading days:

- the rolling Pearson correlation of every pair of series *within* a feature block (never the full
  N x N matrix) and of the key pairs (the target against VIX, DXY, palm oil and the crush margin,
  plus configured extras), as daily series (stored in full for the key pairs, for the last
  ``history_days`` rows for the others, with every pair's value at the as-of date);
- the top-k candidates of each block by |correlation with the target's returns| over the history
  up to the as-of date, and the cross-block correlations between those candidates at the as-of date;
- one correlation matrix per block and regime of the regime calendar (all days of the regime up to
  the as-of date).

The modules, in the order of the flow:

- ``spec``: what is computed (``CorrelationSpec``) and the series correlated (``CorrSeries``);
- ``pairs``: the series of a panel, their levels and returns, the pair set, feature names, catalog
  and regime index;
- ``state``: the cache of one as-of date, the state that extends it, the panel rows as arrays and
  the checks of an extension;
- ``kernel``: the numba kernels (the only module that imports numba);
- ``frames``: the frames of a partition, from the kernel's arrays;
- ``build``: the cache of one as-of date, built in full or by extending an earlier one.
"""
