"""The figures the project is judged by, each against its target: INT8 against FP32, Keras and OpenVINO, the
cold start and memory of `hashtag predict`, the fast model against the ensemble. Ratios are taken round by
round, i.e. under the same load."""
from __future__ import annotations

from typing import Any, Sequence

from hashtag.benchmarks import stats
from hashtag.benchmarks.photo_runs import PhotoSet
from hashtag.benchmarks.timing import Measured
from hashtag.benchmarks.variants import ENSEMBLE, KERAS, STOCK_OPENVINO
from hashtag.runtime.manifest import Bundle
from hashtag.runtime.providers import auto_providers
from hashtag.runtime.tagger import pick_variant

TARGETS = {"int8_fp32_ensemble_p50_ratio": 0.4, "int8_keras_ensemble_p50_ratio": 0.3, "predict_cold_start_s": 1.5,
           "default_vs_openvino_ensemble_p50_ratio": 1.0, "predict_large_vs_small_wall_ratio": 1.25,
           "predict_peak_rss_mb": 450.0,
           # the fast model (issue 23): model time, `hashtag predict` on 12-Mpx photos (by CPU kind), cold start
           "fast_vs_ensemble_model_p50_ratio": 1 / 15, "fast_vs_ensemble_predict_wall_ratio_vnni": 1 / 3,
           "fast_vs_ensemble_predict_wall_ratio_no_vnni": 1 / 8, "fast_predict_cold_start_s": 0.5}


def _ratio(num: Measured | None, den: Measured | None, target: float, missing: str) -> dict[str, Any]:
    """``num``/``den`` batch-1 p50, round by round (same load), with the issue's target."""
    if num is None or den is None:
        return {"ratio_median_of_rounds": None, "reason": missing, "target_max": target, "met": None}
    per_round = stats.round_ratios(num.round_p50_ms(), den.round_p50_ms())
    ratio = stats.median_of_rounds(per_round)
    return {
        "numerator": num.variant.label, "denominator": den.variant.label,
        "ratio_median_of_rounds": ratio,
        "ratio_best_rounds": stats.best_round(num.round_p50_ms()) / stats.best_round(den.round_p50_ms()),
        "per_round": per_round, "target_max": target, "met": ratio <= target,
    }


def _default_cpu_provider() -> str:
    """What `Tagger(provider='auto')` runs on a machine without a GPU."""
    return next(p for p in auto_providers() if p != "cuda")


def _predict_targets(e2e: dict[str, Any] | None, photo_sets: Sequence[PhotoSet]) -> dict[str, Any]:
    """`hashtag predict FOLDER`: wall time on the largest photos over the smallest, per repeat; peak RSS."""
    walls = (e2e or {}).get("wall_s", {})
    large, small = (f"predict_{s.label}" for s in (photo_sets[0], photo_sets[-1])) if photo_sets else ("", "")
    rss = {s.label: (e2e or {}).get("peak_rss_mb", {}).get(f"predict_{s.label}") for s in photo_sets}
    out: dict[str, Any] = {}
    target = TARGETS["predict_large_vs_small_wall_ratio"]
    if large in walls and small in walls and len(walls[large]["runs"]) == len(walls[small]["runs"]):
        per_repeat = stats.round_ratios(walls[large]["runs"], walls[small]["runs"])
        ratio = stats.median_of_rounds(per_repeat)
        out["predict_large_vs_small_wall_ratio"] = {
            "numerator": large, "denominator": small, "ratio_median_of_rounds": ratio, "per_round": per_repeat,
            "ratio_best_rounds": min(walls[large]["runs"]) / min(walls[small]["runs"]),
            "target_max": target, "met": ratio <= target}
    else:
        out["predict_large_vs_small_wall_ratio"] = {
            "ratio_median_of_rounds": None, "target_max": target, "met": None,
            "reason": "needs `hashtag predict` runs on two photo sizes (not --skip-e2e)"}
    peaks = [v for v in rss.values() if v is not None]
    target = TARGETS["predict_peak_rss_mb"]
    out["predict_peak_rss_mb"] = {"max": max(peaks) if peaks else None, "per_size": rss, "target_max": target,
                                  "met": max(peaks) <= target if peaks else None}
    return out


