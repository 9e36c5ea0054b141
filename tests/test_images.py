"""The photo -> 28x28 pipeline, step by step, on small hand-made cases."""

import io

import numpy as np
import pytest
from PIL import Image

from fashion_cnn.images import (
    ImageError,
    corner_colour,
    item_box,
    load_image,
    looks_like_fashion_mnist,
    open_image,
    pad_square,
    preprocess,
    resize_longest,
    to_rgb,
)


def test_corner_colour_is_the_median_of_the_corners():
    rgb = np.zeros((5, 5, 3), np.uint8)
    rgb[0, 0] = rgb[0, -1] = rgb[-1, 0] = (200, 200, 200)
    rgb[-1, -1] = (0, 0, 0)  # the item touches one corner
    assert corner_colour(rgb).tolist() == [200, 200, 200]


def test_item_box_uses_a_5_percent_fuzz():
    rgb = np.full((10, 12, 3), 250, np.uint8)
    rgb[2:5, 3:9] = 0  # the item
    rgb[8, 1] = 240  # within 5% of white (distance 17 < 22.1): background noise
    assert item_box(rgb) == (3, 2, 9, 5)
    rgb[8, 1] = 200  # distance 86: part of the item
    assert item_box(rgb) == (1, 2, 9, 9)
    assert item_box(np.full((4, 6, 3), 9, np.uint8)) is None  # nothing: `preprocess` refuses


def test_resize_longest_keeps_aspect():
    assert resize_longest(Image.new("RGB", (280, 140))).size == (28, 14)
    assert resize_longest(Image.new("RGB", (10, 600))).size == (1, 28)


def test_pad_square_centres():
    out = np.asarray(pad_square(Image.new("RGB", (28, 10), (0, 0, 0)), (255, 255, 255)))
    assert out.shape == (28, 28, 3)
    assert out[9:19].max() == 0 and out[:9].min() == 255 and out[19:].min() == 255


def test_to_rgb_flattens_transparency_on_white_and_handles_modes():
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (10, 20, 30, 255))
    assert np.asarray(to_rgb(rgba)).tolist() == [[[255, 255, 255], [10, 20, 30]]]
    i16 = Image.fromarray(np.array([[0, 65535]], np.uint16))
    assert np.asarray(to_rgb(i16))[..., 0].tolist() == [[0, 255]]
    cmyk = Image.new("CMYK", (1, 1), (0, 0, 0, 255))
    assert np.asarray(to_rgb(cmyk)).tolist() == [[[0, 0, 0]]]
    pal = Image.new("P", (1, 1), 0)
    pal.putpalette([1, 2, 3] * 256)
    assert np.asarray(to_rgb(pal)).tolist() == [[[1, 2, 3]]]


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    im.save(tmp_path / "o.jpg", exif=exif)
    assert open_image(tmp_path / "o.jpg").size == (20, 40)


def test_fashion_mnist_style_input_passes_unchanged():
    arr = np.zeros((28, 28), np.uint8)
    arr[5:20, 8:22] = np.arange(15 * 14, dtype=np.uint8).reshape(15, 14)
    assert looks_like_fashion_mnist(arr)
    np.testing.assert_array_equal(preprocess(Image.fromarray(arr).convert("RGB")), arr)


def test_dark_item_on_white_becomes_light_item_on_black():
    im = Image.new("RGB", (300, 200), (255, 255, 255))
    im.paste((20, 20, 20), (100, 50, 200, 100))  # a dark 100x50 rectangle
    out = preprocess(im)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out[0, 0] == 0 and out[14, 14] > 200  # negated: background black, item light
    rows = np.flatnonzero(out.max(axis=1) > 128)
    cols = np.flatnonzero(out.max(axis=0) > 128)
    assert (cols[0], cols[-1]) == (0, 27)  # trimmed, longest edge scaled to 28
    assert 12 <= len(rows) <= 16 and abs((rows[0] + rows[-1]) / 2 - 13.5) <= 1  # centred


