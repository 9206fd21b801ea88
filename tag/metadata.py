"""Keywords in XMP sidecars and in the photos' own XMP/IPTC, read and written with exiv2 (python-exiv2).

A photo's metadata is read once (``read``, a Snapshot): that one read decides whether the photo needs the
models and is what the change is made to, unless the file changed in between. Writes are durable atomic
writes (``hashtag.runtime.files``): a crash or SIGKILL at any moment leaves the old file or the new one,
never a broken one. Anything this module cannot carry over safely (unparsable XMP, Adobe's Extended XMP in
a JPEG, a read-only file or folder, a symlink) is refused with a MetadataError before anything is written.
"""
from __future__ import annotations

import mmap
import os
import shutil
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import exiv2

from hashtag.runtime.errors import HashtagError
from hashtag.runtime.files import atomic_path, remove_durably, remove_stale_temps
from hashtag.tag.record import (
    BAG_PROPERTIES, CREATED_PROPERTY, NAMESPACE, PREFIX, SCORES_PROPERTY, TEXT_PROPERTIES, TagRecord,
)

exiv2.LogMsg.setLevel(exiv2.LogMsg.Level.mute)  # every failure reaches us as an exception instead
exiv2.XmpParser.initialize()  # not thread-safe: done once, at import
exiv2.XmpProperties.registerNs(NAMESPACE, PREFIX)

SUBJECT = "Xmp.dc.subject"
HIERARCHY = "Xmp.lr.hierarchicalSubject"
IPTC_KEYWORDS = "Iptc.Application2.Keywords"
IPTC_CHARSET = "Iptc.Envelope.CharacterSet"
IPTC_UTF8 = "\x1b%G"
# Formats whose XMP exiv2 rewrites without touching the image data; TIFF and raw files are left to sidecars.
EMBEDDABLE = {exiv2.ImageType.jpeg: "JPEG", exiv2.ImageType.png: "PNG", exiv2.ImageType.webp: "WebP"}
EXTENDED_XMP = b"http://ns.adobe.com/xmp/extension/\x00"  # exiv2 would drop these parts of a large packet
SIDECAR_NAMINGS = ("darktable", "adobe")  # photo.jpg.xmp (darktable, digiKam, Immich) or photo.xmp (Lightroom)


class MetadataError(HashtagError):
    """A photo's metadata cannot be read or written safely; the message names the file and the reason."""


@dataclass(frozen=True)
class Keywords:
    """The keyword lists in one place (a sidecar or a photo) and this tool's record there."""

    subject: tuple[str, ...] = ()
    hierarchical: tuple[str, ...] = ()
    iptc: tuple[str, ...] | None = None  # None: the place has no IPTC block
    record: TagRecord | None = None


@dataclass(frozen=True)
class Target:
    """Where one photo's keywords go: its sidecar, or the photo itself (``embed``)."""

    photo: Path
    path: Path  # the file written: the sidecar, or the photo
    embed: bool

    @classmethod
    def for_photo(cls, photo: Path, embed: bool, naming: str = SIDECAR_NAMINGS[0]) -> "Target":
        """The target of ``photo`` for the chosen mode and sidecar naming."""
        if embed:
            return cls(photo, photo, True)
        if naming not in SIDECAR_NAMINGS:
            raise ValueError(f"unknown sidecar naming {naming!r} (choose from {', '.join(SIDECAR_NAMINGS)})")
        name = photo.name + ".xmp" if naming == "darktable" else photo.stem + ".xmp"
        return cls(photo, photo.with_name(name), False)


# -- reading -----------------------------------------------------------------------------------------


def _bag(xmp: exiv2.XmpData, key: str) -> tuple[str, ...]:
    if key not in xmp:
        return ()
    datum = xmp[key]
    return tuple(datum.toString(i) for i in range(datum.count()))


def _text(xmp: exiv2.XmpData, key: str) -> str:
    return xmp[key].toString() if key in xmp else ""


def _record(xmp: exiv2.XmpData) -> TagRecord | None:
    ns = f"Xmp.{PREFIX}."
    if ns + TEXT_PROPERTIES["settings"] not in xmp:
        return None
    scores = {}
    for item in _bag(xmp, ns + SCORES_PROPERTY):
        tag, _, value = item.rpartition("=")
        try:
            scores[tag] = float(value)
        except ValueError:
            continue
    return TagRecord(
        **{f: _text(xmp, ns + p) for f, p in TEXT_PROPERTIES.items()},
        **{f: _bag(xmp, ns + p) for f, p in BAG_PROPERTIES.items()},
        scores=scores,
        created_sidecar=_text(xmp, ns + CREATED_PROPERTY) == "True",
    )


