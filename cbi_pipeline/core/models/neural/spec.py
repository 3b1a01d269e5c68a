"""A neural family's settings (``NeuralSpec``), the family's errors and its devices.

torch-free, so a spec can be built and checked without importing torch; ``resolve_device``
imports it when called.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cbi_pipeline.core.vocabulary import NEURAL_FAMILIES

DEVICES = ("auto", "cpu", "cuda", "mps")
# The stored final model: weights (state_dict) and the JSON config that names them.
WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "model.json"
CONFIG_FORMAT = "cbi-neural-v1"


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
    threads: torch CPU threads; seed: torch seed of every fit; warm_start: see the package doc.
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


def resolve_device(requested: str) -> str:
    """``auto`` -> cuda, else mps, else cpu; an explicit device that is absent is an error."""
    import torch  # lazy: building and checking a spec must not import torch

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
