"""The Keras autoencoder: built, seeded and fitted on normal transactions only.

Default shape 30-14-7-7-14-30 as in the demo, but with a linear output layer: inputs are
standardised and therefore often negative, which the demo's ReLU output could never reconstruct.
An L1 activity regulariser on the first encoder layer keeps the code sparse. TensorFlow places the
work on a GPU when it sees one; nothing here names a device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from services.common.avro.features import N_FEATURES

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class ModelConfig:
    """Everything that shapes the network and its fit (recorded in every version)."""

    hidden: tuple[int, ...] = (14, 7)
    """Encoder widths; the decoder mirrors them: (14, 7) gives 30-14-7-7-14-30."""
    l1: float = 1e-5
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    patience: int = 3
    seed: int = 42


def seed_everything(seed: int) -> None:
    """Python, numpy and TensorFlow seeds plus deterministic ops: same data → same model."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    # older TF builds lack it; the seeds still apply
    with contextlib.suppress(Exception):
        tf.config.experimental.enable_op_determinism()


def build_autoencoder(config: ModelConfig) -> keras.Model:
    """Encoder tanh/relu, decoder mirrored, linear reconstruction of the 30 inputs."""
    import keras

    if not config.hidden or any(width < 1 for width in config.hidden):
        raise ValueError("hidden sizes must be positive, e.g. (14, 7)")
    inputs = keras.Input(shape=(N_FEATURES,), name="features")
    x = keras.layers.Dense(
        config.hidden[0],
        activation="tanh",
        activity_regularizer=keras.regularizers.L1(config.l1),
        name="encoder_0",
    )(inputs)
    for i, width in enumerate(config.hidden[1:], start=1):
        x = keras.layers.Dense(width, activation="relu", name=f"encoder_{i}")(x)
    decoder = list(reversed(config.hidden))
    x = keras.layers.Dense(decoder[0], activation="tanh", name="decoder_0")(x)
    for i, width in enumerate(decoder[1:], start=1):
        x = keras.layers.Dense(width, activation="relu", name=f"decoder_{i}")(x)
    outputs = keras.layers.Dense(N_FEATURES, activation="linear", name="reconstruction")(x)
    model = keras.Model(inputs, outputs, name="fraud_autoencoder")
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mse")
    return model


def layer_sizes(config: ModelConfig) -> list[int]:
    """e.g. [30, 14, 7, 7, 14, 30] for the report."""
    return [N_FEATURES, *config.hidden, *reversed(config.hidden), N_FEATURES]


@dataclass
class FitResult:
    model: Any
    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int


class _EpochCallback:
    """Adapter so callers can show progress without importing keras themselves."""

    @staticmethod
    def make(on_epoch: Callable[[int, dict[str, float]], None]) -> Any:
        import keras

        class Reporter(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                on_epoch(epoch + 1, {k: float(v) for k, v in (logs or {}).items()})

        return Reporter()


def fit_autoencoder(
    x_train: np.ndarray,
    x_val: np.ndarray,
    config: ModelConfig,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
    """Fit on (preprocessed, normal-only) training rows; stop early on validation loss."""
    import keras

    seed_everything(config.seed)
    model = build_autoencoder(config)
    callbacks: list[Any] = []
    has_val = len(x_val) > 0
    if has_val:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.patience, restore_best_weights=True
            )
        )
    if on_epoch is not None:
        callbacks.append(_EpochCallback.make(on_epoch))
    history = model.fit(
        x_train,
        x_train,
        epochs=config.epochs,
        batch_size=config.batch_size,
        validation_data=(x_val, x_val) if has_val else None,
        shuffle=True,
        callbacks=callbacks,
        verbose=0,
    )
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    monitor: Sequence[float] = hist.get("val_loss") or hist.get("loss", [])
    best = int(np.argmin(monitor)) + 1 if len(monitor) else 0
    return FitResult(
        model=model, history=hist, epochs_run=len(hist.get("loss", [])), best_epoch=best
    )
