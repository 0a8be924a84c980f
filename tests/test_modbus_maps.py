"""Register maps: every shipped map loads and is sane; broken maps fail naming file and key."""

from __future__ import annotations

import pytest

from firmware_bridge.modbus.maps import MapError, load_map, parse_map, shipped_maps
from firmware_bridge.modbus.poller import plan_requests

EXPECTED = {"vaisala_hmp", "vaisala_barometer", "kipp_zonen_smp", "apogee_sq422x", "soil_probe_layout_a",
            "campbell_metsens300"}

GOOD = """
[device]
model = "test"
address = 7
baudrate = 9600

[point_defaults]
kind = "holding"
type = "float32"
order = "CDAB"

[[points]]
name = "a"
address = 0

[[points]]
name = "b"
address = 2

[[points]]
name = "c"
address = 4
type = "int16"
scale = 0.1
"""


def test_every_shipped_map_loads():
    assert set(shipped_maps()) == EXPECTED
    for name in shipped_maps():
        m = load_map(name)
        assert m.name == name and m.points
        assert 1 <= m.device.address <= 247
        assert len(set(m.names)) == len(m.points)
        assert m.device.source, f"{name}: cite a source"


def test_shipped_map_facts_from_instruments_md():
    hmp = load_map("vaisala_hmp")
    assert (hmp.device.address, hmp.device.baudrate, hmp.device.parity, hmp.device.stopbits) == (240, 19200, "N", 2)
    assert hmp.point("rh").address == 0 and hmp.point("t_air").address == 2 and hmp.point("td").address == 6
    assert {p.order for p in hmp.points} == {"CDAB"} and {p.type for p in hmp.points} == {"float32"}
    assert "HMP155" in hmp.path.read_text()  # the ASCII-only probe is called out
    assert "[?]" in load_map("vaisala_barometer").path.read_text()
    kz = load_map("kipp_zonen_smp")
    assert kz.point("irradiance").scale_register == 4 and kz.point("irradiance").kind == "input"
    assert kz.point("t_body").scale == 0.1 and kz.point("status").address == 3
    apogee = load_map("apogee_sq422x")
    assert (apogee.device.baudrate, apogee.device.parity, apogee.device.address) == (19200, "E", 1)
    assert apogee.point("ppfd").order == "ABCD"
    soil = load_map("soil_probe_layout_a")
    assert (soil.device.baudrate, soil.device.parity, soil.device.stopbits) == (9600, "N", 1)
    assert [p.scale for p in soil.points] == [0.1, 0.1, 1.0, 0.1]
    assert soil.point("soil_temperature").type == "int16"


def test_load_by_path_and_defaults(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(GOOD)
    m = load_map(str(path))
    assert m.name == "mine" and m.device.address == 7 and m.device.parity == "N"
    assert m.point("a").order == "CDAB" and m.point("c").type == "int16" and m.point("c").order == "CDAB"
    assert [(r.address, r.count) for r in plan_requests(m.points)] == [(0, 5)]


def _err(tmp_path, text: str, name: str = "hmp.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(MapError) as info:
        load_map(path)
    assert isinstance(info.value, ValueError)
    return str(info.value)


@pytest.mark.parametrize(("change", "expected"), [
    (('name = "c"\naddress = 4\ntype = "int16"', 'name = "c"\naddress = 4\ntype = "float"'),
     "hmp.toml: points[2].type: 'float' is not one of int16, uint16, int32, uint32, float32, bool (point 'c')"),
    (('name = "b"\naddress = 2', 'name = "b"\naddress = 1'),
     "hmp.toml: points[1].address: 'b': holding register 1 (0x0001) overlaps point 'a'"),
    (('name = "b"', 'name = "a"'), "hmp.toml: points[1].name: 'a' already used by points[0]"),
    (('name = "b"\naddress = 2', 'name = "b"\naddress = 2\norder = "BACD"'),
     "hmp.toml: points[1].order: 'BACD' is not one of ABCD, CDAB, BADC, DCBA (point 'b')"),
    (('name = "b"\naddress = 2', 'name = "b"\nadress = 2'),
     "hmp.toml: points[1].adress: unknown key; known keys: name, kind, address"),
    (("scale = 0.1", "scale = 0"), "hmp.toml: points[2].scale: must not be 0 (point 'c')"),
    (("address = 7", "address = 300"), "hmp.toml: device.address: 300 is outside 1..247"),
    (('baudrate = 9600', 'baudrate = 9600\nparity = "X"'), "hmp.toml: device.parity: 'X' is not one of N, E, O"),
    (('name = "b"\naddress = 2', 'name = "b"\naddress = 65535'),
     "hmp.toml: points[1].address: 65535 is outside 0..65534 (point 'b')"),
    (('name = "c"\naddress = 4', 'name = "c"\naddress = "4"'), "hmp.toml: points[2].address: '4' is not an integer"),
    (('name = "b"\naddress = 2', 'name = "b"\naddress = 2\nkind = "coil"\ntype = "int16"'),
     "hmp.toml: points[1].type: 'int16': coil points are single bits, type must be bool"),
    (('scale = 0.1', 'scale = 0.1\nscale_register = 0'),
     "hmp.toml: points[2].scale_register: 'c' needs an int16 point at holding address 0"),
    (('[device]\nmodel = "test"', '[device]\nmodl = "test"'), "hmp.toml: device.modl: unknown key"),
    (('name = "a"', 'name = "A b"'), "hmp.toml: points[0].name: 'A b' must be lower case"),
])
def test_bad_maps_name_file_and_key(tmp_path, change, expected):
    old, new = change
    assert old in GOOD
    message = _err(tmp_path, GOOD.replace(old, new, 1))
    assert message.startswith(expected) or expected in message, message


def test_structural_errors(tmp_path):
    assert _err(tmp_path, "[device\n") .startswith("hmp.toml: not valid TOML")
    assert "a [device] table is required" in _err(tmp_path, '[[points]]\nname="a"\nkind="holding"\naddress=0\n')
    assert "at least one [[points]] table is required" in _err(tmp_path, '[device]\nmodel="x"\n')
    with pytest.raises(MapError, match="no shipped register map 'nope'; shipped: apogee_sq422x"):
        load_map("nope")
    with pytest.raises(MapError, match="cannot read"):
        load_map(tmp_path / "missing.toml")
    with pytest.raises(MapError, match=r"<map>: points\[0\].kind: 'holdng' is not one of coil"):
        parse_map({"device": {"model": "x"}, "points": [{"name": "a", "kind": "holdng", "address": 0}]})


def test_plan_requests_groups_contiguous_points_only_and_caps_at_125():
    hmp = load_map("vaisala_hmp")
    # 0x0004 is not mapped (HMP4 map): two requests, not one spanning the hole
    assert [(r.kind, r.address, r.count) for r in plan_requests(hmp.points)] == [("holding", 0, 4),
                                                                                ("holding", 6, 16)]
    assert [(r.address, r.count) for r in plan_requests(hmp.points, max_gap=2)] == [(0, 22)]
    many = parse_map({"device": {"model": "x"}, "point_defaults": {"kind": "input", "type": "uint16"},
                      "points": [{"name": f"p{i}", "address": i} for i in range(300)]})
    plan = plan_requests(many.points)
    assert [(r.address, r.count) for r in plan] == [(0, 125), (125, 125), (250, 50)]
    assert sum(len(r.points) for r in plan) == 300
    kz = load_map("kipp_zonen_smp")
    assert [(r.kind, r.address, r.count) for r in plan_requests(kz.points)] == [("input", 0, 10)]
