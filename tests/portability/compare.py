"""The verdict on one run: two `hashtag predict --json` outputs on the same photos, from two machines.

The same hashtags on every photo, for the ensemble and every model, is the verdict; how far the
probabilities moved, where, and how close they came to a threshold is reported beside it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from hashtag.runtime.contract import Prediction
from portability import DEFAULT_TOLERANCE

ENSEMBLE = "ensemble"  # the key used for the ensemble's scores next to the model names


class CompareError(ValueError):
    """An output that cannot be compared (unreadable line, duplicate image name)."""


def read_predictions(path: Path) -> dict[str, dict[str, Any]]:
    """`hashtag predict --json` output keyed by the image's file name (the folders differ between machines)."""
    records: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CompareError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(rec, dict) or "image" not in rec:
            raise CompareError(f"{path}:{number}: not a prediction record")
        name = Path(str(rec["image"])).name
        if name in records:
            raise CompareError(f"{path}:{number}: image name {name!r} appears twice")
        records[name] = rec
    return records


def score_tables(rec: Mapping[str, Any]) -> dict[str, tuple[list[str], dict[str, float]]]:
    """{'ensemble' | model name: (hashtags, {tag: probability})} of one prediction record (the contract's)."""
    try:
        prediction = Prediction.from_json(rec)
    except ValueError as exc:
        raise CompareError(f"{rec.get('image')}: {exc}") from None
    tables = {ENSEMBLE: (prediction.hashtags, prediction.scores)}
    tables.update({name: (model.hashtags, model.scores) for name, model in prediction.models.items()})
    return tables


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def compare(reference: Mapping[str, Mapping[str, Any]], candidate: Mapping[str, Mapping[str, Any]],
            tolerance: float = DEFAULT_TOLERANCE,
            thresholds: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, Any]:
    """Compare two runs on the same photos: hashtags (ensemble and every model) and per-tag probabilities.

    ``ok`` (the verdict): the same images on both sides, no read errors, every tag scored on both, and the
    same hashtags for every image and every model. Hashtags are compared as sets: the order only ranks
    the chosen tags by score, and two nearly tied tags (person and human are) may swap; such swaps are
    listed in ``order_differences``. ``within_tolerance`` says whether every probability is within
    ``tolerance``: reported beside the verdict, not part of it. ``thresholds`` ({'ensemble' | model:
    {tag: t}}, from the manifest) adds how close the reference came to a threshold.
    """
    names = sorted(set(reference) | set(candidate))
    missing = sorted(set(reference) - set(candidate))
    extra = sorted(set(candidate) - set(reference))
    errors = {side: sorted(n for n, r in recs.items() if r.get("error"))
              for side, recs in (("reference", reference), ("candidate", candidate))}
    mismatches: list[dict[str, Any]] = []
    order: list[dict[str, Any]] = []
    missing_scores: list[dict[str, Any]] = []
    worst: dict[str, Any] | None = None
    by_model_max: dict[str, float] = {}
    by_model_logit: dict[str, float] = {}
    by_model_sum: dict[str, float] = {}
    by_model_n: dict[str, int] = {}
    over: dict[str, int] = {}
    margin: dict[str, Any] | None = None
    compared = 0
    for name in names:
        if name in missing or name in extra or name in errors["reference"] or name in errors["candidate"]:
            continue
        compared += 1
        ref_tables, cand_tables = score_tables(reference[name]), score_tables(candidate[name])
        for model in sorted(set(ref_tables) | set(cand_tables), key=lambda m: (m != ENSEMBLE, m)):
            if model not in ref_tables or model not in cand_tables:
                missing_scores.append({"image": name, "model": model, "tag": None})
                continue
            (ref_tags, ref_scores), (cand_tags, cand_scores) = ref_tables[model], cand_tables[model]
            if set(ref_tags) != set(cand_tags) or len(ref_tags) != len(cand_tags):
                mismatches.append({"image": name, "model": model, "reference": ref_tags, "candidate": cand_tags})
            elif ref_tags != cand_tags:
                order.append({"image": name, "model": model, "reference": ref_tags, "candidate": cand_tags})
            for tag in sorted(set(ref_scores) | set(cand_scores)):
                if tag not in ref_scores or tag not in cand_scores:
                    missing_scores.append({"image": name, "model": model, "tag": tag})
                    continue
                a, b = float(ref_scores[tag]), float(cand_scores[tag])
                diff = abs(a - b)
                by_model_max[model] = max(by_model_max.get(model, 0.0), diff)
                by_model_logit[model] = max(by_model_logit.get(model, 0.0), abs(_logit(a) - _logit(b)))
                by_model_sum[model] = by_model_sum.get(model, 0.0) + diff
                by_model_n[model] = by_model_n.get(model, 0) + 1
                over[model] = over.get(model, 0) + (diff > tolerance)
                if worst is None or diff > worst["abs_diff"]:
                    worst = {"image": name, "model": model, "tag": tag, "reference": a, "candidate": b,
                             "abs_diff": diff}
                limit = (thresholds or {}).get(model, {}).get(tag)
                if limit is not None and (margin is None or abs(a - limit) < margin["margin"]):
                    margin = {"image": name, "model": model, "tag": tag, "reference": a, "threshold": float(limit),
                              "margin": abs(a - float(limit))}
    max_diff = worst["abs_diff"] if worst else 0.0
    complete = not missing and not extra and not any(errors.values()) and not missing_scores and compared > 0
    hashtags_identical = complete and not mismatches
    return {
        "tolerance": tolerance,
        "images": len(names),
        "compared": compared,
        "missing_on_candidate": missing,
        "extra_on_candidate": extra,
        "errors": errors,
        "hashtag_mismatches": mismatches,
        "order_differences": order,
        "missing_scores": missing_scores,
        "max_abs_diff": max_diff,
        "max_abs_diff_at": worst,
        "max_abs_diff_by_model": by_model_max,
        "max_logit_diff_by_model": by_model_logit,
        "mean_abs_diff_by_model": {m: by_model_sum[m] / by_model_n[m] for m in by_model_sum},
        "scores_over_tolerance_by_model": over,
        "scores_compared_by_model": by_model_n,
        "closest_to_threshold": margin,
        "hashtags_identical": hashtags_identical,
        "within_tolerance": complete and max_diff <= tolerance,
        "ok": hashtags_identical,
    }


def manifest_thresholds(manifest: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """{'ensemble' | model name: {tag: threshold}} from a bundle manifest."""
    out = {ENSEMBLE: dict(manifest.get("ensemble", {}).get("thresholds", {}))}
    for spec in manifest.get("models", []):
        out[spec["name"]] = dict(spec.get("thresholds", {}))
    return out


def format_tags(tags: Iterable[str]) -> str:
    """Hashtags as one line of a report or a verdict."""
    return " ".join(tags) or "(none)"
