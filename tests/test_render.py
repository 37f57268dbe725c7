"""ECG sheet rendering: size, determinism, grid colour, augmentation, errors."""
import numpy as np
import pytest
from PIL import Image

from gemfactory.ecg.render import PAGE_MM, page_size_px, render_ecg, save_ecg_image
from gemfactory.data.synth import simulate_ecg
from gemfactory.ecg.spec import STANDARD_LEADS
from gemfactory.errors import ECGError

DPI = 40  # small and fast; the layout is resolution independent


@pytest.fixture(scope="module")
def sig():
    # a record whose lead II QRS is tall (~1.4 mV): the strip checks below look for it above 0.7 mV
    return simulate_ecg(75, fs=100, duration_s=10, rng=4)


def px(img, x_mm, y_mm):
    """Pixel (column, row) of a page position in mm (y up from the bottom edge)."""
    w, h = img.size
    return int(x_mm * w / PAGE_MM[0]), int(h - y_mm * h / PAGE_MM[1])


def region(img, x0, x1, y0, y1):
    """Pixels of the page rectangle [x0, x1] x [y0, y1] mm as an (rows, cols, 3) array."""
    arr = np.asarray(img)
    (c0, r1), (c1, r0) = px(img, x0, y0), px(img, x1, y1)
    return arr[r0:r1, c0:c1]


def dark(a):
    return (a.max(axis=-1) < 80).sum()


def test_page_size_matches_dpi(sig):
    assert page_size_px(100) == (1102, 846)  # 280 x 215 mm
    for dpi in (30, 100):
        img = render_ecg(sig, 100, dpi=dpi)
        assert img.mode == "RGB"
        assert img.size == page_size_px(dpi)
        assert img.size == (round(280 / 25.4 * dpi), round(215 / 25.4 * dpi))


def test_png_bytes_identical_across_renders(sig, tmp_path):
    a = save_ecg_image(tmp_path / "a.png", sig, 100, dpi=DPI, grid_color="blue")
    b = save_ecg_image(tmp_path / "b.png", sig.copy(), 100.0, dpi=DPI, grid_color="blue")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temp file
    with Image.open(a) as im:
        assert im.size == page_size_px(DPI)
        assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(render_ecg(sig, 100, dpi=DPI, grid_color="blue")))


def test_traces_drawn_where_the_signal_is(sig):
    img = render_ecg(sig, 100, dpi=DPI)
    flat = render_ecg(np.zeros_like(sig), 100, dpi=DPI)
    # Rhythm strip (baseline 40 mm): QRS complexes rise well above a flat line.
    assert dark(region(img, 20, 260, 47, 60)) > 20
    assert dark(region(flat, 20, 260, 47, 60)) == 0
    # The right margin beyond 10 s stays empty.
    assert dark(region(img, 268, 280, 20, 200)) == 0


def test_grid_colour_changes_grid_pixels(sig):
    # Bottom-right corner: grid only, no trace or text.
    red = region(render_ecg(sig, 100, dpi=DPI, grid_color="red"), 240, 278, 1, 15).astype(int)
    blue = region(render_ecg(sig, 100, dpi=DPI, grid_color="blue"), 240, 278, 1, 15).astype(int)
    green = region(render_ecg(sig, 100, dpi=DPI, grid_color="green"), 240, 278, 1, 15).astype(int)
    assert red.shape == blue.shape and red.size > 0
    assert not np.array_equal(red, blue)
    r, b, g = (x.reshape(-1, 3).mean(axis=0) for x in (red, blue, green))
    assert r[0] > r[2] + 10 and b[2] > b[0] + 10 and g[1] > g[0] + 10
    # Any matplotlib colour string works too; the pixels differ from the named colours.
    other = region(render_ecg(sig, 100, dpi=DPI, grid_color="#800080"), 240, 278, 1, 15).astype(int)
    assert not np.array_equal(other, red) and not np.array_equal(other, blue)


def test_leads_matched_case_insensitively_in_any_order(sig):
    ref = render_ecg(sig, 100, dpi=DPI)
    order = np.random.default_rng(1).permutation(12)
    names = [STANDARD_LEADS[i].upper() if k % 2 else STANDARD_LEADS[i].lower() for k, i in enumerate(order)]
    again = render_ecg(sig[order], 100, names, dpi=DPI)
    assert np.array_equal(np.asarray(ref), np.asarray(again))


def test_short_signal_and_nan_gaps_drawn_as_far_as_they_go(sig):
    short = render_ecg(sig[:, :300], 100, dpi=DPI)  # 3 s
    assert short.size == page_size_px(DPI)
    # Rhythm strip: trace up to 3 s (x = 15 + 75 mm), nothing after.
    assert dark(region(short, 20, 85, 30, 60)) > 0
    assert dark(region(short, 95, 265, 30, 60)) == 0
    gappy = sig.copy()
    gappy[:, 500:] = np.nan
    img = render_ecg(gappy, 100, dpi=DPI)
    assert dark(region(img, 20, 135, 30, 60)) > 0
    assert dark(region(img, 145, 265, 30, 60)) == 0


def test_augment_seeded(sig):
    aug = {"rotation": 3.0, "noise": 6.0}
    plain = np.asarray(render_ecg(sig, 100, dpi=DPI))
    a = np.asarray(render_ecg(sig, 100, dpi=DPI, augment=aug, seed=7))
    b = np.asarray(render_ecg(sig, 100, dpi=DPI, augment=aug, seed=7))
    c = np.asarray(render_ecg(sig, 100, dpi=DPI, augment=aug, seed=8))
    assert a.shape == plain.shape
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, plain)
    only_noise = np.asarray(render_ecg(sig, 100, dpi=DPI, augment={"noise": 4.0}, seed=1)).astype(float)
    resid = only_noise - plain
    assert 2.0 < resid.std() < 6.0  # ~N(0, 4) pixel noise, clipped at 0/255
    assert np.array_equal(np.asarray(render_ecg(sig, 100, dpi=DPI, augment={}, seed=3)), plain)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"signal_mv": np.zeros((1000, 12))}, r"expected \(12, T\).*transposed"),
        ({"signal_mv": np.zeros(1000)}, r"expected \(12, T\)"),
        ({"signal_mv": np.zeros((11, 1000))}, r"expected \(12, T\)"),
        ({"signal_mv": np.full((12, 1000), np.nan)}, "NaN everywhere"),
        ({"signal_mv": np.full((12, 1000), np.inf)}, "infinite"),
        ({"fs": 0}, "fs must be .*> 0"),
        ({"fs": -100}, "fs must be .*> 0"),
        ({"leads": ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V7"]}, r"unknown lead names \['V7'\]"),
        ({"leads": ["I", "I", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]}, "given twice"),
        ({"leads": ["I", "II"]}, "2 lead names .* 12 rows"),
        ({"grid_color": "not-a-colour"}, "unknown grid colour 'not-a-colour'"),
        ({"augment": {"blur": 1}}, r"unknown augment keys \['blur'\]"),
        ({"augment": {"noise": -1}}, "augment 'noise' must be a number >= 0"),
        ({"dpi": 0}, "dpi must be between"),
    ],
)
def test_bad_input_raises_ecg_error(sig, kwargs, message):
    args = {"signal_mv": sig, "fs": 100, "dpi": DPI, **kwargs}
    with pytest.raises(ECGError, match=message) as info:
        render_ecg(**args)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("render: ")


def test_save_rejects_bad_input_without_writing(tmp_path):
    with pytest.raises(ECGError):
        save_ecg_image(tmp_path / "x.png", np.zeros((3, 10)), 100)
    assert list(tmp_path.iterdir()) == []
