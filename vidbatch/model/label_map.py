"""A label map: a pretrained model's big taxonomy combined into the user's classes (`--label-map MAP.json`).

`{"ApplyLipstick": ["putting on lipstick"], "BaseballPitch": ["catching or throwing baseball", ...]}` maps
Kinetics-600 (or ImageNet) classes onto the classes the user labels. It is applied to every item's
probabilities right after the model, before smoothing, so the frames, summary, segments, shots and report all
speak the user's classes. The model classes no target names go to `other`, or are dropped (with `sum`, the
targets' probabilities are then renormalised; with `max` each keeps its best model class's probability, so a
low score still says the model was unsure). The map and how it combines are part of the model's fingerprint,
so a resumed run cannot mix two maps.

How a target's probability is made from its model classes (`combine`): `max` (the best single one; the run's
default) or `sum` (the probability that the frame shows any of them). Measured on the 439 shared UCF101 clips
with MoViNet-A0 (benchmarks/streaming.py): max 96.1% and sum 95.9% with the rest dropped, 79.0% and 74.0% with
the rest as `other` (a sum over 585 unmapped classes outweighs a few mapped ones more often).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidbatch.core.errors import ModelBundleError

COMBINES = ("sum", "max")
RESTS = ("other", "drop")
OTHER = "other"


class _RepeatedKey(Exception):
    pass


def _refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads` hook: a key given twice is an error, not silently the last one (a map merged by hand)."""
    record: dict[str, Any] = {}
    for key, value in pairs:
        if key in record:
            raise _RepeatedKey(key)
        record[key] = value
    return record


@dataclass(frozen=True)
class LabelMap:
    targets: tuple[str, ...]
    sources: tuple[tuple[int, ...], ...]
    """For each target, the indices of the model classes it combines."""
    model_classes: tuple[str, ...]
    combine: str = "sum"
    rest: str = "other"
    source: str = ""

    def __post_init__(self) -> None:
        if self.combine not in COMBINES:
            raise ModelBundleError(f"Invalid `label_map_combine`: expected one of {COMBINES}. Received: {self.combine!r}")
        if self.rest not in RESTS:
            raise ModelBundleError(f"Invalid `label_map_rest`: expected one of {RESTS}. Received: {self.rest!r}")
        if self.rest == "other" and OTHER in self.targets:
            raise ModelBundleError(
                f"Invalid `label_map` {self.source!r}: it names a target {OTHER!r}, which is where the unmapped model "
                "classes go; rename it, or pass --label-map-rest drop")

    @classmethod
    def from_json(cls, text: str | bytes, model_classes: tuple[str, ...], source: str = "label map",
                  combine: str = "sum", rest: str = "other", option: str = "label_map") -> "LabelMap":
        """Read and check a map against the model's classes: every problem is said before any work (`option`: the
        argument that named it, for the messages)."""
        try:
            record = json.loads(text, object_pairs_hook=_refuse_repeated_keys)
        except _RepeatedKey as exc:
            raise ModelBundleError(f"Invalid `{option}` {source!r}: it names {exc.args[0]!r} twice (JSON keeps only the "
                                   "last); give each class one entry, whose list may name several model classes") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelBundleError(f"Invalid `{option}` {source!r}: not valid JSON ({exc}). Expected an object "
                                   '{"my class": ["model class", ...], ...}') from None
        if not isinstance(record, Mapping) or not record:
            raise ModelBundleError(f"Invalid `{option}` {source!r}: expected a non-empty JSON object "
                                   '{"my class": ["model class", ...], ...}. Received: ' + type(record).__name__)
        index = {name: i for i, name in enumerate(model_classes)}
        targets, sources, unknown, owner = [], [], [], {}
        for target, names in record.items():
            if isinstance(names, str):
                names = [names]
            if not target.strip() or not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                raise ModelBundleError(f"Invalid `{option}` {source!r}: each entry maps a class name to a non-empty "
                                       f"list of model class names. Received: {target!r}: {names!r}")
            picked = []
            for name in names:
                if name not in index:
                    unknown.append(name)
                    continue
                if name in owner and owner[name] != target:
                    raise ModelBundleError(f"Invalid `{option}` {source!r}: model class {name!r} is mapped to both "
                                           f"{owner[name]!r} and {target!r}; a model class may feed one class")
                owner[name] = target
                picked.append(index[name])
            targets.append(target)
            sources.append(tuple(dict.fromkeys(picked)))
        if unknown:
            hints = []
            for name in unknown[:5]:
                close = difflib.get_close_matches(name, model_classes, n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ModelBundleError(
                f"Invalid `{option}` {source!r}: {len(unknown)} name(s) are not classes of the model: "
                f"{', '.join(hints)}{' ...' if len(unknown) > 5 else ''}. The model's classes are in its --classes file")
        return cls(tuple(targets), tuple(sources), tuple(model_classes), combine, rest, source)

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes the run labels with: the targets, then `other` unless the rest is dropped."""
        return self.targets + ((OTHER,) if self.rest == "other" else ())

    @property
    def identity(self) -> str:
        """What makes two maps label alike (part of the model fingerprint)."""
        return json.dumps({"targets": self.targets, "sources": self.sources, "combine": self.combine,
                           "rest": self.rest}, sort_keys=True)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "classes": len(self.targets), "model_classes_mapped": sum(map(len, self.sources)),
                "model_classes": len(self.model_classes), "combine": self.combine, "rest": self.rest}

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Model probabilities [N, model classes] -> [N, classes]."""
        probs = np.asarray(probs, np.float32)
        n = len(probs)
        out = np.zeros((n, len(self.classes)), np.float32)
        mapped = np.zeros(probs.shape[1], bool)
        for t, index in enumerate(self.sources):
            if not index:
                continue
            part = probs[:, list(index)]
            out[:, t] = part.sum(axis=1) if self.combine == "sum" else part.max(axis=1)
            mapped[list(index)] = True
        if self.rest == "other":
            rest = probs[:, ~mapped]
            if rest.shape[1]:
                out[:, -1] = rest.sum(axis=1) if self.combine == "sum" else rest.max(axis=1)
        elif self.combine == "sum":  # dropped: the probability among the user's classes
            total = out.sum(axis=1, keepdims=True)
            np.divide(out, total, out=out, where=total > 0)
        return out
