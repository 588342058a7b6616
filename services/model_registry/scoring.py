"""Champions other than the plain autoencoder, scored in the scorer's one compiled batch call.

A version's champion is one of:
* `autoencoder` — the mission's model (KerasLoadedModel; versions without `scoring.json`);
* `isolation_forest` — the forest's anomaly score 2^(-mean path length / c(max_samples));
* `ensemble` — the z-average of the autoencoder's log error and the forest's anomaly score, each
  standardised by its mean and standard deviation on the normal validation rows;
* `supervised` — a Keras classifier's fraud probability.

The forest is not scikit-learn at scoring time (its per-tree Python loop would cost more than
the network): `CompactForest` stores the trees as complete binary trees in flat float32 / int32
arrays (heap order: the children of node i are 2i+1 and 2i+2; a leaf shallower than the tree
depth sends everything left down a chain that ends in its own value), and one numba-compiled
loop walks a whole batch through every tree, 16 rows at a time so their independent loads
overlap, then combines the ensemble. Thresholds are rounded down to float32 so `x <= t` decides
exactly as scikit-learn's float32 tree walk against float64 thresholds does. The ensemble's
forest is smaller than the IsolationForest candidate's (fewer trees, smaller subsamples, so
shallower) because it runs on every record next to the network (see the trainer's candidates).

Files of a version (all covered by its manifest): `scoring.json` (kind and standardisers),
`forest.npz` (the flat arrays), `supervised.keras`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numba
import numpy as np

from services.common.avro.features import N_FEATURES
from services.model_registry.preprocessing import Preprocessing

if TYPE_CHECKING:
    import keras

SCORING_FILE = "scoring.json"
FOREST_FILE = "forest.npz"
SUPERVISED_FILE = "supervised.keras"
CANDIDATE_FILES = (SCORING_FILE, FOREST_FILE, SUPERVISED_FILE)
KINDS = ("autoencoder", "isolation_forest", "ensemble", "supervised")
MAX_TREES = 512
MAX_DEPTH = 16
LOG_EPS = 1e-9
"""Floor under the autoencoder's error before the log (an error of 0 would be -inf)."""


