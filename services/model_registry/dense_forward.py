"""The autoencoder's forward pass in numpy, for models that are a plain chain of Dense layers.

The scorer calls its model once per batch, and when it is caught up a batch holds a handful of
records (docs/latency.md): a traced TensorFlow call then costs ≈ 0.5 ms on a quiet machine and
several under load, whatever the batch size, against ≈ 20 µs for the same five small matrix
products in numpy (and it stays faster up to the scorer's 10,000-record batches: 1.6 against
2.6 ms there). The trainer's autoencoder is such a chain (`services/trainer/model.py`), so
its versions score this way; any other model (another layer, another activation, a
non-float32 policy) has no `DenseChain` and keeps the TensorFlow call, which is also the exact
slow path the tests compare this one with.

A chain is taken only when its output on a probe batch matches the Keras model's, so a layer
list that reads as a chain but is wired otherwise is refused rather than scored wrongly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0, out=x)


def _tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x, out=x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # 1 / (1 + exp(-x)) without overflow warnings for large |x|: exp of a non-positive value
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _linear(x: np.ndarray) -> np.ndarray:
    return x


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": _linear,
    "relu": _relu,
    "tanh": _tanh,
    "sigmoid": _sigmoid,
}
PROBE_ROWS = 64
PROBE_TOLERANCE = 1e-4
"""How closely the chain must reproduce the model on the probe (float32 sums in another order
differ in the last bits; a mis-wired chain differs in the first)."""


@dataclass(frozen=True)
class DenseLayer:
    kernel: np.ndarray
    bias: np.ndarray | None
    activation: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class DenseChain:
    """Dense layers applied one after another: `x @ kernel + bias`, then the activation."""

    layers: Sequence[DenseLayer]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The model's output for float32 rows [n, inputs]."""
        h = x
        for layer in self.layers:
            h = h @ layer.kernel
            if layer.bias is not None:
                h += layer.bias
            h = layer.activation(h)
        return h

    @classmethod
    def from_keras(cls, model: keras.Model) -> DenseChain | None:
        """The chain of `model`, or None when it is not one this module can run exactly."""
        layers = _dense_layers(model)
        if layers is None:
            return None
        chain = cls(layers)
        return chain if _matches(chain, model) else None


def _dense_layers(model: Any) -> list[DenseLayer] | None:
    import keras

    if len(getattr(model, "inputs", None) or [None]) != 1:
        return None
    found: list[DenseLayer] = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if type(layer) is not keras.layers.Dense or layer.compute_dtype != "float32":
            return None
        activation = ACTIVATIONS.get(getattr(layer.activation, "__name__", ""))
        if activation is None or layer.kernel.dtype != "float32":
            return None
        bias = np.asarray(layer.bias.numpy(), dtype=np.float32) if layer.use_bias else None
        kernel = np.ascontiguousarray(layer.kernel.numpy(), dtype=np.float32)
        found.append(DenseLayer(kernel, bias, activation))
    return found or None


def _matches(chain: DenseChain, model: Any) -> bool:
    inputs = chain.layers[0].kernel.shape[0]
    probe = np.random.default_rng(0).normal(scale=3.0, size=(PROBE_ROWS, inputs))
    probe = probe.astype(np.float32)
    try:
        expected = np.asarray(model(probe, training=False), dtype=np.float32)
        got = chain(probe)
    except (ValueError, TypeError):  # shapes that do not chain
        return False
    return got.shape == expected.shape and bool(
        np.allclose(got, expected, rtol=PROBE_TOLERANCE, atol=PROBE_TOLERANCE)
    )
