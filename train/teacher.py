"""The teacher's judgement for distillation: a bundle's per-model probabilities on photos, cached on disk.

The teacher is a shipped bundle run through ``hashtag.runtime`` exactly as users run it (same decoding,
preprocessing, precision), so the student learns what users of the ensemble see. Layout under the cache::

    teacher-<members sha256[:12]>/<group>-<ids hash>/    (runtime.manifest.members_sha256: adding a fast
                                                         model or retuning the combination keeps the cache)
        ids.txt                 one photo id per row
        probs.npy, done.npy     float32 [n, models, tags] (the bundle's model and tag order), bool [n]

Rows are flushed batch by batch and marked done afterwards: a killed run resumes, a finished one is reused.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from hashtag.runtime.ensemble import Combination, combine
from hashtag.runtime.manifest import Bundle, load_bundle, members_sha256
from hashtag.runtime.tagger import Tagger
from hashtag.train.files import open_npy_memmap
from hashtag.train.progress import Progress


class Photo(Protocol):
    """What the teacher needs of a photo record."""

    photo_id: str
    path: Path


@dataclass(frozen=True)
class TeacherProbabilities:
    """Per-model probabilities of some photos: ``probs[row, model, tag]`` and which rows are filled."""

    models: tuple[str, ...]
    tags: tuple[str, ...]
    probs: np.ndarray
    done: np.ndarray
    combination: Combination

    def per_model(self) -> dict[str, np.ndarray]:
        """Each model's probabilities [n, tags]."""
        return {name: self.probs[:, i] for i, name in enumerate(self.models)}

    def ensemble(self) -> np.ndarray:
        """The ensemble's probabilities [n, tags], combined as the bundle's manifest says (so a distillation
        from a retuned bundle learns its combination, not the plain mean the shipped fast model learnt)."""
        return combine(self.per_model(), self.combination)


def _group(cache_dir: Path, bundle: Bundle, group: str, photos: Sequence[Photo]) -> Path:
    ids = hashlib.sha256("".join(f"{p.photo_id}\t{p.path.name}\n" for p in photos).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"teacher-{members_sha256(bundle)[:12]}" / f"{group}-{ids}"


def teacher_probabilities(bundle: Path, cache_dir: Path, group: str, photos: Sequence[Photo],
                          limit: int | None = None, threads: int | None = None, batch_size: int = 8,
                          progress: bool = True) -> TeacherProbabilities:
    """The bundle's ensemble models on ``photos`` (the first ``limit`` rows at most), computing only missing rows."""
    loaded = load_bundle(bundle)
    folder = _group(cache_dir, loaded, group, photos)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ids.txt").write_text("".join(f"{p.photo_id}\n" for p in photos))
    shape = (len(photos), len(loaded.ensemble_names), len(loaded.tags))
    probs = open_npy_memmap(folder / "probs.npy", shape, "float32")
    done = open_npy_memmap(folder / "done.npy", (len(photos),), "bool")
    wanted = np.arange(min(len(photos), limit if limit is not None else len(photos)))
    missing = wanted[~done[wanted]]
    if not len(missing):  # all cached: no model is loaded
        return TeacherProbabilities(loaded.ensemble_names, loaded.tags, np.asarray(probs), np.asarray(done),
                                    loaded.combination)
    tagger = Tagger(loaded, provider="cpu", threads=threads, batch_size=batch_size, models=loaded.ensemble_names)
    with Progress(len(missing), f"teacher {group}", enabled=progress) as bar:
        for start in range(0, len(missing), batch_size):
            rows = missing[start:start + batch_size]
            per_model = tagger.probabilities([tagger.decode(photos[r].path) for r in rows])
            probs[rows] = np.stack([per_model[n] for n in tagger.names], axis=1)
            probs.flush()
            done[rows] = True
            done.flush()
            bar.update(len(rows))
    return TeacherProbabilities(tagger.names, tagger.bundle.tags, np.asarray(probs), np.asarray(done),
                                loaded.combination)
