"""``hashtag tag``: keywords written into XMP sidecars and photos, checked with ExifTool as an independent reader."""
from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hashtag.runtime.cli import main
from hashtag.tag.metadata import Target, read, update
from tinybundle import TAGS, make_photo

EXIFTOOL = shutil.which("exiftool")
pytestmark = pytest.mark.skipif(
    EXIFTOOL is None, reason="needs ExifTool as the independent metadata reader (Debian: libimage-exiftool-perl)")
CAMERA = {"IFD0:Make": "Canon", "IFD0:Model": "EOS R6", "ExifIFD:DateTimeOriginal": "2024:05:01 10:00:00",
          "GPS:GPSLatitude": 48.8566, "GPS:GPSLongitude": 2.3522}
CAMERA_ARGS = ["-Make=Canon", "-Model=EOS R6", "-DateTimeOriginal=2024:05:01 10:00:00", "-GPSLatitude=48.8566",
               "-GPSLatitudeRef=N", "-GPSLongitude=2.3522", "-GPSLongitudeRef=E"]
ALL_TAGS = ["--threshold", "0"]  # every tag of the tiny bundle is chosen: keywords known in advance
WAIT_S = 300  # outer bound for a subprocess that is expected to finish by itself


def exif(*paths: Path) -> list[dict[str, Any]]:
    """ExifTool's view of files: group-qualified tag names, numbers as numbers."""
    out = subprocess.run([EXIFTOOL, "-j", "-G1", "-n", "-a", "-struct", *map(str, paths)],
                         capture_output=True, text=True, check=False)
    return json.loads(out.stdout) if out.stdout.strip() else []


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def camera_photo(path: Path, seed: int = 0, size: tuple[int, int] = (96, 64)) -> Path:
    """A JPEG with EXIF camera fields and GPS, written by ExifTool as a camera app would."""
    make_photo(path, size=size, seed=seed)
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", *CAMERA_ARGS, str(path)], check=True)
    return path


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def scan_data(path: Path) -> bytes:
    """A JPEG's entropy-coded image data: everything from the start-of-scan marker on."""
    data = path.read_bytes()
    return data[data.index(b"\xff\xda"):]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tag(bundle: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["tag", "--bundle", str(bundle), *args], catch_exceptions=False)


def records(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_sidecar_holds_the_keywords_photo_tools_read(tiny_bundle: Path, tmp_path: Path) -> None:
    photo = camera_photo(tmp_path / "photo.jpg")
    before = sha(photo)
    result = tag(tiny_bundle, *ALL_TAGS, str(tmp_path))
    assert result.exit_code == 0, result.output
    [meta] = exif(tmp_path / "photo.jpg.xmp")
    assert sorted(as_list(meta["XMP-dc:Subject"])) == sorted(TAGS)
    assert sorted(as_list(meta["XMP-lr:HierarchicalSubject"])) == sorted(f"hashtag|{t}" for t in TAGS)
    assert json.loads(meta["XMP-hashtag:Settings"])["threshold"] == 0.0
    scores = dict(s.split("=") for s in as_list(meta["XMP-hashtag:Scores"]))
    assert set(scores) == set(TAGS)
    assert sha(photo) == before  # the photo itself is not touched in sidecar mode
    assert "tagged 1," in result.stderr


def test_adobe_sidecar_name_and_hierarchy_root(tiny_bundle: Path, tmp_path: Path) -> None:
    make_photo(tmp_path / "photo.jpg")
    result = tag(tiny_bundle, *ALL_TAGS, "--top-k", "2", "--sidecar-name", "adobe", "--hierarchy-root", "auto-tags",
                 str(tmp_path / "photo.jpg"))
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "photo.jpg.xmp").exists()
    [meta] = exif(tmp_path / "photo.xmp")
    assert len(as_list(meta["XMP-dc:Subject"])) == 2
    assert all(h.startswith("auto-tags|") for h in as_list(meta["XMP-lr:HierarchicalSubject"]))


