"""Fitting: the fit loop with early stopping and warm start, and the walk-forward.

See the package docstring for the training, warm start and final model.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cbi_pipeline.core.models.neural.files import NeuralModel
from cbi_pipeline.core.models.neural.network import (
    Architecture,
    SequenceRegressor,
    autocast,
    autocast_dtype,
    fit_scaler,
    precision_name,
    predict_scaled,
    sequence_windows,
)
from cbi_pipeline.core.models.neural.spec import NeuralSpec, NeuralTrainingError, resolve_device
from cbi_pipeline.core.models.trees import select_features
from cbi_pipeline.core.progress import Progress
from cbi_pipeline.core.walkforward import TrainingData, normalised_weights

_INIT_LOCK = threading.Lock()


# --- determinism -------------------------------------------------------------------------------


@contextlib.contextmanager
def torch_runtime(spec: NeuralSpec, device: str) -> Iterator[None]:
    """Fixed threads and deterministic algorithms for the duration; previous settings restored.

    On the CPU every algorithm used here has a deterministic implementation; on accelerators
    deterministic mode only warns where an op has none (cuDNN RNNs are deterministic when
    ``cudnn.deterministic`` is set).
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.set_num_threads(spec.threads)
    torch.use_deterministic_algorithms(True, warn_only=device != "cpu")
    if device == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


# --- fitting -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitHistory:
    """Weighted MSE per epoch (scaled label units) and the epoch whose weights were kept.

    ``validation_loss[0]`` is measured before training (epoch 0: the zero head's random walk or
    drift, or the warm-started weights); ``best_epoch`` may be 0 when no epoch improved on it.
    """

    train_loss: tuple[float, ...]
    validation_loss: tuple[float, ...]
    best_epoch: int
    seconds: float

    @property
    def epochs(self) -> int:
        return len(self.train_loss)