def summarize(measured: list[Measured], bundle: Bundle, e2e: dict[str, Any] | None,
              photo_sets: Sequence[PhotoSet] = (), env_int8_flags: Sequence[str] = ()) -> dict[str, Any]:
    """The figures the project is judged by: INT8 vs FP32, Keras and OpenVINO ensemble p50, `hashtag predict`."""
    whole = ENSEMBLE if len(bundle.ensemble_names) > 1 else bundle.ensemble_names[0]
    found = {(m.variant.model, m.variant.precision, m.variant.provider): m for m in measured}
    providers = [p for p in ("cpu", "cuda") if any(k[2] == p for k in found)]
    provider = providers[0] if providers else "cpu"
    int8 = found.get((whole, "int8", provider))
    fp32 = found.get((whole, "fp32", provider))
    keras = found.get((whole, "fp32", KERAS))
    default = _default_cpu_provider()
    summary: dict[str, Any] = {
        "provider": provider,
        "default_cpu_provider": default,
        "int8_fp32_ensemble_p50_ratio": _ratio(int8, fp32, TARGETS["int8_fp32_ensemble_p50_ratio"],
                                               f"needs {whole} int8 and fp32 on {provider}"),
        "int8_keras_ensemble_p50_ratio": _ratio(int8, keras, TARGETS["int8_keras_ensemble_p50_ratio"],
                                                "needs --keras-run with tensorflow installed" if keras is None
                                                else f"needs {whole} int8 on {provider}"),
        "default_vs_openvino_ensemble_p50_ratio": _ratio(
            found.get((whole, "int8", default)), found.get((whole, "int8", STOCK_OPENVINO)),
            TARGETS["default_vs_openvino_ensemble_p50_ratio"],
            f"needs {whole} int8 on {default} and on {STOCK_OPENVINO} (pip install 'hashtag[openvino]')"),
    }
    cold = (e2e or {}).get("wall_s", {}).get("predict_1")
    target = TARGETS["predict_cold_start_s"]
    summary["predict_cold_start_s"] = (
        {"min": cold["min"], "median": cold["median"], "target_max": target, "met": cold["median"] < target}
        if cold else {"min": None, "median": None, "target_max": target, "met": None,
                      "reason": "end-to-end CLI run skipped or failed"}
    )
    summary.update(_predict_targets(e2e, photo_sets))
    summary.update(_fast_targets(found, bundle, provider, env_int8_flags, e2e, photo_sets))
    return summary


def _fast_targets(found: dict[tuple[str, str, str], Measured], bundle: Bundle, provider: str,
                  int8_flags: Sequence[str], e2e: dict[str, Any] | None, photo_sets: Sequence[PhotoSet],
                  ) -> dict[str, Any]:
    """The fast model against the ensemble, measured in the same rounds: model p50 at the precision the runtime
    picks on this CPU, `hashtag predict --fast` vs `hashtag predict` wall time on the largest photos, cold start."""
    fast = bundle.fast
    if fast is None:
        return {}
    chosen = pick_variant(fast, provider, None)[0].precision
    out: dict[str, Any] = {"fast_model": fast.name, "fast_precision_here": chosen,
                           "int8_dot_product_flags": list(int8_flags)}
    out["fast_vs_ensemble_model_p50_ratio"] = _ratio(
        found.get((fast.name, chosen, provider)), found.get((ENSEMBLE, "int8", provider)),
        TARGETS["fast_vs_ensemble_model_p50_ratio"],
        f"needs {fast.name} {chosen} (the runtime's pick on this CPU) and the int8 ensemble on {provider}")
    walls = (e2e or {}).get("wall_s", {})
    kind = "vnni" if int8_flags else "no_vnni"
    target = TARGETS[f"fast_vs_ensemble_predict_wall_ratio_{kind}"]
    large = photo_sets[0].label if photo_sets else ""
    ours, theirs = walls.get(f"predict_fast_{large}"), walls.get(f"predict_{large}")
    if ours and theirs and len(ours["runs"]) == len(theirs["runs"]):
        per_round = stats.round_ratios(ours["runs"], theirs["runs"])
        ratio = stats.median_of_rounds(per_round)
        out["fast_vs_ensemble_predict_wall_ratio"] = {
            "numerator": f"predict_fast_{large}", "denominator": f"predict_{large}", "cpu_kind": kind,
            "ratio_median_of_rounds": ratio, "ratio_best_rounds": min(ours["runs"]) / min(theirs["runs"]),
            "per_round": per_round, "target_max": target, "met": ratio <= target}
    else:
        out["fast_vs_ensemble_predict_wall_ratio"] = {"ratio_median_of_rounds": None, "target_max": target,
                                                      "met": None, "reason": "needs the end-to-end CLI runs"}
    cold = walls.get("predict_fast_1")
    target = TARGETS["fast_predict_cold_start_s"]
    out["fast_predict_cold_start_s"] = (
        {"min": cold["min"], "median": cold["median"], "target_max": target, "met": cold["median"] <= target}
        if cold else {"median": None, "target_max": target, "met": None, "reason": "needs the end-to-end CLI runs"})
    return out
