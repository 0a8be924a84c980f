"""Register encoding/decoding, CRC-16/MODBUS and the vendor vectors of instruments.md section 7."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client import ModbusTcpClient

from firmware_bridge.modbus import registers as reg
from firmware_bridge.modbus import rtu

ALL_ORDERS = reg.ORDERS
INT_TYPES = ("int16", "uint16", "int32", "uint32")


# -- orders -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("order", "regs"), [("ABCD", [0x41F4, 0x7AE1]), ("CDAB", [0x7AE1, 0x41F4]),
                                             ("BADC", [0xF441, 0xE17A]), ("DCBA", [0xE17A, 0xF441])])
def test_the_four_orders_place_bytes_of_0x41f47ae1(order, regs):
    assert reg.encode_raw(0x41F47AE1, "uint32", order) == regs
    assert reg.decode_raw(regs, "uint32", order) == 0x41F47AE1
    assert reg.decode(regs, "float32", order) == pytest.approx(30.56, abs=1e-5)


def test_vaisala_vector_30_56_rh_is_lsw_first():
    """instruments.md 7.2: 30.56 %RH = 0x41F47AE1 -> registers [0x7AE1, 0x41F4] (CDAB)."""
    assert reg.encode(30.56, "float32", "CDAB") == [0x7AE1, 0x41F4]
    assert reg.decode([0x7AE1, 0x41F4], "float32", "CDAB") == pytest.approx(30.56, abs=1e-5)
    # read with the wrong order the same registers are garbage, not 30.56
    assert reg.decode([0x7AE1, 0x41F4], "float32", "ABCD") > 1e35


@pytest.mark.parametrize("order", ALL_ORDERS)
def test_16_bit_types_swap_bytes_only_in_badc_and_dcba(order):
    regs = reg.encode_raw(0x1234, "uint16", order)
    assert regs == ([0x1234] if order in ("ABCD", "CDAB") else [0x3412])
    assert reg.decode_raw(regs, "uint16", order) == 0x1234


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(INT_TYPES), st.sampled_from(ALL_ORDERS), st.data())
def test_integer_round_trip_all_types_and_orders(type_, order, data):
    lo, hi = reg._RANGE[type_]
    raw = data.draw(st.integers(lo, hi))
    regs = reg.encode_raw(raw, type_, order)
    assert len(regs) == reg.register_count(type_)
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert reg.decode_raw(regs, type_, order) == raw


@settings(max_examples=200, deadline=None)
@given(st.floats(width=32, allow_nan=False), st.sampled_from(ALL_ORDERS))
def test_float32_round_trip_all_orders(value, order):
    assert reg.decode(reg.encode(value, "float32", order), "float32", order) == value


@pytest.mark.parametrize("order", ALL_ORDERS)
@pytest.mark.parametrize(("type_", "values"), [
    ("int16", [-32767, -1, 0, 1, 32767]), ("uint16", [0, 1, 0x8000, 0xFFFF]),
    ("int32", [-(2**31), -1, 0, 2**31 - 1]), ("uint32", [0, 1, 2**31, 2**32 - 1]),
])
def test_extremes_round_trip(type_, values, order):
    for v in values:
        assert reg.decode_raw(reg.encode_raw(v, type_, order), type_, order) == v


def test_agrees_with_pymodbus_convert_from_registers():
    """Cross-check ABCD (word_order big) and CDAB (word_order little) with pymodbus' own converter."""
    dt = ModbusTcpClient.DATATYPE
    for value, type_, pm in [(30.56, "float32", dt.FLOAT32), (-123456, "int32", dt.INT32),
                             (3_000_000_000, "uint32", dt.UINT32), (-5, "int16", dt.INT16)]:
        for order, word_order in (("ABCD", "big"), ("CDAB", "little")):
            regs = reg.encode(value, type_, order)
            assert regs == ModbusTcpClient.convert_to_registers(value, pm, word_order=word_order)
            got = ModbusTcpClient.convert_from_registers(list(regs), pm, word_order=word_order)
            assert got == pytest.approx(value, rel=1e-6)


# -- scale, offset, specials ------------------------------------------------------------------------
def test_scale_and_offset():
    assert reg.decode([658], "uint16", scale=0.1) == pytest.approx(65.8)
    assert reg.encode(65.8, "uint16", scale=0.1) == [658]
    assert reg.decode([100], "int16", scale=0.5, offset=-40) == pytest.approx(10.0)
    assert reg.encode(10.0, "int16", scale=0.5, offset=-40) == [100]
    assert reg.decode(reg.encode(-10.1, "int16", scale=0.1), "int16", scale=0.1) == pytest.approx(-10.1)