def _keywords(image: exiv2.Image) -> Keywords:
    xmp, iptc = image.xmpData(), image.iptcData()
    # exiv2 mirrors a sidecar's XMP into IPTC when reading it: only a photo's own IPTC block counts.
    has_iptc = image.imageType() != exiv2.ImageType.xmp and not iptc.empty()
    return Keywords(
        subject=_bag(xmp, SUBJECT),
        hierarchical=_bag(xmp, HIERARCHY),
        iptc=tuple(d.toString() for d in iptc if d.key() == IPTC_KEYWORDS) if has_iptc else None,
        record=_record(xmp),
    )


def _check_packet(image: exiv2.Image, where: Path) -> None:
    """Refuse XMP that exiv2 could not parse: it reads as empty, and writing would lose it."""
    packet = image.xmpPacket().strip().strip("\x00")
    if not packet:
        return
    try:
        ElementTree.fromstring(packet)
    except ElementTree.ParseError as exc:
        raise MetadataError(f"{where}: its XMP cannot be parsed ({exc}); left untouched") from None


def _has_extended_xmp(path: Path) -> bool:
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return False
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(EXTENDED_XMP) >= 0


def _open(path: Path) -> exiv2.Image:
    try:
        image = exiv2.ImageFactory.open(str(path))
        image.readMetadata()
    except exiv2.Exiv2Error as exc:
        reason = str(exc.args[-1]).removeprefix(f"{path}: ")
        raise MetadataError(f"{path}: cannot read its metadata ({reason}); left untouched") from None
    _check_packet(image, path)
    return image


Identity = tuple[int, int, int]  # (inode, size, mtime in ns) of the path itself: replaced or rewritten, it differs


def _identity(path: Path) -> Identity | None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class Snapshot:
    """One read of a target: what it holds (None: no sidecar yet), the opened sidecar (its XMP is carried
    into the rewritten one), and the file's identity when read (``update`` trusts the read while it holds)."""

    target: Target
    keywords: Keywords | None = None
    sidecar: exiv2.Image | None = field(default=None, repr=False, compare=False)
    identity: Identity | None = None


def read(target: Target) -> Snapshot:
    """What ``target`` holds now, refused (MetadataError) where it could not be written safely."""
    if not target.embed and not target.path.exists() and not target.path.is_symlink():
        return Snapshot(target)
    _check_place(target)
    identity = _identity(target.path)  # taken first: a change made while reading shows as a change
    image = _open(target.path)
    return Snapshot(target, _keywords(image), None if target.embed else image, identity)


# -- checks ----------------------------------------------------------------------------------------


def _writable(path: Path) -> bool:
    """Writable for us and meant to be: root ignores permission bits, this tool respects them."""
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)


def _check_place(target: Target) -> None:
    """Refuse, before any work, what must not be written: symlinks, unsupported formats."""
    if target.path.is_symlink():
        what = "the photo is a symbolic link; not written through (use a sidecar)" if target.embed else \
            "the sidecar is a symbolic link; not written through"
        raise MetadataError(f"{target.path}: {what}")
    if target.embed:
        try:
            kind = exiv2.ImageFactory.getType(str(target.path))
        except exiv2.Exiv2Error as exc:  # an empty or unreadable file: this photo fails, the run goes on
            raise MetadataError(f"{target.path}: cannot read it ({exc.args[-1]}); left untouched") from None
        if kind not in EMBEDDABLE:
            raise MetadataError(f"{target.path}: keywords are embedded only in {', '.join(EMBEDDABLE.values())} "
                                "files; use a sidecar for this one")
        if kind == exiv2.ImageType.jpeg and _has_extended_xmp(target.path):
            raise MetadataError(f"{target.path}: holds Extended XMP, which would be lost; use a sidecar")


def _check_writable(target: Target) -> None:
    folder = target.path.parent
    if not _writable(folder):
        raise MetadataError(f"{target.path}: the folder {folder} is read-only")
    if target.path.exists() and not _writable(target.path):
        raise MetadataError(f"{target.path}: the file is read-only")


