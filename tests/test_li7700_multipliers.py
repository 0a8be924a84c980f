"""LI-7700 spectroscopic multipliers A, B, C as EddyPro 7 computes them (station/flux/li7700.py).

Literal table values below are read from EddyPro's m_methane_tables.f90; "KeyTable(i, j)" is the
Fortran (1-based, axis in row/column 1) position, i.e. npz index [i - 2, j - 2].
"""

import math

import numpy as np
import pytest

from station.flux import li7700
from station.flux.li7700 import multipliers

NAN = float("nan")


def test_shipped_tables_shape_axes_and_fortran_values():
    t = li7700._tables()
    for name, nx, ny, x_last, y_last in (("key", 66, 106, 115, 55), ("kt", 66, 105, 115, 54), ("kp", 65, 101, 114, 50)):
        x, y, z = t[f"peq_kpa_{name}"], t[f"t_c_{name}"], t[name]
        assert z.shape == (nx, ny) and z.dtype == np.float64
        assert not np.isnan(z).any()
        np.testing.assert_array_equal(x, np.arange(50, x_last + 1))
        np.testing.assert_array_equal(y, np.arange(-50, y_last + 1))
    spot = {  # (table, Fortran i, Fortran j): value in the Fortran source
        ("key", 2, 2): 0.526006143,
        ("key", 32, 52): 0.789244129,
        ("key", 67, 107): 1.171757872,
        ("kt", 2, 2): 0.370956252,
        ("kt", 49, 2): -0.002805342,
        ("kt", 35, 54): 0.350100396,
        ("kt", 67, 106): 0.364038031,
        ("kp", 2, 2): 0.280178146,
        ("kp", 34, 52): 0.384692624,
        ("kp", 66, 102): 0.464214535,
    }
    for (name, i, j), v in spot.items():
        assert t[name][i - 2, j - 2] == v, (name, i, j)


@pytest.mark.parametrize("name", ["key", "kt", "kp"])
def test_lookup_at_nodes_follows_half_open_cells(name):
    t = li7700._tables()
    x, y, z = t[f"peq_kpa_{name}"], t[f"t_c_{name}"], t[name]
    px, ty = np.meshgrid(x, y, indexing="ij")
    got = li7700._lookup(name, px, ty)
    # (lo, hi]: every node but those of the first pressure row / first temperature column is the
    # upper corner of a cell and returns the table value; the first row and column are outside.
    np.testing.assert_allclose(got[1:, 1:], z[1:, 1:], rtol=0, atol=1e-12)
    assert np.isnan(got[0, :]).all() and np.isnan(got[:, 0]).all()
    # the last node is inside (a closed-below [lo, hi) rule would reject it)
    assert got[-1, -1] == pytest.approx(z[-1, -1], abs=1e-12)
    assert not math.isnan(li7700._lookup(name, np.float64(x[0] + 1e-9), np.float64(y[0] + 1e-9)))


def test_mid_cell_is_hand_computed_bilinear():
    # KeyTable rows 47/48 (95/96 kPa), columns 73/74 (21/22 degC), from the Fortran text
    k95_21, k95_22, k96_21, k96_22 = 0.939174642, 0.940292448, 0.948170962, 0.949278910
    p, tc = 95.3, 21.6
    lo = k95_21 + (k95_22 - k95_21) * 0.6
    hi = k96_21 + (k96_22 - k96_21) * 0.6
    expected = lo + (hi - lo) * 0.3
    assert li7700._lookup("key", np.float64(p), np.float64(tc)) == pytest.approx(expected, abs=1e-12)
    # and not the transposed weighting (P fraction on T and vice versa)
    lo_t = k95_21 + (k96_21 - k95_21) * 0.6
    hi_t = k95_22 + (k96_22 - k95_22) * 0.6
    assert abs(expected - (lo_t + (hi_t - lo_t) * 0.3)) > 1e-4


def test_typical_conditions_match_eddypro_formula():
    p_pa, t_k, chi = 95000.0, 294.15, 16.0  # 95 kPa, 21 degC, 16 mmol/mol
    peq = p_pa * (1 + 0.455 * chi * 1e-3) * 1e-3  # 95.6916 kPa
    f = peq - 95.0
    # Fortran values at 95 and 96 kPa, 21 degC: KeyTable/KeyTTable/KeyPTable(47|48, 73)
    key = 0.939174642 + f * (0.948170962 - 0.939174642)
    kt = 0.350097432 + f * (0.343717264 - 0.350097432)
    kp = 0.418600747 + f * (0.422622328 - 0.418600747)
    a, b, c = multipliers(p_pa, t_k, chi)
    assert isinstance(a, float)
    assert a == pytest.approx(key, abs=1e-9)
    assert b == pytest.approx(1 + (1 - 1.46 * chi * 1e-3) * kp, abs=1e-9)
    assert c == pytest.approx(1 + (1 - chi * 1e-3) * kt, abs=1e-9)
    assert 0.9 < a < 1.0 and 1.35 < b < 1.45 and 1.3 < c < 1.4


def test_outside_tables_is_nan_per_table():
    # Peq at or below 50 kPa, above 115 kPa: all NaN
    for p_pa in (50000.0, 40000.0, 120000.0):
        assert all(math.isnan(v) for v in multipliers(p_pa, 293.15, 0.0))
    # at or below -50 degC, above 55 degC: all NaN (not 223.15 K: 223.15 - 273.15 rounds to just
    # above -50 degC, inside the tables, in EddyPro's double precision as here)
    for t_k in (223.0, 200.0, 328.2, 330.0):
        assert all(math.isnan(v) for v in multipliers(95000.0, t_k, 0.0))
    # 52 degC: KeyTable (to 55) and KeyTTable (to 54) cover it, KeyPTable (to 50) does not
    a, b, c = multipliers(95000.0, 273.15 + 52.0, 1.0)
    assert not math.isnan(a) and math.isnan(b) and not math.isnan(c)
    # 114.5 kPa: only KeyPTable (to 114 kPa) runs out
    a, b, c = multipliers(114500.0, 293.15, 0.0)
    assert not math.isnan(a) and math.isnan(b) and not math.isnan(c)


def test_missing_inputs_give_ones():
    assert multipliers(NAN, 294.15, 16.0) == (1.0, 1.0, 1.0)
    assert multipliers(95000.0, NAN, 16.0) == (1.0, 1.0, 1.0)
    assert multipliers(95000.0, 294.15, NAN) == (1.0, 1.0, 1.0)


def test_vectorised_matches_scalar():
    p = np.array([95000.0, 101325.0, NAN, 40000.0])
    t = np.array([294.15, 273.15, 280.0, 290.0])
    chi = 10.0
    a, b, c = multipliers(p, t, chi)
    assert a.shape == b.shape == c.shape == (4,)
    for k in range(4):
        np.testing.assert_array_equal([a[k], b[k], c[k]], multipliers(p[k], t[k], chi))
    assert (a[2], b[2], c[2]) == (1.0, 1.0, 1.0)
    assert np.isnan([a[3], b[3], c[3]]).all()
