"""Image decoding: every format and mode users send becomes upright RGB; bad input is named and explained."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hashtag.runtime import ImageError
from hashtag.runtime.images import _reduce, find_images, load_image
from tinybundle import make_photo


def _save(img: Image.Image, path: Path, **kwargs: object) -> Path:
    img.save(path, **kwargs)
    return path


@pytest.mark.parametrize("fmt,suffix", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp"),
                                        ("TIFF", "tiff"), ("GIF", "gif")])
def test_formats_decode_to_rgb(tmp_path: Path, fmt: str, suffix: str) -> None:
    path = make_photo(tmp_path / f"p.{suffix}", size=(30, 20), fmt=fmt)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (30, 20)


def test_bytes_input() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (5, 4), (10, 20, 30)).save(buf, "PNG")
    img = load_image(buf.getvalue())
    assert img.getpixel((0, 0)) == (10, 20, 30)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A 40x20 landscape stored with orientation 6 (rotate 90 CW) is shown as 20x40 portrait."""
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(img, tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(path)
    assert out.size == (20, 40)
    top = np.asarray(out)[2, 10]
    bottom = np.asarray(out)[37, 10]
    assert top[0] > 200 and top[1] < 60  # the red left half is now on top
    assert bottom[0] < 60


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "1", "I", "F"])
def test_odd_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    base = Image.fromarray(np.linspace(0, 255, 16 * 8).reshape(8, 16).astype(np.uint8))
    if mode == "I;16":
        img = Image.fromarray((np.linspace(0, 65535, 16 * 8).reshape(8, 16)).astype(np.uint16))
    elif mode == "I":
        img = base.convert("I")
    elif mode == "F":
        img = base.convert("F")
    else:
        img = base.convert(mode)
    fmt = {"CMYK": "JPEG", "F": "TIFF", "I": "TIFF"}.get(mode, "PNG")
    path = _save(img, tmp_path / f"m.{fmt.lower()}", format=fmt)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (16, 8)
    arr = np.asarray(out).astype(int)
    # Dark stays dark, bright stays bright: 16-bit data is scaled, not clipped at 255.
    assert arr[0, 0].mean() < arr[-1, -1].mean()
    if mode == "I;16":
        assert 100 < arr[4, 8].mean() < 160


def test_transparent_pixels_are_flattened_on_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    out = load_image(_save(img, tmp_path / "t.png"))
    assert out.getpixel((0, 0)) == (255, 255, 255)


def test_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    r, g, b = load_image(path).getpixel((4, 4))
    assert r > 200 and b < 50


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("hello, I am text")
    with pytest.raises(ImageError, match=r"notes.jpg: not an image"):
        load_image(path)


def test_truncated(tmp_path: Path) -> None:
    full = make_photo(tmp_path / "full.jpg", size=(200, 150)).read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(ImageError, match=r"cut.jpg: truncated"):
        load_image(path)


def test_empty_file_and_empty_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        load_image(path)
    with pytest.raises(ImageError, match="empty data"):
        load_image(b"")


def test_too_many_pixels(tmp_path: Path) -> None:
    path = _save(Image.new("L", (3000, 3000)), tmp_path / "big.png")
    with pytest.raises(ImageError, match=r"too many pixels \(3000x3000"):
        load_image(path, max_pixels=1_000_000)


def test_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_permission_denied(tmp_path: Path) -> None:
    locked = make_photo(tmp_path / "locked.jpg")
    locked.chmod(0)
    with pytest.raises(ImageError, match="permission denied"):
        load_image(locked)


def test_find_images_recurses_and_sorts(tmp_path: Path) -> None:
    make_photo(tmp_path / "b" / "deep" / "z.PNG", fmt="PNG")
    make_photo(tmp_path / "a.jpg")
    (tmp_path / "readme.txt").write_text("not an image")
    (tmp_path / "._a.jpg").write_bytes(b"\x00\x05\x16\x07")  # hidden: a macOS resource fork, not a photo
    explicit = tmp_path / "explicit.dat"
    explicit.write_text("kept because named")
    hidden_but_named = tmp_path / ".named.jpg"
    found = find_images([tmp_path, explicit, hidden_but_named])
    assert found == [tmp_path / "a.jpg", tmp_path / "b" / "deep" / "z.PNG", explicit, hidden_but_named]