def _average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): the average path length of an unsuccessful BST search among n points (as in
    scikit-learn's IsolationForest)."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _floor32(values: np.ndarray) -> np.ndarray:
    """The largest float32 not above each float64 value (so `x32 <= t32` iff `x32 <= t64`)."""
    out = values.astype(np.float32)
    above = out.astype(np.float64) > values
    out[above] = np.nextafter(out[above], np.float32(-np.inf))
    return out


@dataclass(frozen=True)
class CompactForest:
    """Isolation trees as complete binary trees in flat arrays: trees x (2^depth - 1) internal
    nodes (feature, threshold) and trees x 2^depth leaf values (path length to the leaf)."""

    feature: np.ndarray  # int32 [trees, 2^depth - 1]
    threshold: np.ndarray  # float32 [trees, 2^depth - 1]
    leaf_value: np.ndarray  # float32 [trees, 2^depth]
    depth: int
    normaliser: float  # trees * c(max_samples)

    @property
    def trees(self) -> int:
        return int(self.feature.shape[0])

    @classmethod
    def from_sklearn(cls, forest: Any) -> CompactForest:
        """Flatten a fitted sklearn IsolationForest (max_features=1.0)."""
        if forest._max_features != forest.n_features_in_:
            raise ValueError("CompactForest needs max_features=1.0 (no feature subsampling)")
        trees = [est.tree_ for est in forest.estimators_]
        depth = max(1, max(t.max_depth for t in trees))
        if depth > MAX_DEPTH or len(trees) > MAX_TREES:
            raise ValueError(f"forest too large to compact: {len(trees)} trees, depth {depth}")
        internal, leaves = 2**depth - 1, 2**depth
        feature = np.zeros((len(trees), internal), dtype=np.int32)
        threshold = np.full((len(trees), internal), np.inf, dtype=np.float32)
        leaf_value = np.zeros((len(trees), leaves), dtype=np.float32)
        for i, tree in enumerate(trees):
            _fill(tree, feature[i], threshold[i], leaf_value[i], depth)
        c = float(_average_path_length(np.array([forest._max_samples]))[0])
        return cls(feature, threshold, leaf_value, depth, len(trees) * c)

    def path_lengths_exact(self, x: np.ndarray) -> np.ndarray:
        """Mean-free total path length per row, walked row by row (the slow reference)."""
        x = np.asarray(x, dtype=np.float32)
        total = np.zeros(len(x), dtype=np.float64)
        for r in range(len(x)):
            for t in range(self.trees):
                node = 0
                for _ in range(self.depth):
                    go_right = x[r, self.feature[t, node]] > self.threshold[t, node]
                    node = 2 * node + 1 + int(go_right)
                total[r] += self.leaf_value[t, node - (2**self.depth - 1)]
        return total

    def scores_exact(self, x: np.ndarray) -> np.ndarray:
        """Anomaly score 2^(-E[h(x)]/c) = -sklearn's score_samples (slow reference)."""
        return np.asarray(2.0 ** (-self.path_lengths_exact(x) / self.normaliser))

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            feature=self.feature,
            threshold=self.threshold,
            leaf_value=self.leaf_value,
            meta=np.array([self.depth, self.normaliser], dtype=np.float64),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactForest:
        """Parse and check a forest.npz (no pickles; shapes and indices must be consistent)."""
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            feature = npz["feature"].astype(np.int32)
            threshold = npz["threshold"].astype(np.float32)
            leaf_value = npz["leaf_value"].astype(np.float32)
            depth, normaliser = (float(v) for v in npz["meta"])
        depth_i = int(depth)
        trees = feature.shape[0] if feature.ndim == 2 else -1
        ok = (
            1 <= depth_i <= MAX_DEPTH
            and 1 <= trees <= MAX_TREES
            and feature.shape == (trees, 2**depth_i - 1) == threshold.shape
            and leaf_value.shape == (trees, 2**depth_i)
            and feature.min() >= 0
            and feature.max() < N_FEATURES
            and normaliser > 0
        )
        if not ok:
            raise ValueError("forest.npz is malformed")
        return cls(feature, threshold, leaf_value, depth_i, normaliser)


def _fill(
    tree: Any, feature: np.ndarray, threshold: np.ndarray, leaf_value: np.ndarray, depth: int
) -> None:
    """Lay one sklearn tree out in heap order (iteratively: trees are at most MAX_DEPTH deep)."""
    node_depth = tree.compute_node_depths()  # root = 1
    apl = _average_path_length(tree.n_node_samples)
    stack = [(0, 0, 0)]  # (sklearn node, heap position, level)
    while stack:
        node, pos, level = stack.pop()
        left, right = tree.children_left[node], tree.children_right[node]
        if left == -1:  # a leaf: chain left down to the last level
            while level < depth:
                pos, level = 2 * pos + 1, level + 1  # threshold stays +inf: always left
            leaf_value[pos - (2**depth - 1)] = node_depth[node] + apl[node] - 1.0
            continue
        feature[pos] = tree.feature[node]
        threshold[pos] = _floor32(np.array([tree.threshold[node]]))[0]
        stack.append((left, 2 * pos + 1, level + 1))
        stack.append((right, 2 * pos + 2, level + 1))


OVERLAP_ROWS = 256
"""From this batch size on, the ensemble walks the forest on a helper thread during the network
call (below it, the hand-over costs more than it saves)."""
_BLOCK = 16
"""Rows walked together through one tree: their independent loads overlap (measured 1.5-3x
faster than one row at a time)."""


@numba.njit(cache=True, nogil=True)
def _path_totals(
    x: np.ndarray, feature: np.ndarray, threshold: np.ndarray, leaf: np.ndarray, depth: int
) -> np.ndarray:  # pragma: no cover - compiled
    n, trees, internal = x.shape[0], feature.shape[0], feature.shape[1]
    out = np.zeros(n)
    node = np.zeros(_BLOCK, dtype=np.int64)
    for start in range(0, n, _BLOCK):
        m = min(n, start + _BLOCK) - start
        for t in range(trees):
            node[:m] = 0
            for _ in range(depth):
                for j in range(m):
                    k = node[j]
                    node[j] = 2 * k + 1 + (x[start + j, feature[t, k]] > threshold[t, k])
            for j in range(m):
                out[start + j] += leaf[t, node[j] - internal]
    return out


@numba.njit(cache=True, nogil=True)
def _combine(
    totals: np.ndarray,
    normaliser: float,
    errors: np.ndarray,
    use_errors: bool,
    z: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    """Forest score 2^(-total/normaliser); with errors, the z-average (z = ae mean, ae std,
    forest mean, forest std)."""
    out = np.empty(totals.shape[0], dtype=np.float32)
    for i in range(totals.shape[0]):
        forest = 2.0 ** (-totals[i] / normaliser)
        if use_errors:
            ae = (np.log(max(np.float64(errors[i]), LOG_EPS)) - z[0]) / z[1]
            out[i] = 0.5 * ae + 0.5 * (forest - z[2]) / z[3]
        else:
            out[i] = forest
    return out


def forest_batch_scores(
    forest: CompactForest,
    x: np.ndarray,
    errors: np.ndarray | None = None,
    z: np.ndarray | None = None,
) -> np.ndarray:
    """The forest's anomaly score (or, with autoencoder errors and z, the ensemble score) for a
    whole preprocessed batch: two compiled calls, no per-row Python."""
    totals = _path_totals(
        np.ascontiguousarray(x, dtype=np.float32),
        forest.feature,
        forest.threshold,
        forest.leaf_value,
        forest.depth,
    )
    if errors is None:
        return _combine(totals, forest.normaliser, totals, False, np.zeros(4))
    assert z is not None
    return _combine(totals, forest.normaliser, errors, True, z)


@dataclass(frozen=True)
class Standardiser:
    mean: float
    std: float

    @classmethod
    def fit(cls, values: np.ndarray) -> Standardiser:
        values = np.asarray(values, dtype=np.float64)
        return cls(float(values.mean()), float(max(values.std(), 1e-12)))

    def apply(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - self.mean) / self.std


def log_error(errors: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.asarray(errors, dtype=np.float64), LOG_EPS))


def ensemble_exact(errors: np.ndarray, forest: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """The ensemble score in numpy float64 (the trainer's and the tests' reference)."""
    ae = Standardiser(**spec["autoencoder"]).apply(log_error(errors))
    fo = Standardiser(**spec["forest"]).apply(forest)
    return np.asarray(0.5 * ae + 0.5 * fo)


class CandidateLoadedModel:
    """A non-autoencoder champion (implements `api.LoadedModel`): preprocessing in numpy, then
    per batch one traced TensorFlow call (the autoencoder's errors or the classifier) and/or one
    compiled forest walk that also combines the ensemble; no per-record Python."""

    def __init__(
        self,
        version: str,
        path: Path,
        kind: str,
        preprocessing: Preprocessing,
        threshold: float,
        threshold_info: dict[str, Any],
        spec: dict[str, Any],
        autoencoder: ErrorModel | None = None,
        forest: CompactForest | None = None,
        supervised: keras.Model | None = None,
    ) -> None:
        if kind not in KINDS[1:]:
            raise ValueError(f"unknown champion kind {kind!r}")
        if (
            (kind == "supervised") != (supervised is not None)
            or (kind != "supervised" and forest is None)
            or (kind == "ensemble" and autoencoder is None)
        ):
            raise ValueError(f"champion {kind} lacks its model")
        self.version, self.path, self.kind = version, path, kind
        self.preprocessing = preprocessing
        self.threshold = float(threshold)
        self.threshold_info = threshold_info
        self.spec = spec
        self.forest = forest
        self.feature_stats = getattr(autoencoder, "feature_stats", None)
        """the version's training statistics (the explanations' normal ranges)"""
        self._autoencoder = autoencoder if kind == "ensemble" else None
        self._pool: ThreadPoolExecutor | None = None
        self._classifier = _traced_classifier(supervised) if supervised is not None else None
        self._z = (
            np.array(
                [
                    spec["autoencoder"]["mean"],
                    spec["autoencoder"]["std"],
                    spec["forest"]["mean"],
                    spec["forest"]["std"],
                ],
                dtype=np.float64,
            )
            if kind == "ensemble"
            else None
        )

    def scores_preprocessed(self, x: np.ndarray) -> np.ndarray:
        return self._scores(x, explain=False)[0]

    def _scores(self, x: np.ndarray, explain: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores, and with `explain` the ensemble's autoencoder parts [n, 30] from the same
        network call (the forest and the classifier have none: None)."""
        if len(x) == 0:
            return np.empty(0, dtype=np.float32), None
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self._classifier is not None:
            return np.asarray(self._classifier(x).numpy()), None
        forest = self.forest
        assert forest is not None
        if self._autoencoder is None:
            return forest_batch_scores(forest, x), None
        autoencoder = self._autoencoder
        parts = None

        def errors_of(rows: np.ndarray) -> np.ndarray:
            nonlocal parts
            if not explain:
                return autoencoder.errors_preprocessed(rows)
            errors, parts = autoencoder.errors_and_parts_preprocessed(rows)
            return errors

        if len(x) < OVERLAP_ROWS:
            return forest_batch_scores(forest, x, errors_of(x), self._z), parts
        # Both parts release the GIL: walk the forest on a helper thread while TensorFlow runs
        # the network on this one, so the ensemble costs little more wall time than the network.
        walk = self._helper().submit(
            _path_totals, x, forest.feature, forest.threshold, forest.leaf_value, forest.depth
        )
        errors = errors_of(x)
        assert self._z is not None
        return _combine(walk.result(), forest.normaliser, errors, True, self._z), parts

    def _helper(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="forest-walk")
        return self._pool

    def score(self, features: np.ndarray) -> np.ndarray:
        """The champion's score per row of raw features float32 [n, 30]; higher = riskier."""
        return self.scores_preprocessed(self.preprocessing.transform(features))

    def score_explained(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """`score` and the autoencoder's per-feature parts of its error from the same call
        (ensemble only; None for the forest and the classifier, which have no such parts)."""
        return self._scores(self.preprocessing.transform(features), explain=True)

    def is_alert(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) >= self.threshold


def _traced_classifier(supervised: Any) -> Callable[[np.ndarray], Any]:
    """The classifier's probability as one traced function over [None, 30]."""
    import tensorflow as tf

    def probability(x: Any) -> Any:
        return tf.reshape(supervised(x, training=False), [-1])

    spec = [tf.TensorSpec([None, N_FEATURES], tf.float32)]
    return tf.function(probability, input_signature=spec, reduce_retracing=True)  # type: ignore[no-any-return]


class ErrorModel(Protocol):
    """The autoencoder part of an ensemble (the registry's KerasLoadedModel)."""

    def errors_preprocessed(self, x: np.ndarray) -> np.ndarray: ...

    def errors_and_parts_preprocessed(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def write_artifacts(
    folder: Path,
    kind: str,
    spec: dict[str, Any],
    forest: CompactForest | None,
    supervised: keras.Model | None,
) -> None:
    """The champion's extra files in a staging directory (nothing for the autoencoder)."""
    if kind == "autoencoder":
        return
    (folder / SCORING_FILE).write_text(json.dumps({"kind": kind, **spec}, indent=2) + "\n")
    if forest is not None:
        (folder / FOREST_FILE).write_bytes(forest.to_bytes())
    if supervised is not None:
        supervised.save(folder / SUPERVISED_FILE)


def load_candidate(
    version: str,
    path: Path,
    files: dict[str, bytes],
    preprocessing: Preprocessing,
    threshold: dict[str, Any],
    autoencoder: ErrorModel,
) -> CandidateLoadedModel:
    """Build the champion from a version's verified file contents."""
    import tempfile

    import keras

    spec = json.loads(files[SCORING_FILE])
    kind = spec.pop("kind", None)
    if kind not in KINDS[1:]:
        raise ValueError(f"{SCORING_FILE}: unknown kind")
    forest = CompactForest.from_bytes(files[FOREST_FILE]) if kind != "supervised" else None
    supervised = None
    if kind == "supervised":
        with tempfile.TemporaryDirectory(prefix="fraudstream-model-") as private:
            copy = Path(private) / SUPERVISED_FILE
            copy.write_bytes(files[SUPERVISED_FILE])
            supervised = keras.models.load_model(copy, compile=False)
    return CandidateLoadedModel(
        version,
        path,
        kind,
        preprocessing,
        float(threshold["threshold"]),
        threshold,
        spec,
        autoencoder=autoencoder,
        forest=forest,
        supervised=supervised,
    )
