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

Weights are stored as a ``state_dict`` (``torch.save``) and a JSON config (architecture,
features, scaler statistics, sequence length); loading rebuilds the module from the config and
reads the weights with ``weights_only=True``, checking every tensor's name and shape.

torch is imported at module level: import this module lazily (nothing on the Dagster definition
path does), the web UI re-imports every module on reload.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from cbi_pipeline.core.models.trees import select_features
from cbi_pipeline.core.walkforward import (
    Fold,
    FoldFit,
    TrainingData,
    WalkForwardResult,
    normalised_weights,
    run_walk_forward,
)

NEURAL_FAMILIES = ("lstm", "gru")
WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "model.json"
CONFIG_FORMAT = "cbi-neural-v1"
DEVICES = ("auto", "cpu", "cuda", "mps")
_PREDICT_CHUNK = 4096

Progress = Callable[[str], None]


class NeuralTrainingError(ValueError):
    """A neural family was asked for something it cannot do; the message says what."""


class NeuralModelFileError(ValueError):
    """A stored neural model does not match its config; the message names the file."""


@dataclass(frozen=True)
class NeuralSpec:
    """A neural family's settings for one horizon (defaults: ``get_config_for_model``).

    sequence_length, batch_size: from the hardware config (RAM-scaled, DESIGN §4).
    hidden_size, num_layers, dropout: the recurrent network (dropout also before the head).
    learning_rate, weight_decay, grad_clip: Adam and the gradient-norm clip.
    max_epochs, patience: early stopping on the fold's validation slice.
    max_features: features kept per fold by |correlation| with the label on its fit rows; 0 = all.
    clip: scaled features are clipped to ±clip.
    center_target: False: the label is scaled about 0, so the zero-initialised head predicts no
        change (the random walk) before training; True: about the fit rows' mean (the drift).
    device: auto, cpu, cuda or mps; mixed_precision: autocast (bf16 or fp16) on cuda/mps.
    threads: torch CPU threads; seed: torch seed of every fit; warm_start: see the module doc.
    """

    family: str
    sequence_length: int = 30
    batch_size: int = 128
    hidden_size: int = 32
    num_layers: int = 1
    dropout: float = 0.0
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    max_epochs: int = 40
    patience: int = 3
    max_features: int = 32
    clip: float = 5.0
    center_target: bool = False
    device: str = "auto"
    mixed_precision: bool = True
    threads: int = 1
    seed: int = 42
    warm_start: bool = False

    def __post_init__(self) -> None:
        if self.family not in NEURAL_FAMILIES:
            raise NeuralTrainingError(
                f"unknown neural family {self.family!r}; expected one of {NEURAL_FAMILIES}"
            )
        for name in (
            "sequence_length",
            "batch_size",
            "hidden_size",
            "num_layers",
            "max_epochs",
            "patience",
            "threads",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise NeuralTrainingError(
                    f"{self.family} {name} must be an integer >= 1, got {value!r}"
                )
        if isinstance(self.max_features, bool) or self.max_features < 0:
            raise NeuralTrainingError(
                f"{self.family} max_features must be >= 0 (0 = all), got {self.max_features!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise NeuralTrainingError(
                f"{self.family} dropout must be in [0, 1), got {self.dropout}"
            )
        for name in ("learning_rate", "grad_clip", "clip"):
            if not getattr(self, name) > 0:
                raise NeuralTrainingError(
                    f"{self.family} {name} must be > 0, got {getattr(self, name)!r}"
                )
        if self.weight_decay < 0:
            raise NeuralTrainingError(
                f"{self.family} weight_decay must be >= 0, got {self.weight_decay}"
            )
        if self.device not in DEVICES:
            raise NeuralTrainingError(
                f"{self.family} device {self.device!r} unknown; expected one of {DEVICES}"
            )


_SPEC_KEYS = (
    "sequence_length",
    "batch_size",
    "hidden_size",
    "num_layers",
    "dropout",
    "learning_rate",
    "weight_decay",
    "grad_clip",
    "max_epochs",
    "patience",
    "max_features",
    "clip",
    "center_target",
    "device",
    "mixed_precision",
    "seed",
    "warm_start",
)


def neural_spec(
    family: str, hyper: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> NeuralSpec:
    """A spec from ``get_config_for_model(family, ...)`` and explicit overrides (None = keep)."""
    values: dict[str, Any] = {k: hyper[k] for k in _SPEC_KEYS if k in hyper}
    if "num_threads" in hyper:
        values["threads"] = hyper["num_threads"]
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _SPEC_KEYS and key != "threads":
            raise NeuralTrainingError(
                f"unknown {family} setting {key!r}; expected one of {sorted(_SPEC_KEYS)}"
            )
        values[key] = value
    return NeuralSpec(family=family, **values)


def spec_parameters(spec: NeuralSpec) -> dict[str, Any]:
    """The spec as flat parameters for the manifest and MLflow."""
    return {k: getattr(spec, k) for k in (*_SPEC_KEYS, "threads")}


# --- device, precision and determinism -------------------------------------------------------


def resolve_device(requested: str) -> str:
    """``auto`` -> cuda, else mps, else cpu; an explicit device that is absent is an error."""
    cuda = torch.cuda.is_available()
    mps_backend = getattr(torch.backends, "mps", None)
    mps = mps_backend is not None and mps_backend.is_available()
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if requested == "cuda" and not cuda:
        raise NeuralTrainingError("device 'cuda' requested but torch sees no CUDA device")
    if requested == "mps" and not mps:
        raise NeuralTrainingError("device 'mps' requested but torch sees no MPS device")
    if requested not in DEVICES:
        raise NeuralTrainingError(f"device {requested!r} unknown; expected one of {DEVICES}")
    return requested


def autocast_dtype(device: str, mixed_precision: bool) -> torch.dtype | None:
    """bf16 on CUDA cards that support it, else fp16 on cuda/mps; None (fp32) on the CPU."""
    if not mixed_precision or device == "cpu":
        return None
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


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


# --- scaling and sequences ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Scaler:
    """Per-feature mean/std (float32), the clip, and the label's mean/std, from one set of rows."""

    mean: np.ndarray
    std: np.ndarray
    clip: float
    target_mean: float
    target_std: float

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Standardise, clip to ±clip, missing -> 0 (float32)."""
        Z = (np.asarray(X, dtype=np.float32) - self.mean) / self.std
        np.clip(Z, -self.clip, self.clip, out=Z)
        return np.nan_to_num(Z, nan=0.0).astype(np.float32, copy=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "clip": self.clip,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> Scaler:
        return cls(
            np.asarray(payload["mean"], dtype=np.float32),
            np.asarray(payload["std"], dtype=np.float32),
            float(payload["clip"]),
            float(payload["target_mean"]),
            float(payload["target_std"]),
        )


def fit_scaler(X: np.ndarray, y: np.ndarray, clip: float, center_target: bool = False) -> Scaler:
    """Scaler statistics from exactly the rows given (NaN-aware; flat or empty columns get std 1).

    The label is divided by its root mean square about 0 (``center_target=False``: a zero output
    means no change) or standardised about its mean (``center_target=True``: zero = the mean).
    """
    X = np.asarray(X, dtype=np.float64)
    finite = np.isfinite(X)
    count = finite.sum(axis=0)
    x0 = np.where(finite, X, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, x0.sum(axis=0) / count, 0.0)
        var = np.where(finite, (X - mean) ** 2, 0.0).sum(axis=0) / count
    std = np.sqrt(var)
    std = np.where((count > 1) & np.isfinite(std) & (std > 1e-12 * (1 + np.abs(mean))), std, 1.0)
    y = np.asarray(y, dtype=np.float64)
    if y.size == 0 or not np.isfinite(y).all():
        raise NeuralTrainingError(
            f"the label must be finite on every scaled row; got {int((~np.isfinite(y)).sum())} "
            f"non-finite of {y.size}"
        )
    y_mean = float(y.mean()) if center_target else 0.0
    y_std = float(np.sqrt(np.mean((y - y_mean) ** 2)))
    return Scaler(
        mean.astype(np.float32),
        std.astype(np.float32),
        float(clip),
        y_mean,
        y_std if y_std > 0 else 1.0,
    )


def sequence_windows(Z: np.ndarray, rows: np.ndarray, length: int) -> np.ndarray:
    """``(len(rows), length, features)``: row ``t``'s window is ``Z[t - length + 1 : t + 1]``.

    Rows before the first one are zeros (missing after scaling). Built with a strided view and
    one gather; no row after ``t`` is ever read.
    """
    Z = np.asarray(Z, dtype=np.float32)
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= Z.shape[0]):
        raise NeuralTrainingError(f"window rows outside 0..{Z.shape[0] - 1}")
    padded = np.concatenate([np.zeros((length - 1, Z.shape[1]), np.float32), Z])
    view = sliding_window_view(padded, length, axis=0)  # (rows, features, length)
    return np.ascontiguousarray(view[rows].transpose(0, 2, 1))


# --- the network -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Architecture:
    family: str
    input_size: int
    hidden_size: int
    num_layers: int
    dropout: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
        }


class SequenceRegressor(nn.Module):
    """LSTM or GRU over the window, a linear head (zero at initialisation) on the last step."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        rnn = nn.LSTM if arch.family == "lstm" else nn.GRU
        self.rnn = rnn(
            arch.input_size,
            arch.hidden_size,
            num_layers=arch.num_layers,
            batch_first=True,
            dropout=arch.dropout if arch.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(arch.dropout)
        self.head = nn.Linear(arch.hidden_size, 1)
        # A zero head starts every fresh network at the scaled label's centre (see fit_scaler).
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(self.dropout(out[:, -1, :])).squeeze(-1)


@dataclass(frozen=True, eq=False)
class NeuralModel:
    """A fitted network with the features it reads (by name), its scaler and window length."""

    arch: Architecture
    sequence_length: int
    features: tuple[str, ...]
    scaler: Scaler
    module: SequenceRegressor
    device: str = "cpu"
    precision: str = "fp32"

    @property
    def family(self) -> str:
        return self.arch.family

    def _columns(self, data: TrainingData) -> np.ndarray:
        position = {name: i for i, name in enumerate(data.features)}
        missing = [f for f in self.features if f not in position]
        if missing:
            raise NeuralTrainingError(
                f"{self.family} model reads feature(s) {missing[:5]} that the data lacks"
            )
        return np.asarray([position[f] for f in self.features], dtype=np.int64)

    def predict(self, data: TrainingData, rows: np.ndarray) -> np.ndarray:
        """Predicted log returns at ``rows``; reads only rows up to the last one asked for."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return np.zeros(0)
        upto = int(rows.max()) + 1
        Z = self.scaler.transform(data.X[:upto][:, self._columns(data)])
        windows = sequence_windows(Z, rows, self.sequence_length)
        scaled = predict_scaled(self.module, windows, self.device, self.precision)
        return self.scaler.target_mean + self.scaler.target_std * scaled.astype(np.float64)

    def config(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON config stored beside the weights."""
        weights = self.weights_bytes()
        return {
            "format": CONFIG_FORMAT,
            "architecture": self.arch.as_dict(),
            "sequence_length": self.sequence_length,
            "features": list(self.features),
            "scaler": self.scaler.as_dict(),
            "weights_file": WEIGHTS_FILE,
            "weights_sha256": hashlib.sha256(weights).hexdigest(),
            "torch_version": torch.__version__,
            **dict(extra or {}),
        }

    def weights_bytes(self) -> bytes:
        """The ``state_dict`` (CPU tensors) as ``torch.save`` writes it."""
        buffer = io.BytesIO()
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.module.state_dict().items()}
        torch.save(state, buffer)
        return buffer.getvalue()


def _autocast(device: str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=dtype)


def _dtype_of(precision: str) -> torch.dtype | None:
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def predict_scaled(
    module: nn.Module, windows: np.ndarray | torch.Tensor, device: str, precision: str
) -> np.ndarray:
    """The network's outputs (scaled label units) for windows, in chunks, in eval mode."""
    module.eval()
    dtype = _dtype_of(precision)
    x_all = torch.from_numpy(windows) if isinstance(windows, np.ndarray) else windows
    out = []
    with torch.no_grad():
        for start in range(0, x_all.shape[0], _PREDICT_CHUNK):
            x = x_all[start : start + _PREDICT_CHUNK].to(device)
            with _autocast(device, dtype):
                out.append(module(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


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


def _warm_state(
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
    torch.manual_seed(spec.seed)
    module = SequenceRegressor(arch)
    if init is not None:
        module.load_state_dict(_warm_state(init, arch, features))
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
            with _autocast(device, dtype):
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


# --- walk-forward ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NeuralRun:
    """The walk-forward result, each fold's model history, and the final model."""

    result: WalkForwardResult
    histories: tuple[FitHistory, ...]
    final: NeuralModel
    final_history: FitHistory
    final_rows: np.ndarray
    device: str


def _rounded(values: tuple[float, ...]) -> list[float]:
    return [round(v, 6) for v in values]


def walk_forward_neural(
    data: TrainingData,
    folds: list[Fold],
    spec: NeuralSpec,
    progress: Progress | None = None,
) -> NeuralRun:
    """Out-of-fold predictions of one neural family on every fold (in order), then the final model."""
    device = resolve_device(spec.device)
    histories: list[FitHistory] = []
    previous: list[NeuralModel] = []

    def predict(d: TrainingData, fold: Fold) -> FoldFit:
        model, history = fit_neural_model(
            d,
            spec,
            fold.fit_rows,
            fold.validation_rows,
            init=previous[-1] if spec.warm_start and previous else None,
            progress=progress,
            label=f"{d.horizon} {spec.family} fold {fold.index + 1}/{len(folds)}",
        )
        previous[:] = [model]
        histories.append(history)
        info: dict[str, Any] = {
            "epochs": history.epochs,
            "best_epoch": history.best_epoch,
            "features": len(model.features),
            "validation_score": round(history.validation_loss[history.best_epoch], 8),
            "warm_start": bool(spec.warm_start and fold.index > 0),
            "train_loss_curve": _rounded(history.train_loss),
            "validation_loss_curve": _rounded(history.validation_loss),
        }
        return FoldFit(model.predict(d, fold.test_rows), info)

    with torch_runtime(spec, device):
        result = run_walk_forward(data, folds, spec.family, predict, progress)
        final_rows = np.flatnonzero(data.labelled)
        epochs = histories[-1].best_epoch
        final, final_history = fit_neural_model(
            data,
            spec,
            final_rows,
            None,
            epochs=epochs,
            init=previous[-1] if spec.warm_start else None,
            progress=progress,
            label=f"{data.horizon} {spec.family} final model",
        )
    if progress is not None:
        progress(
            f"{data.horizon} {spec.family} final model: {final_rows.size} labelled rows, "
            f"{epochs} epochs (the last fold's best epoch), {len(final.features)} features, "
            f"on {device} ({final.precision})"
        )
    return NeuralRun(result, tuple(histories), final, final_history, final_rows, device)


# --- stored models -----------------------------------------------------------------------------


def model_from_files(config: Mapping[str, Any], weights: bytes, source: str) -> NeuralModel:
    """Rebuild a model from its JSON config and ``state_dict`` bytes (``weights_only=True``).

    ``source`` names the files in every error: a wrong format, missing keys, or any tensor whose
    name or shape differs from what the config's architecture builds.
    """
    if config.get("format") != CONFIG_FORMAT:
        raise NeuralModelFileError(
            f"{source}: config format {config.get('format')!r}, expected {CONFIG_FORMAT!r}"
        )
    try:
        a = config["architecture"]
        arch = Architecture(
            str(a["family"]),
            int(a["input_size"]),
            int(a["hidden_size"]),
            int(a["num_layers"]),
            float(a["dropout"]),
        )
        features = tuple(str(f) for f in config["features"])
        scaler = Scaler.from_dict(config["scaler"])
        length = int(config["sequence_length"])
    except (KeyError, TypeError, ValueError) as exc:
        raise NeuralModelFileError(f"{source}: config lacks or mangles {exc}") from exc
    if arch.family not in NEURAL_FAMILIES:
        raise NeuralModelFileError(f"{source}: unknown family {arch.family!r}")
    if not (len(features) == arch.input_size == scaler.mean.size == scaler.std.size):
        raise NeuralModelFileError(
            f"{source}: {len(features)} features, input_size {arch.input_size}, "
            f"{scaler.mean.size} scaler means and {scaler.std.size} stds must all agree"
        )
    expected_sha = config.get("weights_sha256")
    if expected_sha is not None and hashlib.sha256(weights).hexdigest() != expected_sha:
        raise NeuralModelFileError(f"{source}: weights do not match the config's weights_sha256")
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise NeuralModelFileError(
            f"{source}: weights unreadable with weights_only=True ({type(exc).__name__}: {exc})"
        ) from exc
    module = SequenceRegressor(arch)
    wanted = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if not isinstance(state, dict):
        raise NeuralModelFileError(
            f"{source}: weights hold a {type(state).__name__}, not a state_dict"
        )
    got = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    if got != wanted or len(got) != len(state):
        missing = sorted(set(wanted) - set(got))
        extra = sorted(set(state) - set(wanted))
        shapes = {k: (got[k], wanted[k]) for k in set(got) & set(wanted) if got[k] != wanted[k]}
        raise NeuralModelFileError(
            f"{source}: weights do not fit the config's {arch.family} architecture: missing "
            f"{missing}, unexpected {extra}, shape (file, config) mismatches {shapes}"
        )
    module.load_state_dict(state, strict=True)
    module.eval()
    return NeuralModel(arch, length, features, scaler, module)
