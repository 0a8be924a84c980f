"""``fluxedge bridge ...``: technician tools for instruments (decode, sniff, emulate, probe)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

import numpy as np

from firmware_bridge.families import FAMILIES, family

DECODE_CHUNK_BYTES = 4096


def add_parser(sub: argparse._SubParsersAction) -> None:
    bridge = sub.add_parser("bridge", help="instrument tools: decode, sniff, emulate, probe",
                            description="Talk to instruments, decode their bytes, or emulate them.")
    bsub = bridge.add_subparsers(dest="bridge_command", required=True, metavar="COMMAND")
    names = ", ".join(sorted(FAMILIES))

    dec = bsub.add_parser("decode", help="decode a capture of raw bytes to JSON lines",
                          description="Decode raw instrument bytes: one JSON object per frame (with the names of "
                                      "diagnostic flags that are set), an object per error event (checksum "
                                      "errors, resyncs, counter gaps, with the byte offset near which they "
                                      "happened), and a final summary of the parser's counters. Exits 1 if "
                                      "there were bytes but not one frame of this instrument in them.")
    dec.add_argument("--instrument", required=True, choices=sorted(FAMILIES), metavar="NAME", help=names)
    dec.add_argument("file", help="capture file ('-' for standard input)")
    dec.set_defaults(func=decode)

    sniff = bsub.add_parser("sniff", help="live-decode an instrument's port, with a health line",
                            description="Open a port, decode what the instrument sends (JSON lines on stdout) "
                                        "and print a health line to stderr every few seconds: frame rate, "
                                        "errors, resyncs, counter gaps, diagnostic flags, silence. Re-opens the "
                                        "port if it vanishes. Stop with Ctrl-C.")
    sniff.add_argument("--instrument", required=True, choices=sorted(FAMILIES), metavar="NAME", help=names)
    sniff.add_argument("--port", required=True, help="serial device, or tcp://HOST:PORT")
    sniff.add_argument("--baud", type=int, help="baud rate (default: the instrument's factory rate)")
    sniff.add_argument("--rate", type=float, default=20.0, help="sampling rate asked of the instrument (Hz)")
    sniff.add_argument("--no-start", action="store_true", help="send nothing to the instrument (listen only)")
    sniff.add_argument("--health-every", type=float, default=2.0, metavar="S", help="seconds between health lines")
    sniff.add_argument("--health-only", action="store_true", help="print health lines only, not frames")
    sniff.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    modbus = sniff.add_argument_group("modbus", "polling a Modbus sensor (--instrument modbus)")
    modbus.add_argument("--map", help="register map: a shipped name (vaisala_hmp, kipp_zonen_smp, ...) or a TOML path")
    modbus.add_argument("--device-id", type=int, help="Modbus address (default: the map's)")
    modbus.add_argument("--parity", choices=["N", "E", "O"], help="serial parity (default: the map's)")
    modbus.add_argument("--stopbits", type=int, choices=[1, 2], help="serial stop bits (default: the map's)")
    modbus.add_argument("--every", type=float, default=1.0, metavar="S", help="seconds between polls (default 1)")
    modbus.add_argument("--timeout", type=float, metavar="S", help="reply timeout per attempt (default: the map's)")
    modbus.add_argument("--retries", type=int, metavar="N", help="further attempts per request (default: the map's)")
    sniff.set_defaults(func=sniff_cmd)

    emu = bsub.add_parser("emulate", help="serve emulated instruments on ptys or TCP ports",
                          description="Emulate instruments sharing one turbulent flow (or a replayed raw file). "
                                      "Prints 'NAME ADDRESS' per instrument (a pty path, or tcp://HOST:PORT), "
                                      "then streams until interrupted. Faults: KIND[:PROB][@START_S[+DURATION_S]] "
                                      "with KIND one of " + ", ".join(_fault_kinds()) + "; prefix with NAME= "
                                      "to aim at one instrument (e.g. --fault csat3=rain@30+10).")
    emu.add_argument("names", nargs="+", choices=sorted(FAMILIES), metavar="NAME",
                     help=names + " ('modbus' serves --map register maps, alone)")
    where = emu.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true", help="serve serial instruments on pseudo-terminals (default)")
    where.add_argument("--tcp", type=int, metavar="PORT",
                       help="serve on TCP instead (consecutive ports for several instruments; 0 = free ports)")
    emu.add_argument("--fault", action="append", default=[], metavar="SPEC", help="inject a fault (repeatable)")
    emu.add_argument("--rate", type=float, default=20.0, help="samples per second (default 20)")
    emu.add_argument("--baud", type=int, help="baud rate the emulated instruments run at (default: factory rate)")
    emu.add_argument("--seed", type=int, default=None, help="random seed of the turbulence model")
    emu.add_argument("--replay", metavar="FILE", help="replay a TOA5 raw file instead of synthetic turbulence")
    emu.add_argument("--start-at-boundary", type=float, metavar="SECONDS", default=None,
                     help="emit the first record at the next multiple of SECONDS of Unix time (e.g. the station's "
                          "averaging period, so a replayed file fills exactly one station period; default: at once)")
    emu.add_argument("--map", action="append", default=[], metavar="MAP[@ID]",
                     help="modbus: register map to serve, at device id ID (default: the map's); repeatable, one "
                          "sensor each (default vaisala_hmp); faults: "
                          "silence, exception, busy, bad_checksum, noise, word_order, timeout")
    emu.set_defaults(func=emulate)

    probe = bsub.add_parser("probe", help="find which instrument answers on a port, and at which baud",
                            description="Listen on a serial port at each baud rate the supported instruments "
                                        "use, try every family's parser on what arrives, and say what answered. "
                                        "Sends nothing. Without --port, tries every serial port the system lists.")
    probe.add_argument("--port", help="serial device (default: all /dev/ttyUSB*, /dev/ttyACM*, ... found)")
    probe.add_argument("--listen", type=float, default=1.2, metavar="S", help="seconds to listen per baud rate")
    probe.add_argument("--all", action="store_true", help="keep trying other rates after a match")
    probe.add_argument("--modbus", action="store_true",
                       help="also ask for Modbus RTU sensors: one read request per shipped register map, at its "
                            "default address, rate and serial format (reads change nothing on a sensor)")
    probe.add_argument("--format", metavar="8N1", help="serial format for the Modbus requests (default: each map's)")
    probe.set_defaults(func=probe_cmd)


def _fault_kinds() -> list[str]:
    from firmware_bridge.faults import KINDS

    return list(KINDS)


def _error(message: str) -> int:
    print(f"fluxedge: error: {message}", file=sys.stderr)
    return 2


def flag_names(fam, columns: dict[str, np.ndarray]) -> list[list[str]] | None:
    """Per frame, the names of the diagnostic flags that are set (None if the family has no diag)."""
    if "diag" not in columns or not hasattr(fam, "decode_flags"):
        return None
    flags = fam.decode_flags(columns["diag"])
    n = len(columns["diag"])
    return [[name for name, values in flags.items() if bool(values[i])] for i in range(n)]


# -- decode ----------------------------------------------------------------------------------------
def decode(args: argparse.Namespace) -> int:
    fam = family(args.instrument)
    parser = fam.Parser()
    try:
        source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        return _error(f"cannot read {args.file}: {exc.strerror}")
    offset = 0
    head = bytearray()  # the first bytes, to say which family they are if not this one
    before = parser.stats.as_dict()
    with source:
        while chunk := source.read(DECODE_CHUNK_BYTES):
            offset += len(chunk)
            if len(head) < GUESS_BYTES:
                head += chunk[:GUESS_BYTES - len(head)]
            batch = parser.feed(chunk)
            for line in frame_lines(fam, parser, batch):
                print(line)
            after = parser.stats.as_dict()
            for name, value in after.items():
                if name != "frames_ok" and value > before[name]:
                    print(json.dumps({"event": name, "count": value - before[name], "before_byte": offset}))
            before = after
    print(json.dumps({"summary": parser.stats.as_dict(), "bytes": offset}))
    if offset and not parser.stats.frames_ok:
        others = [name for name in sorted(FAMILIES) if name != args.instrument and _decodes(name, bytes(head))]
        hint = f"they decode as {' or '.join(others)}" if others else "no other family decodes them either"
        print(f"fluxedge: error: no {args.instrument} frame in {offset} bytes ({hint}); wrong --instrument?",
              file=sys.stderr)
        return 1
    return 0


#: how many leading bytes ``decode`` tries other families on when its own decodes nothing
GUESS_BYTES = 65536


def _decodes(name: str, data: bytes) -> bool:
    """Whether family ``name`` reads ``data`` as ``bridge probe`` calls an answer: several frames, few rejected."""
    from firmware_bridge.probe import MIN_FRAMES, score

    result = score(name, data, 0, 1.0)
    return result.frames_ok >= MIN_FRAMES and result.errors * 2 <= result.frames_ok


def frame_lines(fam, parser, batch) -> list[str]:
    rows = batch.rows()
    flags = flag_names(fam, batch.columns)
    extra = getattr(parser, "take_details", None)  # e.g. Modbus register lists, not columnar
    details = extra() if extra else None
    lines = []
    for i, row in enumerate(rows):
        if flags is not None:
            row["flags"] = flags[i]
        if details is not None and i < len(details):
            row.update(details[i])
        lines.append(json.dumps(row))
    return lines


# -- sniff -----------------------------------------------------------------------------------------
def health_line(driver, fam, window: dict[str, float], window_s: float) -> str:
    h = driver.health()
    rate = (h["frames_ok"] - window["frames"]) / window_s if window_s > 0 else 0.0
    if not h["connected"]:
        state = "DISCONNECTED (re-opening)"
    elif h["silent"]:
        state = f"SILENT for {h['last_frame_age_s'] or window_s:.1f} s"
    else:
        state = "ok"
    parts = [f"{driver.name} {h['address']}: {state}", f"{rate:.1f} frames/s", f"ok {h['frames_ok']}",
             f"checksum errors {h['checksum_errors']}", f"malformed {h['malformed']}",
             f"resyncs {h['resyncs']} ({h['bytes_skipped']} bytes)",
             f"counter gaps {h['counter_gaps']} ({h['samples_missed']} missed)", f"NaN {h['nan_records']}"]
    if window.get("flag_frames"):
        pct = {k: 100.0 * v / window["flag_frames"] for k, v in window.items() if k.startswith("flag:") and v}
        if pct:
            parts.append("flags " + " ".join(f"{k[5:]} {v:.0f}%" for k, v in sorted(pct.items())))
    return "health " + ", ".join(parts)


def sniff_cmd(args: argparse.Namespace) -> int:
    from firmware_bridge.driver import Driver

    if family(args.instrument).TRANSPORT == "modbus":
        return _modbus(lambda stop: _modbus_tools().sniff(
            args.map or "vaisala_hmp", args.port, args.device_id, args.baud, args.parity, args.stopbits, args.every,
            args.duration, args.health_every, args.health_only, stop, timeout_s=args.timeout, retries=args.retries))

    fam = family(args.instrument)
    window: dict[str, float] = {"frames": 0, "flag_frames": 0}
    lock = threading.Lock()

    def on_batch(batch, now: float) -> None:
        flags = flag_names(fam, batch.columns)
        with lock:
            window["flag_frames"] += batch.n
            for names in flags or []:
                for name in names:
                    window[f"flag:{name}"] = window.get(f"flag:{name}", 0) + 1
        if not args.health_only:
            for line in frame_lines(fam, driver.parser, batch):
                print(line, flush=True)

    def on_event(name: str, level: int, fields: dict) -> None:
        print(f"event {name} " + " ".join(f"{k}={v}" for k, v in fields.items()), file=sys.stderr, flush=True)

    try:
        driver = Driver(args.instrument, args.instrument, args.port, args.baud, rate_hz=args.rate,
                        send_start=not args.no_start, on_batch=on_batch, on_event=on_event)
    except ValueError as exc:
        return _error(f"--port: {exc}")
    thread = threading.Thread(target=driver.run, daemon=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    thread.start()
    started = last = time.monotonic()
    while not done.wait(min(args.health_every, 0.2) if args.duration else args.health_every):
        now = time.monotonic()
        if now - last >= args.health_every:
            with lock:
                print(health_line(driver, fam, window, now - last), file=sys.stderr, flush=True)
                window = {"frames": driver.parser.stats.frames_ok, "flag_frames": 0}
            last = now
        if args.duration and now - started >= args.duration:
            break
    driver.stop()
    thread.join(2)
    with lock:
        print(health_line(driver, fam, window, max(time.monotonic() - last, 1e-3)), file=sys.stderr, flush=True)
    return 0


# -- emulate ---------------------------------------------------------------------------------------
def _modbus_tools():
    from firmware_bridge.modbus import tools

    return tools


def _modbus(run) -> int:
    """Run a Modbus tool until Ctrl-C, turning its configuration errors into one line."""
    tools = _modbus_tools()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        return run(stop)
    except tools.ModbusToolError as exc:
        return _error(str(exc))


def emulate(args: argparse.Namespace) -> int:
    if "modbus" in args.names:
        if len(args.names) > 1:
            return _error("'modbus' is emulated alone (one bus); give its sensors with --map")
        return _modbus(lambda stop: _modbus_tools().emulate(args.map, args.tcp, args.fault, stop))
    if args.start_at_boundary is not None and not args.start_at_boundary > 0:
        return _error(f"--start-at-boundary must be a positive number of seconds, got {args.start_at_boundary}")
    from firmware_bridge.emulator import TowerEmulator
    from firmware_bridge.faults import FaultSpecError, parse_fault
    from firmware_bridge.replay import ReplayError, read_toa5
    from firmware_bridge.turbulence import TurbulenceModel

    faults: dict[str, list] = {name: [] for name in args.names}
    for spec in args.fault:
        target, sep, text = spec.partition("=")
        if not sep:
            target, text = "", spec
        if target and target not in faults:
            return _error(f"--fault {spec!r}: {target!r} is not one of the emulated instruments "
                          f"({', '.join(args.names)})")
        try:
            fault = parse_fault(text)
        except FaultSpecError as exc:
            return _error(str(exc))
        for name in [target] if target else args.names:
            faults[name].append(fault)
    replay = None
    if args.replay:
        try:
            replay = read_toa5(args.replay)
        except ReplayError as exc:
            return _error(str(exc))
    transports: dict[str, str | tuple[str, int]] = {}
    if args.tcp is not None:
        transports = {name: ("tcp", args.tcp + i if args.tcp else 0) for i, name in enumerate(args.names)}
    devices = {name: {"baud": args.baud} for name in args.names if args.baud}
    try:
        tower = TowerEmulator(args.names, args.rate, TurbulenceModel(seed=args.seed), replay=replay,
                              transports=transports, faults=faults, devices=devices, seed=args.seed)
    except OSError as exc:
        return _error(f"cannot serve: {exc.strerror or exc}")
    for name, port in tower.ports.items():
        print(name, port.path, flush=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: tower.stop())
    if args.start_at_boundary is not None:
        first = (int(time.time() // args.start_at_boundary) + 1) * args.start_at_boundary
        print(f"first record at {first:.3f}", file=sys.stderr, flush=True)
        tower.run(start_at=first)
    else:
        tower.run()
    tower.close()
    return 0


# -- probe -----------------------------------------------------------------------------------------
def probe_cmd(args: argparse.Namespace) -> int:
    from firmware_bridge.link import LinkError
    from firmware_bridge.probe import explain, probe_modbus, probe_port

    if args.port:
        ports = [args.port]
    else:
        from serial.tools import list_ports

        ports = sorted(p.device for p in list_ports.comports())
        if not ports:
            return _error("no serial ports found; plug the adapter in or name one with --port")
    answered = False
    for path in ports:
        print(f"probing {path} ...", file=sys.stderr, flush=True)
        try:
            found, heard = probe_port(path, args.listen, stop_at_first=not args.all)
        except LinkError as exc:
            print(f"{path}: cannot open: {exc}")
            continue
        if args.modbus and not found:
            try:
                modbus = probe_modbus(path, serial_format=args.format)
            except LinkError as exc:
                print(f"{path}: Modbus probe: {exc}")
                modbus = []
            for answer in modbus:
                print(f"{path}: {answer.describe()}", flush=True)
            if modbus:
                answered = True
                continue
        answered |= bool(found)
        for line in explain(path, found, heard):
            print(line, flush=True)
    return 0 if answered else 1
