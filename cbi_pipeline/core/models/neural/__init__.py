"""LSTM and GRU regressors on the purged walk-forward: h-step log returns from feature sequences.

Per fold, from the fold's fit rows only: the features are ranked by |Pearson correlation| with the
label and the top ``max_features`` kept (the tree families' selector); each kept feature is
standardised with its mean and standard deviation, clipped to ``±clip`` and missing values set to
0 (the mean); the label is divided by its root mean square (about 0, see ``center_target``). Row ``t``'s input is the window of the
``sequence_length`` scaled rows ending at ``t`` (rows before the first one count as missing), so
a window reaches back into older rows but never forward. Regime weights are scaled to mean 1
over the fit rows and weight each row's squared error (a batch's loss is the sum of weighted
errors over the batch size, so the weights keep their ratios across batches).

Training: Adam with gradient clipping, at most ``max_epochs`` epochs, early stopping on the
fold's validation slice (weighted MSE in scaled units) with ``patience`` epochs and the best
epoch's weights restored. The head starts at zero and the label is scaled about 0 by default, so
epoch 0 (before any training) predicts no change, the random walk; it is a candidate like any
epoch, and a fold whose validation never improves on it keeps it (``center_target`` scales the
label about its fit-row mean instead, making the drift the starting point). Every fold reseeds
torch and runs with deterministic algorithms and a fixed number of threads, so a rerun gives
identical predictions on the CPU.

Warm start (off by default): each fold starts from the previous fold's restored weights, the
input weights of features kept by both folds carried over by name and those of newly selected
features starting at zero. The previous fold saw only rows before its own test block, so nothing
from the future leaks in. On the sample data it carried over-fitted weights from fold to fold
(1m LSTM MAPE 7.3% against 6.05% from scratch) for no saving in epochs, hence off.

The final model (for forecasting) is fitted on every labelled row, features and scalers
recomputed there, for the number of epochs early stopping chose on the last fold (0 keeps the
starting point), starting from the last fold's weights when warm starting.

The package, by concern (import from the defining module; nothing is re-exported here):

- ``spec``: ``NeuralSpec`` and its settings, the errors, the devices; torch-free (only
  ``resolve_device`` imports torch, when called).
- ``network``: the scaler, the sequence windows, the recurrent module, autocast and precision.
- ``files``: ``NeuralModel`` (the fitted network and what it reads), its config and weights
  (``cbi-neural-v1``) and ``model_from_files``.
- ``fit``: the fit loop with early stopping and warm start, and the walk-forward.

torch is imported at module level by ``network``, ``files`` and ``fit``: import them lazily
(nothing on the Dagster definition path does), the web UI re-imports every module on reload.
"""
