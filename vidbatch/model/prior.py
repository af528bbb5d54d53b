"""A trained head mixed with a zero-shot prior: the streaming video model's own classes, combined into the head's
classes by a label map, averaged with the head's probabilities.

Why: a head trained on a few hundred clips learns the user's classes from the video model's pooled features, but
the model's own classifier saw Kinetics' 650,000 clips. Where the user's classes are Kinetics actions (a label map
says which), the two err on different clips: on the shared UCF101 clips, heads on the pooled features reached
95-98% of held-out groups, and their average with the label map's probabilities 97-99% (benchmarks/streaming.py
`trained_prior`). A head on the logits at window ends (the default since) already reads what the prior reads:
99.5% alone, 98.4% mixed, so the prior is an option for heads that read little of the logits.

The bundle's head reads the logits (`head_input="logits"`, the default), or the pooled features and the logits side
by side (`"both"`, the logits last), so the prior comes from the same forward pass; the map and the weight live in
the bundle's sidecar (`encoder.prior`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from vidbatch.core.errors import ModelBundleError
from vidbatch.model.label_map import LabelMap

PRIOR_FIELDS = ("classes", "map", "combine", "weight")
DEFAULT_WEIGHT = 0.5
"""The prior's share. On the shared UCF101 group folds, with the linear head (`apps.train.encoded.linear_head`):
98.6% of held-out clips at 0.5, 98.2% at 0.7 (0.7 was best for the earlier dense head, 97.9%); chosen on the
folds it is reported on, so optimistic (benchmarks/streaming.py `trained_prior`)."""


@dataclass(frozen=True)
class Prior:
    """The label map's probabilities, in the head's class order, and how much they weigh."""

    label_map: LabelMap
    order: tuple[int, ...]
    """For each head class, its column in the label map's output."""
    weight: float

    @classmethod
    def from_record(cls, record: Any, head_classes: Sequence[str], source: str) -> "Prior":
        """From a sidecar's `encoder.prior` (or what training writes there), checked against the head's classes."""
        if not isinstance(record, Mapping) or set(record) != set(PRIOR_FIELDS):
            raise ModelBundleError(f"{source}: `encoder.prior` must be an object with {list(PRIOR_FIELDS)}. "
                                   f"Received: prior={str(record)[:200]!r}")
        weight = record["weight"]
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < 1:
            raise ModelBundleError(f"{source}: `encoder.prior.weight` must be a number in (0, 1). Received: weight={weight!r}")
        classes = record["classes"]
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ModelBundleError(f"{source}: `encoder.prior.classes` must be the video model's class names, a list "
                                   f"of strings. Received: {str(classes)[:200]!r}")
        label_map = LabelMap.from_json(json.dumps(record["map"]), tuple(classes), source=source,
                                       combine=record["combine"], rest="drop")
        missing = sorted(set(head_classes) - set(label_map.targets))
        extra = sorted(set(label_map.targets) - set(head_classes))
        if missing or extra:
            raise ModelBundleError(
                f"{source}: the prior's label map must name exactly the head's classes. Missing: {missing}; "
                f"not a class of the head: {extra}")
        return cls(label_map, tuple(label_map.targets.index(c) for c in head_classes), float(weight))

    def record(self) -> dict[str, Any]:
        """What the sidecar keeps (`encoder.prior`)."""
        lm = self.label_map
        return {"classes": list(lm.model_classes), "combine": lm.combine, "weight": self.weight,
                "map": {t: [lm.model_classes[i] for i in idx] for t, idx in zip(lm.targets, lm.sources)}}

    def probabilities(self, head_inputs: np.ndarray) -> np.ndarray:
        """The prior [N, head classes] from the head's inputs (their last columns are the model's logits)."""
        logits = np.asarray(head_inputs, np.float32)[:, -len(self.label_map.model_classes):]
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        mapped = self.label_map.apply(probs)
        if self.label_map.combine == "max":  # `apply` renormalises sums only: a max is made a distribution here
            total = mapped.sum(axis=1, keepdims=True)
            np.divide(mapped, total, out=mapped, where=total > 0)
        return mapped[:, list(self.order)]

    def mix(self, head_probs: np.ndarray, head_inputs: np.ndarray) -> np.ndarray:
        """(1 - weight) x the head's probabilities + weight x the prior's."""
        return ((1.0 - self.weight) * np.asarray(head_probs, np.float32)
                + self.weight * self.probabilities(head_inputs)).astype(np.float32)



def read_prior_classes(path: str) -> list[str]:
    """A video model's class names, as `--classes` reads them (a JSON list, or one name a line)."""
    from vidbatch.model.legacy import read_classes

    names = read_classes(path).get("classes")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ModelBundleError(f"Invalid `prior_classes`: expected class names (a JSON list, or one name a line). "
                               f"Received: prior_classes={path!r}")
    return names
