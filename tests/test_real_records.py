"""The real records that ship in tests/data through the loader and the renderer.

JS00001 (.mat, 500 Hz, Challenge-style names ``aVR``), s0010_re (.dat, 1000 Hz, PTB lower-case
names, 3 extra Frank leads) and 100 (.dat, 360 Hz, MIT-BIH ``MLII``/``V5``).
"""
import numpy as np
import pytest
import wfdb
from PIL import Image

from gemfactory.data.ecg_io import canonical_lead, inspect_record, read_ecg
from gemfactory.ecg.render import page_size_px, render_ecg, save_ecg_image
from gemfactory.ecg.spec import STANDARD_LEADS, SignalSpec

SPEC12 = SignalSpec(fs=500, leads=STANDARD_LEADS, n_samples=5000)  # the encoders' default spec
SPEC_2LEAD = SignalSpec(fs=500, leads=("V5", "II"), n_samples=5000)
CASES = [("JS00001", SPEC12, 5000), ("s0010_re", SPEC12, 12000), ("100", SPEC_2LEAD, 4000)]


def raw_on_spec_grid(path, spec: SignalSpec, n_read: int):
    """Each raw channel (by canonical name) linearly interpolated at the spec's sample times.

    Returns ({lead: values}, mask of the output samples that lie inside the record).
    """
    rec = wfdb.rdrecord(str(path), sampto=n_read)
    t_in = np.arange(rec.sig_len) / rec.fs
    t_out = np.arange(spec.n_samples) / spec.fs
    inside = t_out <= t_in[-1]
    return {canonical_lead(name) or name: np.interp(t_out[inside], t_in, sig)
            for name, sig in zip(rec.sig_name, rec.p_signal.T)}, inside


@pytest.mark.parametrize("record, spec, n_read", CASES, ids=[c[0] for c in CASES])
def test_record_loads_to_the_encoder_spec(shared_data, record, spec, n_read):
    x = read_ecg(shared_data / record, spec)
    assert x.shape == (spec.n_leads, spec.n_samples) and x.dtype == np.float32 and np.isfinite(x).all()
    # lead order and sampling rate: row k follows the channel named spec.leads[k] on the spec's time
    # grid (to resampling accuracy), and no other channel of the record comes close
    raw, inside = raw_on_spec_grid(shared_data / record, spec, n_read)
    assert inside.all()  # every record holds at least 10 s
    for k, lead in enumerate(spec.leads):
        err = {name: float(np.abs(x[k] - values).mean()) for name, values in raw.items()}
        best, second = sorted(err.values())[:2]
        assert err[lead] == best and err[lead] < 0.01 and err[lead] < 0.3 * second, (lead, err)


def test_record_100_maps_mlii_to_ii(shared_data):
    assert inspect_record(shared_data / "100")["leads"] == ["MLII", "V5"]
    x = read_ecg(shared_data / "100", SignalSpec(fs=360, leads=("II", "V5"), n_samples=3600))
    np.testing.assert_allclose(x, wfdb.rdrecord(str(shared_data / "100"), sampto=3600).p_signal.T, atol=1e-6)


def test_mat_and_dat_records_give_the_same_lead_order(shared_data):
    mat, dat = shared_data / "JS00001", shared_data / "s0010_re"
    assert (shared_data / "JS00001.mat").is_file() and (shared_data / "s0010_re.dat").is_file()
    names = {r: inspect_record(r)["leads"] for r in (mat, dat)}
    assert names[mat][3] == "aVR" and names[dat][3] == "avr" and len(names[dat]) == 15
    for r in (mat, dat):
        assert [canonical_lead(n) for n in names[r][:12]] == list(STANDARD_LEADS)
    a, b = read_ecg(mat, SPEC12), read_ecg(dat, SPEC12)
    assert a.shape == b.shape == (12, 5000)
    for x in (a, b):  # rows mean the same leads in both: Einthoven / Goldberger hold on each
        i, ii = x[0].astype(np.float64), x[1].astype(np.float64)
        assert np.abs(x[2] - (ii - i)).max() < 0.01  # III
        assert np.abs(x[3] + (i + ii) / 2).max() < 0.01  # aVR
        assert np.abs(x[5] - (ii - i / 2)).max() < 0.01  # aVF
    # a reversed spec reverses the rows for both storage formats
    rev = SignalSpec(fs=500, leads=tuple(reversed(STANDARD_LEADS)), n_samples=5000)
    np.testing.assert_array_equal(read_ecg(mat, rev), a[::-1])
    np.testing.assert_allclose(read_ecg(dat, rev), b[::-1], atol=1e-6)


def test_js00001_render_size_and_bytes(shared_data, tmp_path):
    sig = read_ecg(shared_data / "JS00001", SPEC12)
    img = render_ecg(sig, 500, dpi=100)
    assert img.size == page_size_px(100) == (1102, 846) and img.mode == "RGB"
    p1 = save_ecg_image(tmp_path / "a.png", sig, 500, dpi=100)
    p2 = save_ecg_image(tmp_path / "b.png", read_ecg(shared_data / "JS00001", SPEC12), 500, dpi=100)
    assert p1.read_bytes() == p2.read_bytes()
    with Image.open(p1) as again:
        assert again.size == page_size_px(100)
        assert np.array_equal(np.asarray(again.convert("RGB")), np.asarray(img))