def test_adobe_names_that_clash_are_refused_not_merged(tiny_bundle: Path, tmp_path: Path) -> None:
    make_photo(tmp_path / "photo.jpg")
    make_photo(tmp_path / "photo.png", fmt="PNG", seed=1)
    result = tag(tiny_bundle, *ALL_TAGS, "--json", "--sidecar-name", "adobe", str(tmp_path))
    by_photo = {Path(r["image"]).name: r for r in records(result.stdout)}
    assert by_photo["photo.jpg"]["status"] == "tagged"
    assert by_photo["photo.png"]["status"] == "failed" and "also the sidecar of" in by_photo["photo.png"]["error"]
    assert result.exit_code == 1


def test_foreign_sidecar_keeps_every_property_and_the_persons_keywords(tiny_bundle: Path, tmp_path: Path) -> None:
    photo = make_photo(tmp_path / "photo.jpg")
    sidecar = tmp_path / "photo.jpg.xmp"
    subprocess.run([EXIFTOOL, "-q", "-o", str(sidecar), "-XMP-xmp:Rating=4", "-XMP-xmp:Label=Red",
                    "-XMP-dc:Subject=holiday", "-XMP-dc:Subject=Sea", "-XMP-dc:Title=Rome, day 2",
                    "-XMP-dc:Description=On the beach", "-XMP-photoshop:City=Roma", "-XMP-xmp:CreatorTool=darktable",
                    "-XMP-lr:HierarchicalSubject=places|Rome", "-XMP-xmpMM:DocumentID=abc-123",
                    "-XMP-iptcExt:PersonInImage=Ada", str(photo)], check=True)
    [foreign] = exif(sidecar)
    foreign_other = {k: v for k, v in foreign.items() if k not in ("XMP-dc:Subject", "XMP-lr:HierarchicalSubject")
                     and not k.startswith(("System:", "File:", "ExifTool:", "XMP-x:"))}

    assert tag(tiny_bundle, *ALL_TAGS, str(photo)).exit_code == 0
    [meta] = exif(sidecar)
    subject = as_list(meta["XMP-dc:Subject"])
    assert subject[:2] == ["holiday", "Sea"]
    assert sorted(subject[2:]) == sorted(t for t in TAGS if t != "sea")  # "Sea" was there already
    assert "places|Rome" in as_list(meta["XMP-lr:HierarchicalSubject"])
    assert {k: meta.get(k) for k in foreign_other} == foreign_other

    # Another threshold: only this tool's keywords change.
    assert tag(tiny_bundle, "--threshold", "0", "--top-k", "1", str(photo)).exit_code == 0
    [meta] = exif(sidecar)
    assert as_list(meta["XMP-dc:Subject"])[:2] == ["holiday", "Sea"] and len(as_list(meta["XMP-dc:Subject"])) <= 3

    # Undo: back to exactly the person's sidecar; the file stays (this tool did not create it).
    assert tag(tiny_bundle, "--remove", str(photo)).exit_code == 0
    [meta] = exif(sidecar)
    assert as_list(meta["XMP-dc:Subject"]) == ["holiday", "Sea"]
    assert as_list(meta["XMP-lr:HierarchicalSubject"]) == ["places|Rome"]
    assert not [k for k in meta if k.startswith("XMP-hashtag:")]
    assert {k: meta.get(k) for k in foreign_other} == foreign_other


