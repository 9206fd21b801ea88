"""The photos both machines tag: named extras and a fixed sample of the corpus' test split, copied flat."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

from hashtag.train.files import sha256_file
from hashtag.train.splits import split_of, unit_interval


def corpus_test_photos(corpus: Path, n: int) -> list[Path]:
    """n photos of the corpus' test split, the same on every machine: test ids in the order of their hash."""
    ids = [p.stem for p in (Path(corpus) / "images").glob("*.jpg") if split_of(p.stem) == "test"]
    ids.sort(key=lambda i: (unit_interval(i), i))
    return [Path(corpus) / "images" / f"{i}.jpg" for i in ids[:n]]


def select_photos(dest: Path, corpus: Path | None, n: int, extra: Sequence[Path] = ()) -> list[dict[str, Any]]:
    """Copy the extra photos and n corpus test photos into dest (flat: the outputs are matched by file name);
    one row per photo, for photos.tsv (the photos themselves are never committed)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rows = []
    sources = [(Path(p), "extra") for p in extra]
    if corpus is not None and (Path(corpus) / "images").is_dir() and n > 0:
        sources += [(p, "corpus test split") for p in corpus_test_photos(Path(corpus), n)]
    for src, origin in sources:
        target = dest / src.name
        if target.exists():
            raise FileExistsError(f"two photos named {src.name}")
        shutil.copyfile(src, target)
        rows.append({"name": src.name, "source": origin, "bytes": target.stat().st_size, "sha256": sha256_file(target)})
    return rows
