"""The fitted model (``NeuralModel``) and its files: the JSON config and the weights.

Weights are stored as a ``state_dict`` (``torch.save``) and a JSON config (architecture,
features, scaler statistics, sequence length); loading rebuilds the module from the config and
reads the weights with ``weights_only=True``, checking every tensor's name and shape.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cbi_pipeline.core.models.neural.network import (
    Architecture,
    Scaler,
    SequenceRegressor,
    predict_scaled,
    sequence_windows,
)
from cbi_pipeline.core.models.neural.spec import (
    CONFIG_FORMAT,
    WEIGHTS_FILE,
    NeuralModelFileError,
    NeuralTrainingError,
)
from cbi_pipeline.core.vocabulary import NEURAL_FAMILIES
from cbi_pipeline.core.walkforward import TrainingData

# --- the fitted model --------------------------------------------------------------------------


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