DARKTABLE_SIDECAR = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
   xmp:Rating="3" xmpMM:DerivedFrom="photo.jpg" darktable:xmp_version="5" darktable:raw_params="0"
   darktable:auto_presets_applied="1" darktable:history_end="2" darktable:iop_order_version="4">
   <dc:subject><rdf:Bag><rdf:li>Ferien</rdf:li></rdf:Bag></dc:subject>
   <lr:hierarchicalSubject><rdf:Bag><rdf:li>darktable|format|jpg</rdf:li></rdf:Bag></lr:hierarchicalSubject>
   <darktable:masks_history><rdf:Seq/></darktable:masks_history>
   <darktable:history>
    <rdf:Seq>
     <rdf:li darktable:num="0" darktable:operation="exposure" darktable:enabled="1" darktable:modversion="6"
      darktable:params="0000000000000000" darktable:multi_name="" darktable:multi_priority="0"/>
     <rdf:li darktable:num="1" darktable:operation="colorin" darktable:enabled="1" darktable:modversion="7"
      darktable:params="gz48eJxjZBgFowAEAAQA" darktable:multi_name="" darktable:multi_priority="0"/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def test_darktable_sidecar_history_survives_tag_and_remove(tiny_bundle: Path, tmp_path: Path) -> None:
    photo = make_photo(tmp_path / "photo.jpg")
    sidecar = tmp_path / "photo.jpg.xmp"
    sidecar.write_text(DARKTABLE_SIDECAR)
    keep = ("XMP-darktable:", "XMP-xmp:", "XMP-xmpMM:")
    [before] = exif(sidecar)
    kept_before = {k: v for k, v in before.items() if k.startswith(keep)}
    assert len(kept_before["XMP-darktable:History"]) == 2
    assert tag(tiny_bundle, *ALL_TAGS, str(photo)).exit_code == 0
    [tagged] = exif(sidecar)
    assert {k: v for k, v in tagged.items() if k.startswith(keep)} == kept_before
    assert as_list(tagged["XMP-dc:Subject"])[0] == "Ferien"
    assert as_list(tagged["XMP-lr:HierarchicalSubject"])[0] == "darktable|format|jpg"
    assert tag(tiny_bundle, "--remove", str(photo)).exit_code == 0
    [removed] = exif(sidecar)
    assert {k: v for k, v in removed.items() if k.startswith(keep)} == kept_before
    assert as_list(removed["XMP-dc:Subject"]) == ["Ferien"]


def test_rerun_skips_force_redoes_remove_deletes_own_sidecar(tiny_bundle: Path, tmp_path: Path) -> None:
    photos = [make_photo(tmp_path / f"p{i}.jpg", seed=i) for i in range(3)]
    first = tag(tiny_bundle, *ALL_TAGS, "--json", str(tmp_path))
    assert [r["status"] for r in records(first.stdout)] == ["tagged"] * 3
    again = tag(tiny_bundle, *ALL_TAGS, "--json", str(tmp_path))
    assert [r["status"] for r in records(again.stdout)] == ["skipped"] * 3
    forced = tag(tiny_bundle, *ALL_TAGS, "--json", "--force", str(tmp_path))
    assert [r["status"] for r in records(forced.stdout)] == ["unchanged"] * 3
    other = tag(tiny_bundle, "--threshold", "1", "--json", str(tmp_path))  # other settings: redone, keywords go
    assert all(r["status"] == "tagged" and sorted(r["written"]["removed"]) == sorted(TAGS)
               for r in records(other.stdout))
    removed = tag(tiny_bundle, "--remove", str(tmp_path))
    assert removed.exit_code == 0
    assert not list(tmp_path.glob("*.xmp"))
    assert all(p.exists() for p in photos)


def test_the_first_look_is_what_is_written_to_unless_someone_edits_the_file_meanwhile(tmp_path: Path) -> None:
    photo = make_photo(tmp_path / "photo.jpg")
    target = Target.for_photo(photo, embed=False)
    subprocess.run([EXIFTOOL, "-q", "-o", str(target.path), "-XMP-dc:Subject=holiday", str(photo)], check=True)

    def adding(keyword: str) -> Any:
        return lambda now: replace(now, subject=(*now.subject, keyword))

    assert update(read(target), adding("dog"))[1].subject == ("holiday", "dog")
    looked = read(target)
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject+=Rome", str(target.path)], check=True)
    before, after = update(looked, adding("cat"))  # edited while the models ran: read again, the edit is kept
    assert before.subject == ("holiday", "dog", "Rome") and after.subject == ("holiday", "dog", "Rome", "cat")
    [meta] = exif(target.path)
    assert as_list(meta["XMP-dc:Subject"]) == ["holiday", "dog", "Rome", "cat"]


