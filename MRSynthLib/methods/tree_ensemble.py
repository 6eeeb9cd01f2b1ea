"""A boosted regression-tree ensemble as flat numpy arrays: storage (safetensors) and a pure numpy predictor.

The arrays hold every tree's nodes one after the other; ``left``/``right`` are indices into the flat
arrays and a leaf points to itself, so one vectorised step moves every (tree, voxel) pair one level
down and a leaf stays put. A sample goes left when ``x[feature] <= threshold`` (the rule of
scikit-learn's ``HistGradientBoostingRegressor`` for numeric features; features here are never NaN).

``value`` is the leaf output (learning rate already applied) at leaves and, at split nodes, the
training-count-weighted mean of the leaves below: the expected output given the path so far. The
change of expected output along a sample's path, summed per feature, is the tree-path attribution
of Saabas ("treeinterpreter"): ``prediction = baseline + sum(root values) + sum(attributions)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from MRSynthLib.errors import BundleError

FIELDS: tuple[str, ...] = ("feature", "threshold", "left", "right", "value", "roots", "baseline")


@dataclass(frozen=True)
class TreeEnsemble:
    """Flat arrays of ``N`` nodes in ``T`` trees.

    Attributes:
        feature: ``(N,)`` int32 feature column tested at a split node (0 at leaves).
        threshold: ``(N,)`` float64 split threshold (go left when ``x <= threshold``).
        left, right: ``(N,)`` int32 child node indices; both equal the node itself at a leaf.
        value: ``(N,)`` float64 leaf output / expected output below a split node.
        roots: ``(T,)`` int32 index of each tree's root node.
        baseline: ``(1,)`` float64 constant added to the sum over trees.
    """

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    baseline: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.value)
        if any(len(getattr(self, name)) != n for name in ("feature", "threshold", "left", "right")):
            raise BundleError("Tree arrays feature/threshold/left/right/value must have one length: re-export the bundle.")
        for name in ("left", "right", "roots"):
            array = getattr(self, name)
            if len(array) and (array.min() < 0 or array.max() >= n):
                raise BundleError(f"Tree array {name} points outside the {n} nodes: re-export the bundle.")
        if self.baseline.shape != (1,):
            raise BundleError("Tree ensemble baseline must hold one value: re-export the bundle.")

    @property
    def trees(self) -> int:
        return len(self.roots)

    @property
    def is_leaf(self) -> np.ndarray:
        return self.left == np.arange(len(self.left))

    def depth(self) -> int:
        """Longest root-to-leaf path (number of splits)."""
        is_leaf = self.is_leaf
        frontier, depth = self.roots[~is_leaf[self.roots]], 0
        while len(frontier):
            depth += 1
            if depth > len(self.value):
                raise BundleError("Tree arrays contain a cycle: re-export the bundle.")
            children = np.concatenate([self.left[frontier], self.right[frontier]])
            frontier = children[~is_leaf[children]]
        return depth

    def to_tensors(self, prefix: str) -> dict[str, np.ndarray]:
        """``{prefix + "." + field: array}`` for safetensors."""
        return {f"{prefix}.{name}": np.ascontiguousarray(getattr(self, name)) for name in FIELDS}

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], prefix: str) -> TreeEnsemble:
        missing = [name for name in FIELDS if f"{prefix}.{name}" not in tensors]
        if missing:
            raise BundleError(f"Regression weights lack {', '.join(prefix + '.' + m for m in missing)}: re-export the bundle.")
        dtypes = {"feature": np.int32, "threshold": np.float64, "left": np.int32, "right": np.int32,
                  "value": np.float64, "roots": np.int32, "baseline": np.float64}
        return cls(**{name: np.asarray(tensors[f"{prefix}.{name}"], dtype=dtypes[name]) for name in FIELDS})

    def predict(self, features: np.ndarray, groups: np.ndarray | None = None, chunk: int = 16384, threads: int = 1
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """Ensemble output for every row, and optionally the per-group path attribution.

        Every (tree, row) pair walks down until it reaches a leaf; pairs at a leaf leave the active
        set, so the work is the total path length, not trees x rows x depth.

        Args:
            features: ``(V, F)`` finite feature rows (float32 or float64; compared with the float64
                thresholds exactly).
            groups: optional ``(F,)`` int group of each feature column (e.g. the input contrast).
            chunk: rows processed at once (memory ~ ``40 * trees * chunk`` bytes per thread).
            threads: chunks processed in parallel (numpy releases the GIL in the walk: 1.8x on 2 cores); the
                result is bit-identical whatever the number, each chunk being computed alone.

        Returns:
            ``(V,)`` float64 predictions; ``(G, V)`` float64 attributions (``G = groups.max() + 1``) or None.
        """
        features = np.asarray(features)
        if features.dtype not in (np.float32, np.float64):
            features = features.astype(np.float64)
        rows, columns = features.shape
        if len(self.feature) and int(self.feature.max()) >= columns:
            raise BundleError(f"The trees use feature {int(self.feature.max())} but only {columns} are given: "
                              f"the bundle does not match this feature definition; re-export it.")
        is_leaf = self.is_leaf
        children = np.stack([self.left, self.right], axis=1).ravel().astype(np.int32)  # node n: children[2n + right]
        trees = len(self.roots)
        out = np.empty(rows, dtype=np.float64)
        n_groups = int(groups.max()) + 1 if groups is not None else 0
        attributions = np.zeros((n_groups, rows), dtype=np.float64) if groups is not None else None

        def walk(start: int) -> None:
            """Rows ``start:start + chunk``, written into their own slices of ``out`` and ``attributions``."""
            block = np.ascontiguousarray(features[start:start + chunk])
            v = len(block)
            flat = block.ravel()
            if len(flat) >= 2**31:  # pragma: no cover - chunk * columns is far below this
                raise ValueError("chunk * feature columns must stay below 2**31")
            node = np.repeat(self.roots, v)  # pair p = tree * v + row; int32 indices throughout
            active = np.flatnonzero(~is_leaf[node]).astype(np.int32)
            current = node[active]
            row = active % np.int32(v)
            while active.size:
                feature = self.feature[current]
                goes_right = flat[row * np.int32(columns) + feature] > self.threshold[current]
                child = children[2 * current + goes_right]
                if attributions is not None:
                    delta = self.value[child] - self.value[current]
                    attributions[:, start:start + v] += np.bincount(
                        groups[feature] * v + row, weights=delta, minlength=n_groups * v
                    ).reshape(n_groups, v)
                done = is_leaf[child]
                node[active[done]] = child[done]
                keep = ~done
                active, current, row = active[keep], child[keep], row[keep]
            out[start:start + v] = self.baseline[0] + self.value[node].reshape(trees, v).sum(axis=0)

        starts = range(0, rows, chunk)
        if threads > 1 and len(starts) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(threads, len(starts))) as pool:
                list(pool.map(walk, starts))
        else:
            for start in starts:
                walk(start)
        return out, attributions


def expected_values(left: np.ndarray, right: np.ndarray, leaf_value: np.ndarray, count: np.ndarray,
                    roots: np.ndarray) -> np.ndarray:
    """Per node: its own value at a leaf, the ``count``-weighted mean of its children's values at a split.

    Args:
        left, right: child indices (a leaf points to itself); leaf_value: outputs at leaves (any value
        elsewhere); count: training samples through each node; roots: root indices.
    """
    value = np.asarray(leaf_value, dtype=np.float64).copy()
    is_leaf = left == np.arange(len(left))
    order = []  # split nodes, parents before children
    stack = list(roots)
    while stack:
        node = stack.pop()
        if not is_leaf[node]:
            order.append(node)
            stack += [left[node], right[node]]
    for node in reversed(order):  # children before parents
        a, b = left[node], right[node]
        total = float(count[a]) + float(count[b])
        value[node] = (count[a] * value[a] + count[b] * value[b]) / total if total > 0 else 0.5 * (value[a] + value[b])
    return value


__all__ = ["TreeEnsemble", "expected_values"]