def warm_state(
    init: NeuralModel, arch: Architecture, features: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """The previous model's weights, its first-layer input columns remapped to ``features``."""
    if (init.arch.family, init.arch.hidden_size, init.arch.num_layers) != (
        arch.family,
        arch.hidden_size,
        arch.num_layers,
    ):
        raise NeuralTrainingError(
            f"warm start from a {init.arch.as_dict()} model into {arch.as_dict()}"
        )
    state = {k: v.detach().to("cpu").clone() for k, v in init.module.state_dict().items()}
    old = state["rnn.weight_ih_l0"]
    new = torch.zeros(old.shape[0], len(features), dtype=old.dtype)
    previous = {name: i for i, name in enumerate(init.features)}
    for j, name in enumerate(features):
        if name in previous:
            new[:, j] = old[:, previous[name]]
    state["rnn.weight_ih_l0"] = new
    return state


def fit_neural_model(
    data: TrainingData,
    spec: NeuralSpec,
    fit_rows: np.ndarray,
    validation_rows: np.ndarray | None,
    *,
    epochs: int | None = None,
    init: NeuralModel | None = None,
    progress: Progress | None = None,
    label: str = "",
) -> tuple[NeuralModel, FitHistory]:
    """Select features and fit the scaler on ``fit_rows``; train with early stopping on
    ``validation_rows`` or, without them, for exactly ``epochs`` epochs (under ``torch_runtime``).
    """
    if validation_rows is None and (epochs is None or epochs < 0):
        raise NeuralTrainingError(
            f"a fit without validation needs the number of epochs (>= 0), got {epochs!r}"
        )
    device = resolve_device(spec.device)
    with torch_runtime(spec, device):
        return _fit(data, spec, device, fit_rows, validation_rows, epochs, init, progress, label)


def _fit(
    data: TrainingData,
    spec: NeuralSpec,
    device: str,
    fit_rows: np.ndarray,
    validation_rows: np.ndarray | None,
    epochs: int | None,
    init: NeuralModel | None,
    progress: Progress | None,
    label: str,
) -> tuple[NeuralModel, FitHistory]:
    start = time.perf_counter()
    dtype = autocast_dtype(device, spec.mixed_precision)
    fit_rows = np.asarray(fit_rows, dtype=np.int64)
    y_fit = data.label[fit_rows]
    columns = select_features(data.X[fit_rows], y_fit, spec.max_features)
    features = tuple(data.features[c] for c in columns)
    scaler = fit_scaler(data.X[np.ix_(fit_rows, columns)], y_fit, spec.clip, spec.center_target)
    last = int(
        fit_rows.max() if validation_rows is None else max(fit_rows.max(), validation_rows.max())
    )
    Z = scaler.transform(data.X[: last + 1][:, columns])

    arch = Architecture(spec.family, len(features), spec.hidden_size, spec.num_layers, spec.dropout)
    with _INIT_LOCK:  # the global RNG: folds fitted in parallel threads must not interleave here
        torch.manual_seed(spec.seed)
        module = SequenceRegressor(arch)
    if init is not None:
        module.load_state_dict(warm_state(init, arch, features))
    module.to(device)
    model = NeuralModel(
        arch, spec.sequence_length, features, scaler, module, device, precision_name(dtype)
    )
    x = torch.from_numpy(sequence_windows(Z, fit_rows, spec.sequence_length)).to(device)
    y = torch.as_tensor(
        (y_fit - scaler.target_mean) / scaler.target_std, dtype=torch.float32, device=device
    )
    w = torch.as_tensor(
        normalised_weights(data.weight[fit_rows]), dtype=torch.float32, device=device
    )
    if validation_rows is not None:
        vrows = np.asarray(validation_rows, dtype=np.int64)
        vx = torch.from_numpy(sequence_windows(Z, vrows, spec.sequence_length)).to(device)
        vy = (data.label[vrows] - scaler.target_mean) / scaler.target_std
        vw = normalised_weights(data.weight[vrows])

    optimizer = torch.optim.Adam(
        module.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay
    )
    scaler_amp = torch.amp.GradScaler(device, enabled=dtype == torch.float16)
    generator = torch.Generator().manual_seed(spec.seed)
    n = int(fit_rows.size)
    max_epochs = spec.max_epochs if epochs is None else epochs
    train_curve: list[float] = []
    val_curve: list[float] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None

    def validate(epoch: int) -> str:
        """Weighted validation MSE (scaled units); keeps the best epoch's weights."""
        nonlocal best
        scaled = predict_scaled(module, vx, device, model.precision).astype(np.float64)
        loss = float(np.sum(vw * (scaled - vy) ** 2) / np.sum(vw))
        val_curve.append(loss)
        if best is None or loss < best[0]:
            best = (loss, epoch, {k: v.detach().clone() for k, v in module.state_dict().items()})
        return f", validation loss {loss:.5f} (best {best[0]:.5f} at epoch {best[1]})"

    if validation_rows is not None:
        message = validate(0)
        if progress is not None:
            progress(f"{label} epoch 0/{max_epochs} (before training){message}".strip())
    for epoch in range(1, max_epochs + 1):
        module.train()
        order = torch.randperm(n, generator=generator).to(device)
        total = torch.zeros((), device=device)
        for s in range(0, n, spec.batch_size):
            idx = order[s : s + spec.batch_size]
            with autocast(device, dtype):
                pred = module(x[idx])
            weighted = (w[idx] * (pred.float() - y[idx]) ** 2).sum()
            loss = weighted / idx.numel()
            optimizer.zero_grad(set_to_none=True)
            scaler_amp.scale(loss).backward()
            scaler_amp.unscale_(optimizer)
            nn.utils.clip_grad_norm_(module.parameters(), spec.grad_clip)
            scaler_amp.step(optimizer)
            scaler_amp.update()
            total += weighted.detach()
        train_curve.append(float(total) / n)
        message = f"{label} epoch {epoch}/{max_epochs}: train loss {train_curve[-1]:.5f}"
        if validation_rows is not None:
            message += validate(epoch)
        if progress is not None:
            progress(message.strip())
        if best is not None and epoch - best[1] >= spec.patience:
            break
    best_epoch = len(train_curve)
    if best is not None:
        module.load_state_dict(best[2])
        best_epoch = best[1]
    module.eval()
    history = FitHistory(
        tuple(train_curve), tuple(val_curve), best_epoch, time.perf_counter() - start
    )
    return model, history