# -- writing ---------------------------------------------------------------------------------------


def _set_bag(xmp: exiv2.XmpData, key: str, items: tuple[str, ...]) -> None:
    if key in xmp:
        del xmp[key]
    if items:
        value = exiv2.XmpArrayValue(exiv2.TypeId.xmpBag)
        for item in items:
            value.read(item)
        xmp[key] = value


def _set_text(xmp: exiv2.XmpData, key: str, text: str) -> None:
    if key in xmp:
        del xmp[key]
    if text:
        xmp[key] = text


def _set_record(xmp: exiv2.XmpData, record: TagRecord | None) -> None:
    ns = f"Xmp.{PREFIX}."
    empty = TagRecord()
    for f, p in TEXT_PROPERTIES.items():
        _set_text(xmp, ns + p, getattr(record or empty, f))
    for f, p in BAG_PROPERTIES.items():
        _set_bag(xmp, ns + p, getattr(record or empty, f))
    scores = tuple(f"{t}={s:.4f}" for t, s in (record or empty).scores.items())
    _set_bag(xmp, ns + SCORES_PROPERTY, scores)
    _set_text(xmp, ns + CREATED_PROPERTY, "True" if record and record.created_sidecar else "")


def _set_iptc(iptc: exiv2.IptcData, keywords: tuple[str, ...]) -> None:
    while IPTC_KEYWORDS in iptc:
        del iptc[IPTC_KEYWORDS]
    if any(not k.isascii() for k in keywords) and IPTC_CHARSET not in iptc:
        iptc[IPTC_CHARSET] = IPTC_UTF8
    for keyword in keywords:
        iptc.add(exiv2.IptcKey(IPTC_KEYWORDS), exiv2.StringValue(keyword))


def _apply(image: exiv2.Image, keywords: Keywords) -> None:
    xmp = image.xmpData()
    _set_bag(xmp, SUBJECT, keywords.subject)
    _set_bag(xmp, HIERARCHY, keywords.hierarchical)
    _set_record(xmp, keywords.record)
    if keywords.iptc is not None:
        _set_iptc(image.iptcData(), keywords.iptc)


Change = Callable[[Keywords | None], "Keywords | None"]


def update(snapshot: Snapshot, change: Change, dry_run: bool = False) -> tuple[Keywords | None, Keywords | None]:
    """Apply ``change`` (current keywords -> new ones, or None for nothing to do) to what ``snapshot`` read,
    atomically; a file changed since is read again, so nobody's edit is lost.

    Returns (before, after); after is None when nothing changed. A sidecar this tool created is deleted
    instead when the change leaves it with no metadata at all.
    """
    target = snapshot.target
    if _identity(target.path) != snapshot.identity:
        snapshot = read(target)
    before = snapshot.keywords
    after = change(before)
    if after is None or dry_run:
        return before, after
    _check_writable(target)
    remove_stale_temps(target.path)
    try:
        if target.embed:
            _write_photo(target.path, after)
        else:
            _write_sidecar(target.path, snapshot.sidecar, after, before)
    except exiv2.Exiv2Error as exc:
        raise MetadataError(f"{target.path}: exiv2 could not write it ({exc.args[-1]}); left untouched") from None
    return before, after


def _write_photo(path: Path, keywords: Keywords) -> None:
    with atomic_path(path, durable=True) as temp:
        shutil.copyfile(path, temp)
        image = exiv2.ImageFactory.open(str(temp))
        image.readMetadata()  # of the copy being written: exiv2 rewrites a file from what it read of it
        _apply(image, keywords)
        image.writeMetadata()
        del image  # closes exiv2's handle before the rename


def _write_sidecar(path: Path, image: exiv2.Image | None, keywords: Keywords, before: Keywords | None) -> None:
    if image is not None and before is not None and before.record is not None and before.record.created_sidecar \
            and keywords.record is None:
        _apply(image, keywords)
        if image.xmpData().empty():
            remove_durably(path)
            return
    with atomic_path(path, durable=True) as temp:
        sidecar = exiv2.ImageFactory.create(exiv2.ImageType.xmp, str(temp))
        if image is not None:
            sidecar.setXmpData(image.xmpData())
        _apply(sidecar, keywords)
        sidecar.writeMetadata()
        del sidecar