def test_json_records_are_the_prediction_plus_what_was_written(tiny_bundle: Path, tmp_path: Path) -> None:
    make_photo(tmp_path / "photo.jpg")
    predicted = CliRunner().invoke(main, ["predict", "--bundle", str(tiny_bundle), *ALL_TAGS, "--json",
                                          str(tmp_path / "photo.jpg")])
    [record] = records(tag(tiny_bundle, *ALL_TAGS, "--json", str(tmp_path / "photo.jpg")).stdout)
    [expected] = records(predicted.stdout)
    assert {k: record[k] for k in expected} == expected
    assert record["written"] == {"path": str(tmp_path / "photo.jpg.xmp"), "embedded": False,
                                 "added": record["written"]["added"], "removed": []}
    assert sorted(record["written"]["added"]) == sorted(TAGS)


def test_dry_run_writes_nothing(tiny_bundle: Path, tmp_path: Path) -> None:
    photo = make_photo(tmp_path / "photo.jpg")
    before = sha(photo)
    result = tag(tiny_bundle, *ALL_TAGS, "--dry-run", "--embed", str(photo))
    assert result.exit_code == 0 and "would write photo.jpg" in result.stdout
    assert sha(photo) == before and list(tmp_path.iterdir()) == [photo]


def test_embed_keeps_pixels_and_other_metadata_and_syncs_iptc(tiny_bundle: Path, tmp_path: Path) -> None:
    photo = camera_photo(tmp_path / "photo.jpg", size=(320, 240))
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-IPTC:Keywords=family", "-XMP-dc:Subject=family",
                    "-XMP-xmp:Rating=5", str(photo)], check=True)
    pixels_before, scan_before = pixels(photo), scan_data(photo)
    [meta_before] = exif(photo)

    result = tag(tiny_bundle, *ALL_TAGS, "--embed", str(photo))
    assert result.exit_code == 0, result.output
    [meta] = exif(photo)
    assert as_list(meta["XMP-dc:Subject"])[0] == "family"
    assert sorted(as_list(meta["XMP-dc:Subject"])[1:]) == sorted(TAGS)
    assert as_list(meta["IPTC:Keywords"]) == as_list(meta["XMP-dc:Subject"])  # kept in sync (MWG)
    for key, value in {**CAMERA, "XMP-xmp:Rating": 5}.items():
        assert meta[key] == pytest.approx(value) if isinstance(value, float) else meta[key] == value
    assert np.array_equal(pixels(photo), pixels_before)
    assert scan_data(photo) == scan_before
    assert not list(tmp_path.glob(".*"))  # no temp file left

    assert tag(tiny_bundle, "--remove", "--embed", str(photo)).exit_code == 0
    [meta] = exif(photo)
    assert as_list(meta["XMP-dc:Subject"]) == ["family"] and as_list(meta["IPTC:Keywords"]) == ["family"]
    ignored = ("System:", "File:", "XMP-x:XMPToolkit")  # the file's dates, size and the XMP writer's name
    assert {k: v for k, v in meta.items() if not k.startswith(ignored)} == \
           {k: v for k, v in meta_before.items() if not k.startswith(ignored)}


def test_iptc_is_written_only_where_it_exists_or_is_asked_for(tiny_bundle: Path, tmp_path: Path) -> None:
    plain, asked = make_photo(tmp_path / "plain.jpg"), make_photo(tmp_path / "asked.jpg", seed=1)
    assert tag(tiny_bundle, *ALL_TAGS, "--embed", str(plain)).exit_code == 0
    assert tag(tiny_bundle, *ALL_TAGS, "--embed", "--iptc", str(asked)).exit_code == 0
    [m_plain, m_asked] = exif(plain, asked)
    assert "IPTC:Keywords" not in m_plain and sorted(as_list(m_plain["XMP-dc:Subject"])) == sorted(TAGS)
    assert sorted(as_list(m_asked["IPTC:Keywords"])) == sorted(TAGS)
    assert tag(tiny_bundle, "--iptc", str(plain)).exit_code == 2  # --iptc needs --embed