def test_coloured_background_becomes_black():
    im = Image.new("RGB", (200, 300), (120, 160, 220))
    im.paste((10, 10, 10), (50, 50, 150, 250))
    out = preprocess(im)
    assert out[0, 0] <= 5 and out[14, 14] > 150
    assert out[:, 0].max() <= 5  # padding is background, not grey


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (Image.new("RGB", (300, 200), (255, 255, 255)), "every pixel is within 5% of the"),
        (Image.new("RGB", (1, 1), (0, 0, 0)), "every pixel is within 5% of the"),
        (Image.new("RGB", (40, 4000), (200, 10, 10)), "every pixel is within 5% of the"),
        (Image.new("RGB", (300, 200), (250, 250, 246)), "every pixel is within 5% of the"),
        (Image.new("L", (28, 28), 0).convert("RGB"), "the image is one shade"),  # dataset-like
    ],
)
def test_an_image_without_an_item_is_refused(image, message):
    # a blank photo used to become a black 28x28 input that the model classified anyway
    with pytest.raises(ImageError, match=f"^photo.png: no item found: {message}"):
        preprocess(image, "photo.png")


def test_a_speck_is_not_an_item():
    # one dark pixel on white was trimmed to 1x1, scaled to a 28x28 white square: "Bag", 99%
    im = Image.new("RGB", (400, 300), (255, 255, 255))
    im.putpixel((200, 100), (0, 0, 0))
    with pytest.raises(ImageError, match=r"only a 1x1-pixel spot at \(200, 100\) differs from "):
        preprocess(im, "dust.png")
    im.paste((0, 0, 0), (200, 100, 219, 102))  # 19 px: under 5% of 400
    with pytest.raises(ImageError, match="only a 19x2-pixel spot"):
        preprocess(im)
    im.paste((0, 0, 0), (200, 100, 220, 102))  # 20 px: an item, however thin
    assert preprocess(im).max() > 200
    small = Image.new("RGB", (20, 20), (255, 255, 255))
    small.paste((0, 0, 0), (5, 5, 7, 7))  # 2x2 is 10% of 20 px, but under 3 pixels
    with pytest.raises(ImageError, match="only a 2x2-pixel spot"):
        preprocess(small)
    small.paste((0, 0, 0), (5, 5, 8, 8))
    assert preprocess(small).max() > 200


def round_trip(x28: np.ndarray, size: int = 400, bg=(255, 255, 255)) -> np.ndarray:
    """Renders a Fashion-MNIST image as a dark-on-light photo and converts it back."""
    photo = Image.fromarray(255 - x28).resize((size, size), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (size + 200, size + 100), bg)
    canvas.paste(photo.convert("RGB"), (120, 40))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=90)
    return load_image(io.BytesIO(buf.getvalue()), name="photo")


def test_round_trip_restores_the_look():
    x = np.zeros((28, 28), np.uint8)
    x[:, 6:22] = 180  # a light garment on black filling the height, as in the dataset
    x[10:18, 12:16] = 90  # with some inner detail
    back = round_trip(x)
    assert back.shape == (28, 28)
    assert np.abs(back.astype(int) - x.astype(int)).mean() < 12


@pytest.mark.parametrize(
    "content, message",
    [(b"", "not an image"), (b"hello", "not an image"), (None, "no such file")],
)
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "x.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        load_image(path)


def test_truncated_png(tmp_path):
    Image.fromarray(np.zeros((100, 100), np.uint8) + 7).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="t.png: truncated"):
        load_image(tmp_path / "t.png")


def test_oversized_image_refused_before_decoding(tmp_path):
    # A 10000x6000 PNG compresses to a few kB: a decompression bomb in miniature.
    Image.new("L", (10000, 6000)).save(tmp_path / "big.png")
    assert (tmp_path / "big.png").stat().st_size < 200_000
    with pytest.raises(ImageError, match="60 megapixels, more than the 50 accepted"):
        load_image(tmp_path / "big.png")


def test_animated_gif_refused(tmp_path):
    frames = [Image.new("L", (20, 20), v) for v in (0, 255)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(ImageError, match="animated"):
        load_image(tmp_path / "a.gif")


def test_folder_is_an_error(tmp_path):
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


def test_pillow_bomb_guard_gets_the_same_clear_message(tmp_path):
    # 12000x12000 = 144 MP: past Pillow's own warning limit (89 MP), so Pillow objects while
    # opening; the user still gets our message, not "not an image".
    Image.new("1", (12000, 12000)).save(tmp_path / "bomb.png")
    with pytest.raises(ImageError, match="megapixels"):
        load_image(tmp_path / "bomb.png")
