"""The numpy forward pass of Dense chains (`services/model_registry/dense_forward.py`) against
the exact slow path, the traced TensorFlow call: the same errors and parts for any chain the
module accepts, and no chain (so the TensorFlow call) for models it cannot run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from services.common.avro.features import N_FEATURES
from services.model_registry.dense_forward import ACTIVATIONS, DenseChain
from services.model_registry.preprocessing import Preprocessing
from services.model_registry.registry import KerasLoadedModel
from services.trainer.model import ModelConfig, build_autoencoder

# keras is imported inside the tests: TensorFlow loaded before grpc_tools' protoc (which the
# protobuf tests load at collection) aborts the test process that holds both
if TYPE_CHECKING:
    import keras

TOLERANCE = 1e-5
finite_rows = st.integers(1, 40).flatmap(
    lambda n: arrays(
        np.float32,
        (n, N_FEATURES),
        elements=st.floats(-50, 50, width=32, allow_nan=False, allow_infinity=False),
    )
)


def loaded(model: keras.Model, error_clip: float | None = None) -> KerasLoadedModel:
    pre = Preprocessing.fit(np.random.default_rng(0).normal(size=(50, N_FEATURES)))
    return KerasLoadedModel(
        "v", Path("."), model, pre, 1.0, {"threshold": 1.0, "rule": "test"}, error_clip
    )


def chain_model(widths: list[int], activations: list[str], biases: list[bool]) -> keras.Model:
    import keras

    layers: list[keras.layers.Layer] = [keras.Input((N_FEATURES,))]
    for width, activation, bias in zip(widths, activations, biases, strict=True):
        layers.append(keras.layers.Dense(width, activation=activation, use_bias=bias))
    layers.append(keras.layers.Dense(N_FEATURES))
    return keras.Sequential(layers)


def assert_same_as_traced(model: KerasLoadedModel, rows: np.ndarray) -> None:
    errors, parts = model.errors_and_parts_preprocessed(rows)
    traced_errors, traced_parts = model.errors_and_parts_traced(rows)
    np.testing.assert_allclose(errors, traced_errors, rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_allclose(parts, traced_parts, rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_array_equal(model.errors_preprocessed(rows), errors)


def test_the_trainers_autoencoder_scores_in_numpy_as_tensorflow_does() -> None:
    model = loaded(build_autoencoder(ModelConfig()), error_clip=3.0)
    assert model.dense_chain is not None and len(model.dense_chain.layers) == 5
    rows = np.random.default_rng(1).normal(scale=4.0, size=(500, N_FEATURES)).astype(np.float32)
    assert_same_as_traced(model, rows)
    assert len(model.errors_preprocessed(rows[:0])) == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(1, 12), st.sampled_from(sorted(ACTIVATIONS)), st.booleans()),
        min_size=0,
        max_size=3,
    ),
    finite_rows,
    st.sampled_from([None, 0.5, 3.0]),
)
def test_any_accepted_chain_matches_the_traced_call(
    spec: list[tuple[int, str, bool]], rows: np.ndarray, error_clip: float | None
) -> None:
    widths, activations, biases = (
        (list(column) for column in zip(*spec, strict=True)) if spec else ([], [], [])
    )
    import keras

    keras.utils.set_random_seed(len(spec))
    model = loaded(chain_model(widths, activations, biases), error_clip)
    assert model.dense_chain is not None
    assert_same_as_traced(model, rows)


def test_models_it_cannot_run_keep_the_traced_call() -> None:
    import keras

    keras.utils.set_random_seed(2)
    inputs = keras.Input((N_FEATURES,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    skip = keras.layers.Add()([keras.layers.Dense(N_FEATURES)(hidden), inputs])
    others = [
        keras.Model(inputs, skip),  # a skip connection
        chain_model([8], ["gelu"], [True]),  # an activation it does not know
        keras.Sequential(
            [
                keras.Input((N_FEATURES,)),
                keras.layers.Dense(8),
                keras.layers.Dropout(0.2),
                keras.layers.Dense(N_FEATURES),
            ]
        ),
    ]
    rows = np.random.default_rng(3).normal(size=(20, N_FEATURES)).astype(np.float32)
    for other in others:
        assert DenseChain.from_keras(other) is None
        model = loaded(other)
        assert model.dense_chain is None
        assert_same_as_traced(model, rows)