def test_a_killed_writers_temporary_and_hidden_files_are_not_photos(tiny_bundle: Path, tmp_path: Path) -> None:
    """What SIGKILL mid-write leaves (a half-written ``.<pid>-<random>.hashtag-tmp.<name>``) and macOS ``._``
    files are passed over by the folder walk; the stale temporary goes when its photo is written; an empty
    photo fails alone, the run goes on."""
    folder = tmp_path / "library"
    photo = make_photo(folder / "img.jpg")
    stale = folder / ".4242-0badc0de.hashtag-tmp.img.jpg"
    stale.write_bytes(photo.read_bytes()[:100])  # a killed writer's half a file
    (folder / "._img.jpg").write_bytes(b"\x00\x05\x16\x07")  # an AppleDouble resource fork
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    result = tag(tiny_bundle, *ALL_TAGS, "--embed", "--json", str(folder))
    records = {Path(r["image"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert set(records) == {"img.jpg", "empty.jpg"} and result.exit_code == 1, result.output
    assert records["img.jpg"]["status"] == "tagged" and records["empty.jpg"]["status"] == "failed"
    assert not stale.exists() and (folder / "._img.jpg").exists()
    assert sorted(as_list(exif(photo)[0]["XMP-dc:Subject"])) == sorted(TAGS)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_embed_in_png_and_webp(tiny_bundle: Path, tmp_path: Path, fmt: str) -> None:
    photo = make_photo(tmp_path / f"photo.{fmt.lower()}", fmt=fmt)
    before = pixels(photo)
    assert tag(tiny_bundle, *ALL_TAGS, "--embed", str(photo)).exit_code == 0
    [meta] = exif(photo)
    assert sorted(as_list(meta["XMP-dc:Subject"])) == sorted(TAGS)
    assert np.array_equal(pixels(photo), before)


def test_bad_files_are_reported_and_the_run_goes_on(tiny_bundle: Path, tmp_path: Path) -> None:
    good = make_photo(tmp_path / "good.jpg")
    (tmp_path / "notes.jpg").write_text("not a photo")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(make_photo(tmp_path / "whole.jpg", size=(300, 200)).read_bytes()[:400])
    (tmp_path / "whole.jpg").unlink()
    make_photo(tmp_path / "corrupt.jpg", seed=2)
    make_photo(tmp_path / "cut.jpg", seed=3)
    (tmp_path / "corrupt.jpg.xmp").write_text("garbage, not XMP")
    (tmp_path / "cut.jpg.xmp").write_text('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta '
                                          'xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02'
                                          '/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:dc="http://purl.'
                                          'org/dc/elements/1.1/"><dc:subject><rdf:Bag><rdf:li>cat</rdf:li>')
    sidecars_before = {p: p.read_bytes() for p in tmp_path.glob("*.xmp")}
    result = tag(tiny_bundle, *ALL_TAGS, "--json", str(tmp_path))
    assert result.exit_code == 1
    status = {Path(r["image"]).name: r for r in records(result.stdout)}
    assert status["good.jpg"]["status"] == "tagged"
    assert status["notes.jpg"]["status"] == status["truncated.jpg"]["status"] == "failed"
    assert status["corrupt.jpg"]["status"] == status["cut.jpg"]["status"] == "failed"
    assert "cannot read its metadata" in status["corrupt.jpg"]["error"]
    assert "XMP cannot be parsed" in status["cut.jpg"]["error"]
    assert {p: p.read_bytes() for p in tmp_path.glob("*.xmp")} == {  # corrupt sidecars never overwritten
        **sidecars_before, tmp_path / "good.jpg.xmp": (tmp_path / "good.jpg.xmp").read_bytes()}
    assert "failed 4" in result.stderr and good.exists()


def test_read_only_photo_folder_and_unsupported_format(tiny_bundle: Path, tmp_path: Path) -> None:
    ro_photo = make_photo(tmp_path / "readonly.jpg")
    ro_photo.chmod(0o444)
    bmp = make_photo(tmp_path / "photo.bmp", fmt="BMP")
    folder = tmp_path / "locked"
    folder.mkdir()
    locked = make_photo(folder / "inside.jpg", seed=3)
    hashes = {p: sha(p) for p in (ro_photo, bmp, locked)}
    folder.chmod(0o555)
    try:
        embedded = tag(tiny_bundle, *ALL_TAGS, "--embed", "--json", str(ro_photo), str(bmp))
        sidecars = tag(tiny_bundle, *ALL_TAGS, "--json", str(folder))
    finally:
        folder.chmod(0o755)
    errors = {Path(r["image"]).name: r["error"] for r in records(embedded.stdout) + records(sidecars.stdout)}
    assert "read-only" in errors["readonly.jpg"]
    assert "embedded only in" in errors["photo.bmp"]
    assert "read-only" in errors["inside.jpg"]
    assert embedded.exit_code == sidecars.exit_code == 1
    assert all(sha(p) == h for p, h in hashes.items())
    assert list(folder.iterdir()) == [locked]


def test_names_with_spaces_and_non_ascii(tiny_bundle: Path, tmp_path: Path) -> None:
    photo = make_photo(tmp_path / "mój kot — über.jpg")
    assert tag(tiny_bundle, *ALL_TAGS, str(tmp_path)).exit_code == 0
    assert tag(tiny_bundle, *ALL_TAGS, "--embed", str(photo)).exit_code == 0
    [sidecar, embedded] = exif(tmp_path / "mój kot — über.jpg.xmp", photo)
    assert sorted(as_list(sidecar["XMP-dc:Subject"])) == sorted(as_list(embedded["XMP-dc:Subject"])) == sorted(TAGS)


def test_symlinks_are_read_but_never_written_through(tiny_bundle: Path, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    target = make_photo(real / "photo.jpg")
    before = sha(target)
    link = tmp_path / "link.jpg"
    link.symlink_to(target)
    assert tag(tiny_bundle, *ALL_TAGS, str(link)).exit_code == 0
    assert (tmp_path / "link.jpg.xmp").is_file() and not (real / "photo.jpg.xmp").exists()
    embedded = tag(tiny_bundle, *ALL_TAGS, "--embed", "--json", str(link))
    assert embedded.exit_code == 1 and "symbolic link" in records(embedded.stdout)[0]["error"]
    assert link.is_symlink() and sha(target) == before
    # A sidecar that is itself a link is not written through either.
    other = make_photo(tmp_path / "other.jpg", seed=1)
    elsewhere = real / "elsewhere.xmp"
    elsewhere.write_text("")
    (tmp_path / "other.jpg.xmp").symlink_to(elsewhere)
    assert tag(tiny_bundle, *ALL_TAGS, str(other)).exit_code == 1
    assert elsewhere.read_text() == ""


def test_huge_existing_xmp_is_never_lost(tiny_bundle: Path, tmp_path: Path) -> None:
    """At JPEG's 64 KB XMP limit, and past it (Adobe's Extended XMP): embedding is refused, the file untouched;
    a sidecar works."""
    for name, size, reason in (("full.jpg", 64_500, "larger than 65535 bytes"),
                               ("extended.jpg", 200_000, "Extended XMP")):
        photo = make_photo(tmp_path / name)
        text = tmp_path / "description.txt"
        text.write_text("x" * size)
        subprocess.run([EXIFTOOL, "-q", "-overwrite_original", f"-XMP-dc:Description<={text}", str(photo)],
                       check=True)
        text.unlink()
        before = sha(photo)
        result = tag(tiny_bundle, *ALL_TAGS, "--embed", "--json", str(photo))
        [record] = records(result.stdout)
        assert record["status"] == "failed" and reason in record["error"] and result.exit_code == 1
        assert sha(photo) == before
        assert tag(tiny_bundle, *ALL_TAGS, str(photo)).exit_code == 0
        [meta, sidecar] = exif(photo, Path(f"{photo}.xmp"))
        assert meta["XMP-dc:Description"] == "x" * size
        assert sorted(as_list(sidecar["XMP-dc:Subject"])) == sorted(TAGS)
    assert not list(tmp_path.glob(".*"))


def _hashtag_cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from hashtag.runtime.cli import main; main()", *args]


def _start_stalled(*args: str) -> tuple[subprocess.Popen, list[str]]:
    """Start ``hashtag``, read two JSON records, then stop reading: once the pipe is full the run waits
    inside a record, so however fast the machine, it is mid-run when the test acts."""
    proc = subprocess.Popen(_hashtag_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, [proc.stdout.readline() for _ in range(2)]  # type: ignore[union-attr]


def _folder(path: Path, n: int, size: tuple[int, int]) -> list[Path]:
    """``n`` photos with EXIF camera fields and GPS (one ExifTool call for them all)."""
    path.mkdir()
    photos = [make_photo(path / f"img{i:03d}.jpg", size=size, seed=i) for i in range(n)]
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", *CAMERA_ARGS, str(path)], check=True)
    return photos


def test_ctrl_c_finishes_the_current_photo_and_prints_a_summary(tiny_bundle: Path, tmp_path: Path) -> None:
    photos = _folder(tmp_path / "library", 150, (64, 48))
    proc, first = _start_stalled("tag", "--bundle", str(tiny_bundle), *ALL_TAGS, "--json", str(tmp_path / "library"))
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 130, err
    done = [json.loads(line) for line in first + rest.splitlines()]
    assert [r["status"] for r in done] == ["tagged"] * len(done)
    assert len(done) < len(photos)  # the pipe held the run back: it cannot have finished before the signal
    assert f"interrupted, {len(photos) - len(done)} photos not done" in err
    written = {Path(r["image"]).name + ".xmp" for r in done}
    assert {p.name for p in (tmp_path / "library").glob("*.xmp")} == written  # each reported photo, no other
    for meta in exif(*sorted((tmp_path / "library").glob("*.xmp"))):
        assert sorted(as_list(meta["XMP-dc:Subject"])) == sorted(TAGS)


def test_sigkill_during_embed_leaves_no_broken_photo_and_a_rerun_finishes(tiny_bundle: Path, tmp_path: Path) -> None:
    folder = tmp_path / "library"
    photos = _folder(folder, 120, (1200, 900))
    originals = {p: pixels(p) for p in photos}
    proc, _ = _start_stalled("tag", "--bundle", str(tiny_bundle), *ALL_TAGS, "--embed", "--iptc", "--json",
                             str(folder))
    proc.kill()
    proc.communicate(timeout=WAIT_S)

    def check_all() -> int:
        tagged = 0
        for meta in exif(*photos):
            photo = Path(meta["SourceFile"])
            assert np.array_equal(pixels(photo), originals[photo])
            assert all(meta[k] == pytest.approx(v) if isinstance(v, float) else meta[k] == v
                       for k, v in CAMERA.items())
            subject = sorted(as_list(meta.get("XMP-dc:Subject")))
            assert subject in ([], sorted(TAGS))  # untouched or fully tagged
            assert sorted(as_list(meta.get("IPTC:Keywords"))) == subject
            assert ("XMP-hashtag:Settings" in meta) == bool(subject)
            tagged += bool(subject)
        return tagged

    assert 2 <= check_all() < len(photos)
    rerun = subprocess.run(_hashtag_cli("tag", "--bundle", str(tiny_bundle), *ALL_TAGS, "--embed", "--iptc",
                                        "--json", str(folder)), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    statuses = [json.loads(line)["status"] for line in rerun.stdout.splitlines()]
    assert statuses.count("skipped") >= 2 and statuses.count("tagged") >= 1
    assert set(statuses) == {"skipped", "tagged"}
    assert check_all() == len(photos)
    assert sorted(folder.iterdir()) == sorted(photos)  # no temp file left behind
