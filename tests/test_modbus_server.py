"""The Modbus emulator: the datablock +1 offset, several devices, lifecycle, writes, fault validation."""

from __future__ import annotations

import socket

import pytest
from pymodbus.client import ModbusTcpClient
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock

from firmware_bridge.modbus.registers import decode
from firmware_bridge.modbus.server import EmulatedDevice, Faults, ModbusEmulator, datablock_address, met_values


def _client(emu: ModbusEmulator) -> ModbusTcpClient:
    return ModbusTcpClient("127.0.0.1", port=emu.port, timeout=0.3, retries=0)


def test_pymodbus_device_context_reads_the_datablock_one_address_up():
    """stack-notes.md d: ModbusDeviceContext adds +1 before reading the block (the off-by-one trap)."""
    naive = ModbusDeviceContext(hr=ModbusSequentialDataBlock(0, [100, 101, 102, 103]))
    assert naive.getValues(3, 0, count=2) == [101, 102]  # PDU 0 does NOT read the block's first value
    shifted = ModbusDeviceContext(hr=ModbusSequentialDataBlock(datablock_address(0), [100, 101, 102, 103]))
    assert shifted.getValues(3, 0, count=2) == [100, 101]
    assert datablock_address(0) == 1


def test_emulator_maps_pdu_addresses_to_datablock_keys_plus_one_over_the_network():
    dev = EmulatedDevice("vaisala_hmp", values={"rh": 30.56, "t_air": 21.5})
    with ModbusEmulator(dev) as emu, _client(emu) as client:
        reply = client.read_holding_registers(0, count=4, device_id=240)
        assert reply.registers == [0x7AE1, 0x41F4, 0x0000, 0x41AC]  # instruments.md 7.2 vector
        block = dev.context.store["h"].values
        assert [block[datablock_address(a)] for a in range(4)] == reply.registers
        assert 0 not in block  # nothing stored at key 0: PDU 0 lives at key 1
        # a register poked into the block at key 7 (PDU 6 = td) is what a read of PDU 6 returns
        dev.values = {"td": 1.25}
        reply = client.read_holding_registers(6, count=2, device_id=240)
        assert reply.registers == [block[7], block[8]]
        assert decode(reply.registers, "float32", "CDAB") == 1.25
        # unmapped registers answer "illegal data address", as the sensor does
        assert client.read_holding_registers(4, count=2, device_id=240).exception_code == 2
        assert client.read_holding_registers(20, count=4, device_id=240).exception_code == 2


def test_several_devices_and_unknown_ids():
    hmp = EmulatedDevice("vaisala_hmp", values={"rh": 42.0})
    soil = EmulatedDevice("soil_probe_layout_a", values={"soil_ec": 1000.0})
    with ModbusEmulator([hmp, soil]) as emu, _client(emu) as client:
        assert decode(client.read_holding_registers(0, count=2, device_id=240).registers, "float32", "CDAB") == 42.0
        assert client.read_holding_registers(2, count=1, device_id=1).registers == [1000]
        with pytest.raises(Exception, match="No response received"):
            client.read_holding_registers(0, count=1, device_id=99)  # as on RS-485: nobody answers
        with pytest.raises(ValueError, match="pick one"):
            _ = emu.device
    with ModbusEmulator([hmp], ignore_missing_devices=False) as emu, _client(emu) as client:
        assert client.read_holding_registers(0, count=1, device_id=99).exception_code == 0x0B
    with pytest.raises(ValueError, match="share device id 240"):
        ModbusEmulator([hmp, EmulatedDevice("vaisala_barometer")])


def test_start_stop_and_listen_errors():
    dev = EmulatedDevice("soil_probe_layout_a")
    emu = ModbusEmulator(dev).start()
    port = emu.port
    assert port > 0 and emu.address == f"tcp://127.0.0.1:{port}"
    with pytest.raises(RuntimeError, match=f"cannot listen on tcp://127.0.0.1:{port}"):
        ModbusEmulator(EmulatedDevice("soil_probe_layout_a"), port=port).start()
    emu.stop()
    emu.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5)
    with pytest.raises(RuntimeError, match="cannot listen on /dev/no-such-tty"):
        ModbusEmulator(dev, transport="rtu", serial_port="/dev/no-such-tty").start()
    with pytest.raises(ValueError, match="transport 'rtu' needs serial_port"):
        ModbusEmulator(dev, transport="rtu")
    with pytest.raises(ValueError, match=r"device id 300 is outside 1\.\.247"):
        EmulatedDevice("soil_probe_layout_a", device_id=300)


def test_writes_are_refused_as_on_read_only_measurement_registers():
    dev = EmulatedDevice("soil_probe_layout_a", values={"soil_ph": 6.5})
    with ModbusEmulator(dev) as emu, _client(emu) as client:
        assert client.write_register(3, 70, device_id=1).exception_code == 2
        assert client.write_registers(0x200, [5, 6], device_id=1).exception_code == 2
        assert client.read_holding_registers(3, count=1, device_id=1).registers == [65]
        assert [fc for _, fc, *_ in dev.requests] == [6, 16, 3]


def test_faults_validate_and_clear():
    f = Faults()
    with pytest.raises(ValueError, match="99 is not a Modbus exception code"):
        f.exception = 99
    with pytest.raises(ValueError, match="word_order 'XYZW' is not one of ABCD"):
        f.word_order = "XYZW"
    with pytest.raises(AttributeError, match="no fault 'slient'"):
        f.slient = True
    f.exception, f.silent, f.point_exceptions, f.noise_before = 6, True, {"td": 2}, b"\x00"
    assert f.active
    f.clear()
    assert not f.active and f.point_exceptions == {} and f.exception is None


def test_synthetic_met_values_are_physically_consistent():
    for t in range(0, 3600, 300):
        v = met_values(float(t))
        assert v["td"] <= v["t_wet"] <= v["t_air"]
        assert 0 < v["rh"] < 100 and 990 < v["pressure"] < 1020 and v["irradiance"] >= 0
    dev = EmulatedDevice("kipp_zonen_smp")
    values = dev.current_values(900.0)  # a quarter "day": sun up
    assert values["scale_factor"] == 1.0 and values["device_type"] == 633.0 and values["irradiance"] > 800
