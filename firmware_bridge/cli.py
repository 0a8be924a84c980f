"""``fluxedge bridge ...``: technician tools for instruments."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from firmware_bridge.families import FAMILIES, family


def add_parser(sub: argparse._SubParsersAction) -> None:
    bridge = sub.add_parser("bridge", help="instrument tools: emulate, decode",
                            description="Talk to instruments, decode their bytes, or emulate them.")
    bsub = bridge.add_subparsers(dest="bridge_command", required=True, metavar="COMMAND")
    emu = bsub.add_parser("emulate", help="serve emulated instruments on pseudo-terminals",
                          description="Emulate one or more instruments sharing one turbulent flow; prints "
                                      "'NAME DEVICE' per instrument, then streams until interrupted.")
    emu.add_argument("names", nargs="+", choices=sorted(FAMILIES), metavar="NAME",
                     help=f"instrument family: {', '.join(sorted(FAMILIES))}")
    emu.add_argument("--pty", action="store_true", default=True, help="serve on pseudo-terminals (default)")
    emu.add_argument("--rate", type=float, default=20.0, help="samples per second (default 20)")
    emu.add_argument("--seed", type=int, default=None, help="random seed of the turbulence model")
    emu.add_argument("--replay", metavar="FILE", help="replay a TOA5 raw file instead of synthetic turbulence")
    emu.set_defaults(func=emulate)
    dec = bsub.add_parser("decode", help="decode a capture of raw bytes to JSON lines",
                          description="Decode raw instrument bytes: one JSON object per frame, then a "
                                      "summary object with the parser's counters.")
    dec.add_argument("--instrument", required=True, choices=sorted(FAMILIES))
    dec.add_argument("file", help="capture file ('-' for standard input)")
    dec.set_defaults(func=decode)


def emulate(args: argparse.Namespace) -> int:
    from firmware_bridge.emulator import TowerEmulator
    from firmware_bridge.replay import ReplayError, read_toa5
    from firmware_bridge.turbulence import TurbulenceModel

    replay = None
    if args.replay:
        try:
            replay = read_toa5(args.replay)
        except ReplayError as exc:
            print(f"fluxedge: error: {exc}", file=sys.stderr)
            return 2
    tower = TowerEmulator(args.names, args.rate, TurbulenceModel(seed=args.seed), replay=replay,
                          pressure_kpa=None)
    for name, port in tower.ports.items():
        print(name, port.path, flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: (tower.stop(), done.set()))
    tower.run()
    tower.close()
    return 0


def decode(args: argparse.Namespace) -> int:
    parser = family(args.instrument).Parser()
    try:
        source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"fluxedge: error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    with source:
        while chunk := source.read(65536):
            for row in parser.feed(chunk).rows():
                print(json.dumps(row))
    print(json.dumps({"summary": parser.stats.as_dict()}))
    return 0
