"""What writing keywords costs over predicting: `hashtag tag` vs `hashtag predict --json` on the same folder.

Each round runs, in a fresh process and in rotating order, `hashtag predict --json FOLDER`, `hashtag tag
FOLDER` (XMP sidecars) and `hashtag tag --embed FOLDER` (into copies of the same photos). Between rounds,
untimed, the sidecars are deleted and the embedded copies restored, so every timed run writes every photo.
Ratios are per round, i.e. under the same load; the CPU's model and instruction-set flags are recorded.

    python -m hashtag.benchmarks.bench_tag [--bundle DIR] [--count 40] [--size 4000x3000] [--rounds 3] [--out DIR]
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import click

from hashtag.benchmarks.e2e import hashtag_command, run_timed
from hashtag.benchmarks.envinfo import collect, hardware_line
from hashtag.benchmarks.photos import write_sized_photos
from hashtag.benchmarks.stats import median_of_rounds, round_ratios
from hashtag.runtime.options import bundle_option, resolve_bundle

TARGET_RATIO = 1.05  # writing sidecars may cost at most 5% over predicting (issue: tag a photo library)
VARIANTS = ("predict", "tag_sidecar", "tag_embed")


def _size(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter("expected WIDTHxHEIGHT, e.g. 4000x3000") from None
    return width, height


def _reset(pristine: Path, sidecar_folder: Path, embed_folder: Path) -> None:
    """Untimed: no sidecars beside the photos, embedded copies as they came."""
    for sidecar in sidecar_folder.glob("*.xmp"):
        sidecar.unlink()
    shutil.rmtree(embed_folder, ignore_errors=True)
    shutil.copytree(pristine, embed_folder)


@click.command()
@bundle_option
@click.option("--count", type=click.IntRange(min=1), default=40, show_default=True, help="Photos in the folder.")
@click.option("--size", default="4000x3000", show_default=True, callback=_size, help="Photo size, 12 Mpx by default.")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None, help="Write bench_tag.json here.")
def main(bundle_dir: Path | None, count: int, size: tuple[int, int], rounds: int, out: Path | None) -> None:
    """Time predict vs tag (sidecar) vs tag --embed in interleaved rounds and print the ratios."""
    bundle, _ = resolve_bundle(bundle_dir, None)
    base = [*hashtag_command()]
    with tempfile.TemporaryDirectory(prefix="bench-tag-") as tmp:
        root = Path(tmp)
        photos, embed = root / "photos", root / "embed"
        write_sized_photos(photos, count, size)
        commands = {
            "predict": [*base, "predict", "--bundle", str(bundle), "--json", str(photos)],
            "tag_sidecar": [*base, "tag", "--bundle", str(bundle), "--json", str(photos)],
            "tag_embed": [*base, "tag", "--bundle", str(bundle), "--json", "--embed", str(embed)],
        }
        env = collect(bundle)
        walls: dict[str, list[float]] = {v: [] for v in VARIANTS}
        _reset(photos, photos, embed)
        run_timed(commands["predict"])  # untimed: file cache and model files warm for every variant alike
        for r in range(rounds):
            _reset(photos, photos, embed)
            for name in VARIANTS[r % 3:] + VARIANTS[:r % 3]:
                timed = run_timed(commands[name])
                if timed.returncode != 0:
                    raise click.ClickException(f"{name} exited {timed.returncode}: {timed.stderr_tail}")
                walls[name].append(timed.wall_s)
            click.echo(f"round {r + 1}: " + ", ".join(f"{n} {walls[n][-1]:.2f} s" for n in VARIANTS), err=True)
    ratios = {n: round_ratios(walls[n], walls["predict"]) for n in VARIANTS[1:]}
    result: dict[str, Any] = {
        "environment": env, "photos": count, "size": list(size), "rounds": rounds, "wall_s": walls,
        "ratio_over_predict": {n: {"rounds": r, "median": median_of_rounds(r)} for n, r in ratios.items()},
        "target_ratio": TARGET_RATIO,
    }
    click.echo(hardware_line(env))
    click.echo(f"{count} photos of {size[0]}x{size[1]}, {rounds} interleaved rounds, fresh process each run")
    click.echo("| variant | median wall s | s per photo | ratio over predict (median of rounds) |")
    click.echo("|---|---|---|---|")
    for name in VARIANTS:
        wall = median_of_rounds(walls[name])
        ratio = "1.000" if name == "predict" else f"{result['ratio_over_predict'][name]['median']:.3f}"
        click.echo(f"| {name} | {wall:.2f} | {wall / count:.3f} | {ratio} |")
    sidecar = result["ratio_over_predict"]["tag_sidecar"]["median"]
    click.echo(f"sidecars cost {100 * (sidecar - 1):+.1f}% over predict (target <= {100 * (TARGET_RATIO - 1):.0f}%): "
               + ("met" if sidecar <= TARGET_RATIO else "missed"))
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_tag.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