def _gradient(size: tuple[int, int]) -> Image.Image:
    """A smooth image (no noise), so a reduced decode and a full one agree closely after resizing."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    return Image.fromarray(np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) * 255 // (w + h - 2)],
                                    -1).astype(np.uint8), "RGB")


@pytest.mark.parametrize(("size", "decoded"), [((2400, 1800), (600, 450)), ((1280, 960), (640, 480)),
                                               ((700, 500), (700, 500)), ((200, 150), (200, 150))])
def test_jpeg_draft_decodes_at_the_smallest_scale_covering_min_side(tmp_path: Path, size: tuple[int, int],
                                                                    decoded: tuple[int, int]) -> None:
    """DCT scaling by 1/2, 1/4 or 1/8 while both sides stay >= 299; never below, never upscaled."""
    path = _save(_gradient(size), tmp_path / "big.jpg", quality=90)
    out = load_image(path, min_side=299)
    assert out.mode == "RGB" and out.size == decoded
    full = np.asarray(load_image(path).resize((299, 299), Image.Resampling.BILINEAR), dtype=float)
    draft = np.asarray(out.resize((299, 299), Image.Resampling.BILINEAR), dtype=float)
    assert np.abs(full - draft).mean() < 2.0


def test_draft_keeps_exif_orientation(tmp_path: Path) -> None:
    """A 1600x800 landscape stored with orientation 6 comes out as a portrait, drafted to 400x800."""
    arr = np.zeros((800, 1600, 3), np.uint8)
    arr[:, :800] = (255, 0, 0)  # left half red: on top once rotated
    exif = Image.Exif()
    exif[0x0112] = 6
    out = load_image(_save(Image.fromarray(arr), tmp_path / "rot.jpg", exif=exif.tobytes()), min_side=200)
    assert out.size == (200, 400)
    top, bottom = np.asarray(out)[20, 100], np.asarray(out)[380, 100]
    assert top[0] > 200 and top[1] < 60 and bottom[0] < 60


@pytest.mark.parametrize(("fmt", "mode"), [("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "P"), ("PNG", "I;16"),
                                           ("WEBP", "RGB"), ("TIFF", "RGB"), ("JPEG", "L"), ("JPEG", "CMYK"),
                                           ("PNG", "1")])
def test_other_formats_and_modes_are_reduced_early(tmp_path: Path, fmt: str, mode: str) -> None:
    """1000x700 reduced by 3 (the largest factor keeping 700 >= 200) to 334x234, still right after conversion."""
    base = _gradient((1000, 700))
    img = {"RGBA": lambda: base.convert("RGBA"), "P": lambda: base.convert("P"),
           "I;16": lambda: Image.fromarray((np.asarray(base.convert("L"), dtype=np.uint16) * 257)),
           "L": lambda: base.convert("L"), "CMYK": lambda: base.convert("CMYK"),
           "1": lambda: base.convert("1"), "RGB": lambda: base}[mode]()
    path = _save(img, tmp_path / f"big.{fmt.lower()}", format=fmt)
    full, reduced = load_image(path), load_image(path, min_side=200)
    expected_size = (334, 234) if fmt != "JPEG" else (500, 350)  # JPEG: DCT scaling by 2 instead
    assert reduced.mode == "RGB" and reduced.size == expected_size and full.size == (1000, 700)
    a = np.asarray(full.resize((200, 200), Image.Resampling.BILINEAR), dtype=float)
    b = np.asarray(reduced.resize((200, 200), Image.Resampling.BILINEAR), dtype=float)
    assert np.abs(a - b).mean() < (12.0 if mode == "1" else 3.0)  # bilevel dithering averages differently


def test_transparency_is_flattened_after_reduction(tmp_path: Path) -> None:
    img = Image.new("RGBA", (900, 900), (0, 0, 0, 0))
    out = load_image(_save(img, tmp_path / "clear.png"), min_side=299)
    assert out.size == (300, 300) and out.getpixel((150, 150)) == (255, 255, 255)


def test_pixel_cap_still_refuses_before_draft(tmp_path: Path) -> None:
    path = _save(_gradient((1200, 1000)), tmp_path / "big.jpg")
    with pytest.raises(ImageError, match=r"too many pixels \(1200x1000"):
        load_image(path, max_pixels=1_000_000, min_side=299)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "I", "CMYK"])
def test_reduction_in_strips_equals_pillows_whole_image_reduce(mode: str) -> None:
    """Strips of rows keep memory down; the pixels are exactly those of Image.reduce on the whole image."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (1203, 731, 4), dtype=np.uint8), "RGBA").convert(mode)
    for factor in (2, 3, 7):
        reduced = _reduce(img, min(img.size) // factor)
        assert reduced.tobytes() == img.reduce(factor).tobytes() and reduced.size == img.reduce(factor).size


def test_files_are_closed_and_images_usable_after_loading(tmp_path: Path) -> None:
    """The file is read as decoding goes (no whole copy in memory) and closed before load_image returns."""
    frames = [Image.new("RGB", (40, 30), c) for c in [(255, 0, 0), (0, 0, 255)]]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
    paths = [gif, make_photo(tmp_path / "p.jpg", size=(900, 700)), make_photo(tmp_path / "p.png", fmt="PNG")]
    before = len(os.listdir("/proc/self/fd"))
    images = [load_image(p, min_side=100) for p in paths]
    assert len(os.listdir("/proc/self/fd")) == before
    assert [img.resize((10, 10)).size for img in images] == [(10, 10)] * 3
    assert images[0].getpixel((5, 5))[0] > 200 and images[1].size == (225, 175)