def test_encode_out_of_range_raises_or_clips():
    with pytest.raises(ValueError, match="does not fit int16"):
        reg.encode(4000.0, "int16", scale=0.1)
    assert reg.encode(4000.0, "int16", scale=0.1, clip=True) == [0x7FFF]
    assert reg.encode(-1.0, "uint16", clip=True) == [0]
    with pytest.raises(ValueError, match="does not fit uint16"):
        reg.encode_raw(70000, "uint16")


def test_vaisala_special_values():
    """instruments.md 7.2: unavailable floats are quiet NaN, int16 0x8000 = n/a (0x7FFF +inf, 0x8001 -inf)."""
    assert reg.encode(math.nan, "float32", "CDAB") == [0x0000, 0x7FC0]
    assert math.isnan(reg.decode([0x0000, 0x7FC0], "float32", "CDAB"))
    assert math.isnan(reg.decode([0x8000], "int16", scale=0.01))
    assert reg.encode(math.nan, "int16") == [0x8000]
    specials = reg.VAISALA_INT16_SPECIALS
    assert reg.decode([0x7FFF], "int16", specials=specials) == math.inf
    assert reg.decode([0x8001], "int16", specials=specials) == -math.inf
    # 0x8000 is a real value for uint16 and when a map says so
    assert reg.decode([0x8000], "uint16") == 32768
    assert reg.decode([0x8000], "int16", missing=[]) == -32768
    with pytest.raises(ValueError, match="NaN cannot be encoded as uint16"):
        reg.encode(math.nan, "uint16")


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="unknown register type 'float'"):
        reg.decode([0, 0], "float")
    with pytest.raises(ValueError, match="unknown byte order 'BACD'"):
        reg.decode([0, 0], "float32", "BACD")
    with pytest.raises(ValueError, match="float32 needs 2 register"):
        reg.decode([0], "float32")
    with pytest.raises(ValueError, match=r"0\.\.0xFFFF"):
        reg.decode_raw([0x10000], "uint16")


# -- vendor replies (instruments.md 7.2, 7.5) -------------------------------------------------------
def _reply_registers(frame_hex: str) -> list[int]:
    raw = bytes.fromhex(frame_hex)
    assert rtu.crc16(raw) == 0, "vector CRC must check"
    assert raw[2] == len(raw) - 5
    return reg.bytes_to_regs(raw[3:-2])


def test_hmp_reply_vector():
    regs = _reply_registers("F0 03 08 7A E1 41 F4 00 00 41 AC 6A 94")
    assert reg.decode(regs[0:2], "float32", "CDAB") == pytest.approx(30.56, abs=1e-5)
    assert reg.decode(regs[2:4], "float32", "CDAB") == 21.5
    assert rtu.read_request(0xF0, 3, 0, 4) == bytes.fromhex("F0 03 00 00 00 04 51 28")


def test_soil_probe_reply_vector():
    regs = _reply_registers("01 03 06 02 92 FF 9B 03 E8 D8 0F")
    assert reg.decode(regs[0:1], "uint16", scale=0.1) == pytest.approx(65.8)
    assert reg.decode(regs[1:2], "int16", scale=0.1) == pytest.approx(-10.1)
    assert reg.decode(regs[2:3], "uint16") == 1000


# -- CRC (instruments.md 7.1) ------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "crc"), [
    ("01 03 00 00 00 03", "05 CB"), ("01 03 00 00 00 04", "44 09"),
    ("01 03 06 02 92 FF 9B 03 E8", "D8 0F"), ("01 03 08 02 92 FF 9B 03 E8 00 38", "57 B6"),
    ("F0 03 00 00 00 04", "51 28"), ("F0 03 08 7A E1 41 F4 00 00 41 AC", "6A 94"),
])
def test_crc_vectors(body, crc):
    data = bytes.fromhex(body)
    assert rtu.crc16(data).to_bytes(2, "little") == bytes.fromhex(crc)
    assert rtu.crc16(data + bytes.fromhex(crc)) == 0  # receiver check
    assert rtu.frame(data[0], data[1], data[2:]) == data + bytes.fromhex(crc)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=64))
def test_crc_matches_pymodbus(data):
    from pymodbus.framer.rtu import FramerRTU

    assert struct.pack("<H", rtu.crc16(data)) == FramerRTU.compute_CRC(data).to_bytes(2, "big")
