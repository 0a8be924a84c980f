"""What a new user hit on the command line: a decode of the wrong instrument that said nothing, a
header-only CSV from a failed ``flux process``, ``-v`` refused after the subcommand, hidden defaults."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from firmware_bridge import csat3
from fluxedge.cli import build_parser, parse_args

_SCRIPT = Path(sys.executable).with_name("fluxedge")
FLUXEDGE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "fluxedge.cli"]


def fluxedge(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([*FLUXEDGE, *args], capture_output=True, input=stdin, timeout=120)
    result.stdout, result.stderr = result.stdout.decode(), result.stderr.decode()
    return result


def test_decode_with_the_wrong_instrument_says_so_and_fails(tmp_path):
    capture = tmp_path / "capture.bin"
    capture.write_bytes(csat3.encode([1.0] * 20, [0.0] * 20, [0.1] * 20, [25.0] * 20, range(20)))
    wrong = fluxedge("bridge", "decode", "--instrument", "li7500", str(capture))
    assert wrong.returncode == 1 and '"frames_ok": 0' in wrong.stdout
    said = wrong.stderr
    assert f"no li7500 frame in {capture.stat().st_size} bytes" in said and "decode as csat3" in said, said
    right = fluxedge("bridge", "decode", "--instrument", "csat3", str(capture))
    assert right.returncode == 0 and '"frames_ok": 20' in right.stdout and right.stderr == ""
    empty = fluxedge("bridge", "decode", "--instrument", "li7500", "-", stdin=b"")  # nothing to decode: no error
    assert empty.returncode == 0 and empty.stderr == ""


def test_a_failed_flux_process_writes_no_csv(tmp_path):
    bad = tmp_path / "2016-12-11T200000_AIU-1359.ghg"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    out = tmp_path / "fluxes.csv"
    result = fluxedge("flux", "process", str(bad), "-o", str(out))
    assert result.returncode == 1 and bad.name in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and f"{out} not written" in result.stderr
    out.write_text("an earlier run's result\n")  # left as it was, and said so
    result = fluxedge("flux", "process", str(bad), "-o", str(out))
    assert result.returncode == 1 and "left as it was" in result.stderr
    assert out.read_text() == "an earlier run's result\n"


def test_verbose_and_quiet_work_after_the_subcommand_too(tmp_path):
    capture = tmp_path / "capture.bin"
    capture.write_bytes(csat3.encode([1.0] * 5, [0.0] * 5, [0.1] * 5, [25.0] * 5, range(5)))
    result = fluxedge("bridge", "decode", "--instrument", "csat3", str(capture), "-v")
    assert result.returncode == 0, result.stderr
    for argv, verbose, quiet in (
            (["bridge", "decode", "--instrument", "csat3", "f", "-v"], True, False),
            (["-v", "bridge", "decode", "--instrument", "csat3", "f"], True, False),  # before: as always
            (["bridge", "decode", "--instrument", "csat3", "f"], False, False),
            (["station", "check", "-c", "x", "--quiet"], False, True),
            (["-q", "flux", "process", "a.ghg", "-o", "o.csv", "--verbose"], True, True),
            (["demo", "-v"], True, False)):
        args = parse_args(argv)
        assert (args.verbose, args.quiet) == (verbose, quiet), argv


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from _leaves(child, (*path, name))


def test_every_option_shows_its_default():
    leaves = dict(_leaves(build_parser()))
    assert len(leaves) >= 11 and ("flux", "process") in leaves and ("bridge", "sniff") in leaves
    for path, parser in leaves.items():
        for action in parser._actions:
            default = action.default
            if (not action.option_strings or default is None or isinstance(default, bool)
                    or default in (argparse.SUPPRESS, [])):
                continue
            assert "default" in (action.help or ""), f"fluxedge {' '.join(path)} {action.option_strings[-1]}"
    text = fluxedge("flux", "process", "--help").stdout
    assert "default: vickers_mahrt" in text and "default: double" in text and "default: kljun_2004" in text
    assert "(default: 3.0)" in fluxedge("station", "check", "--help").stdout


def test_a_collector_without_its_extra_says_what_to_install(tmp_path):
    """apprise is the [collector] extra: without it, one line naming the install, no traceback."""
    (tmp_path / "apprise.py").write_text('raise ModuleNotFoundError("No module named apprise", name="apprise")\n')
    config = tmp_path / "collector.toml"
    config.write_text('[mqtt]\nport = 1883\n[influxdb]\nurl = "http://127.0.0.1:8086"\ndatabase = "x"\n')
    proc = subprocess.run([sys.executable, "-m", "fluxedge.cli", "collector", "run", "-c", str(config)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 2
    assert proc.stderr.strip() == "fluxedge: error: this command needs apprise: pip install 'fluxedge[collector]'"


def test_the_science_commands_without_their_extra_say_what_to_install(tmp_path):
    """pandas, matplotlib and hesseflux are the [science] extra: a station node has none of them."""
    (tmp_path / "pandas.py").write_text('raise ModuleNotFoundError("No module named pandas", name="pandas")\n')
    span = ["--station", "s", "--from", "2026-01-01", "--to", "2026-01-02"]
    for argv in (["query", *span], ["export", "--check", "x.csv"], ["plot", "all", *span], ["budget", *span]):
        proc = subprocess.run([sys.executable, "-m", "fluxedge.cli", *argv, "-c", "collector.toml"],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(tmp_path)})
        assert proc.returncode == 2, (argv, proc.stderr)
        assert proc.stderr.strip() == "fluxedge: error: this command needs pandas: pip install 'fluxedge[science]'"


def test_the_web_page_without_its_extra_says_what_to_install(tmp_path):
    (tmp_path / "uvicorn.py").write_text('raise ModuleNotFoundError("No module named uvicorn", name="uvicorn")\n')
    proc = subprocess.run([sys.executable, "-m", "fluxedge.cli", "web", "-c", "collector.toml"], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 2
    assert proc.stderr.strip() == "fluxedge: error: this command needs uvicorn: pip install 'fluxedge[web]'"


def test_a_web_user_needs_a_hash_not_a_password(tmp_path):
    config = tmp_path / "collector.toml"
    config.write_text('[mqtt]\n[influxdb]\nurl = "http://127.0.0.1:8086"\ndatabase = "x"\n'
                      '[[web.user]]\nname = "tech"\npassword_hash = "hunter2"\n')
    proc = subprocess.run([sys.executable, "-m", "fluxedge.cli", "web", "-c", str(config)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "web.user[0].password_hash: must be a hash" in proc.stderr
    assert "hunter2" not in proc.stderr and "Traceback" not in proc.stderr
