"""Register values <-> physical values: types, byte/word orders, scale/offset and missing codes.

Pure functions on plain integers (``struct``), no I/O, no pymodbus. Source of the conventions:
``shared/reference/instruments.md`` section 7.1 (registers are big-endian 16-bit words, 32-bit
values occupy two registers, word order varies by vendor) and 7.2 (Vaisala: least-significant
word first, quiet NaN floats, int16 0x8000 = not available).

Orders name where the bytes of the value's big-endian representation ``A B C D`` (A most
significant) land in the registers, as libmodbus/Telegraf do:

====== ============================ =============================================
order  registers of 0x41F47AE1      used by
====== ============================ =============================================
ABCD   [0x41F4, 0x7AE1]             big-endian, "MSW first" (Apogee, Kipp & Zonen floats)
CDAB   [0x7AE1, 0x41F4]             word-swapped, "LSW first" (Vaisala HMP/Indigo)
BADC   [0xF441, 0xE17A]             byte-swapped words
DCBA   [0xE17A, 0xF441]             little-endian
====== ============================ =============================================

16-bit types use one register: ``ABCD``/``CDAB`` leave it as sent, ``BADC``/``DCBA`` swap its
two bytes. Physical value = ``raw * scale + offset`` (and ``/ 10**s`` for Kipp & Zonen's scale
factor register, applied by the caller through ``scale``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence

#: Register tables of the Modbus data model (instruments.md 7.1): function codes 01/02/03/04.
KINDS = ("coil", "discrete", "holding", "input")
#: Function code reading each kind.
READ_FUNCTION = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
#: Kinds holding single bits (type ``bool``) rather than 16-bit registers.
BIT_KINDS = ("coil", "discrete")
#: Value types and the number of registers (or bits) each occupies.
TYPES = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "bool": 1}
REGISTER_TYPES = ("int16", "uint16", "int32", "uint32", "float32")
ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
#: struct codes (big-endian) per type.
_STRUCT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}
_RANGE = {"int16": (-0x8000, 0x7FFF), "uint16": (0, 0xFFFF), "int32": (-0x80000000, 0x7FFFFFFF),
          "uint32": (0, 0xFFFFFFFF)}
#: The quiet NaN a Vaisala probe sends for an unavailable float (instruments.md 7.2).
QUIET_NAN_BITS = 0x7FC00000
#: Raw int16 meaning "not available" on Vaisala probes (0x8000), the default missing code of int16.
INT16_NOT_AVAILABLE = -0x8000
#: Vaisala int16 special codes (instruments.md 7.2): 0x8000 n/a, 0x7FFF +inf, 0x8001 -inf.
VAISALA_INT16_SPECIALS = {-0x8000: math.nan, 0x7FFF: math.inf, -0x7FFF: -math.inf}


def register_count(type_: str) -> int:
    """Registers (or bits) a value of ``type_`` occupies; ``ValueError`` for an unknown type."""
    try:
        return TYPES[type_]
    except KeyError:
        raise ValueError(f"unknown register type {type_!r}; known: {', '.join(TYPES)}") from None


def _check(type_: str, order: str) -> None:
    if type_ not in _STRUCT:
        raise ValueError(f"unknown register type {type_!r}; known: {', '.join(REGISTER_TYPES)}")
    if order not in ORDERS:
        raise ValueError(f"unknown byte order {order!r}; known: {', '.join(ORDERS)}")


def _to_wire(big_endian: bytes, order: str) -> bytes:
    """Big-endian value bytes -> bytes as they follow each other in the registers."""
    if len(big_endian) == 2:
        return big_endian if order in ("ABCD", "CDAB") else big_endian[::-1]
    a, b, c, d = big_endian
    return bytes({"ABCD": (a, b, c, d), "CDAB": (c, d, a, b), "BADC": (b, a, d, c), "DCBA": (d, c, b, a)}[order])


def _from_wire(wire: bytes, order: str) -> bytes:
    """Inverse of :func:`_to_wire` (every order is its own inverse permutation)."""
    return _to_wire(wire, order)


def regs_to_bytes(registers: Sequence[int]) -> bytes:
    """Registers as they travel on the wire (each big-endian); ``ValueError`` outside 0..0xFFFF."""
    try:
        return struct.pack(f">{len(registers)}H", *registers)
    except struct.error:
        raise ValueError(f"registers must be integers 0..0xFFFF, got {list(registers)}") from None


def bytes_to_regs(data: bytes) -> list[int]:
    if len(data) % 2:
        raise ValueError(f"odd number of bytes ({len(data)}) cannot form 16-bit registers")
    return list(struct.unpack(f">{len(data) // 2}H", data))


def decode_raw(registers: Sequence[int], type_: str, order: str = "ABCD") -> int | float:
    """The raw value (int, or float for float32) in ``registers`` (exactly the type's count)."""
    _check(type_, order)
    n = TYPES[type_]
    if len(registers) != n:
        raise ValueError(f"{type_} needs {n} register(s), got {len(registers)}")
    return struct.unpack(_STRUCT[type_], _from_wire(regs_to_bytes(registers), order))[0]


def encode_raw(raw: int | float, type_: str, order: str = "ABCD") -> list[int]:
    """Registers carrying ``raw`` (an int in the type's range, or any float for float32)."""
    _check(type_, order)
    if type_ == "float32":
        if math.isnan(raw):
            big = struct.pack(">I", QUIET_NAN_BITS)
        else:
            try:
                big = struct.pack(">f", raw)
            except OverflowError:
                big = struct.pack(">f", math.copysign(math.inf, raw))
    else:
        lo, hi = _RANGE[type_]
        if not isinstance(raw, int) or not lo <= raw <= hi:
            raise ValueError(f"raw value {raw!r} does not fit {type_} ({lo}..{hi})")
        big = struct.pack(_STRUCT[type_], raw)
    return bytes_to_regs(_to_wire(big, order))


def decode(registers: Sequence[int], type_: str, order: str = "ABCD", scale: float = 1.0, offset: float = 0.0,
           missing: Iterable[int] | None = None, specials: dict[int, float] | None = None) -> float:
    """Physical value ``raw * scale + offset`` of ``registers``.

    Integer raw values listed in ``missing`` decode to NaN (default: ``-32768``/0x8000 for
    int16, the Vaisala "not available" code; nothing for the other types); ``specials`` maps
    raw integers to fixed results (e.g. :data:`VAISALA_INT16_SPECIALS`). NaN floats stay NaN.
    """
    raw = decode_raw(registers, type_, order)
    if type_ != "float32":
        if specials and raw in specials:
            return specials[raw]
        if raw in (_default_missing(type_) if missing is None else missing):
            return math.nan
    return raw * scale + offset


def encode(value: float, type_: str, order: str = "ABCD", scale: float = 1.0, offset: float = 0.0,
           missing: Iterable[int] | None = None, clip: bool = False) -> list[int]:
    """Registers a device would send for physical ``value`` (inverse of :func:`decode`).

    Integer types round ``(value - offset) / scale``; values outside the type's range raise
    ``ValueError`` unless ``clip`` (then they saturate, as many sensors do). NaN becomes the
    first ``missing`` code (int16 default 0x8000) or the quiet NaN of float32.
    """
    if type_ == "float32":
        if math.isnan(value):
            return encode_raw(math.nan, type_, order)
        return encode_raw((value - offset) / scale, type_, order)
    _check(type_, order)
    if math.isnan(value):
        codes = list(_default_missing(type_) if missing is None else missing)
        if not codes:
            raise ValueError(f"NaN cannot be encoded as {type_} without a missing-value code")
        return encode_raw(codes[0], type_, order)
    raw = (value - offset) / scale
    lo, hi = _RANGE[type_]
    if math.isinf(raw):
        if not clip:
            raise ValueError(f"value {value!r} does not fit {type_}")
        raw = hi if raw > 0 else lo
    iraw = round(raw)
    if not lo <= iraw <= hi:
        if not clip:
            raise ValueError(f"value {value!r} (raw {iraw}) does not fit {type_} ({lo}..{hi}) with scale {scale}"
                             f" and offset {offset}")
        iraw = min(max(iraw, lo), hi)
    return encode_raw(iraw, type_, order)


def resolution(type_: str, scale: float = 1.0) -> float:
    """Smallest step of a physical value: ``|scale|`` for integers, 0 for float32 (relative)."""
    return 0.0 if type_ == "float32" else abs(scale)


def _default_missing(type_: str) -> tuple[int, ...]:
    return (INT16_NOT_AVAILABLE,) if type_ == "int16" else ()
