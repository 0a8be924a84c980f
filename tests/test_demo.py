"""``fluxedge demo`` through the real command: it says why its first period is skipped, shows the
emulator's true fluxes beside the computed ones, and one alarm raised and cleared."""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_bridge.turbulence import TurbulenceSpec, true_fluxes
from fluxedge.demo.run import true_values
from fluxedge.demo.servers import find_binary

_SCRIPT = Path(sys.executable).with_name("fluxedge")
FLUXEDGE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "fluxedge.cli"]


def test_true_values_are_the_turbulence_models():
    spec = TurbulenceSpec()
    true = true_values(spec)
    assert true["FC"] == true_fluxes(spec)["FC"] < 0
    # textbook magnitudes for 300 K, 100.5 kPa, 28 mmol/mol: rho ~ 1.15 kg m-3, cp ~ 1020, lambda ~ 2.44e6
    assert true["H"] == pytest.approx(1.154 * 1019.6 * 0.45 * 0.35 * 0.4, rel=0.005)
    assert true["LE"] == pytest.approx(2.436e6 * 18.015e-3 * true_fluxes(spec)["FH2O"] * 1e-3, rel=0.005)
    assert true["USTAR"] == pytest.approx(math.sqrt(0.35 * 0.8 * 0.35), rel=1e-9)  # |cov(u, w)| ** 0.5
    assert true["TAU"] == pytest.approx(-1.154 * 0.35 * 0.8 * 0.35 * 2.5 / math.hypot(2.5, 0.8), rel=0.005)


def _row(line: str) -> list[float | None]:
    return [None if cell == "-" else float(cell) for cell in line.split()[-8:]]


def test_demo_explains_the_skipped_period_shows_true_fluxes_and_an_alarm(tmp_path):
    find_binary("mosquitto")  # deploy/setup-dev.sh installs both: missing is a failure, not a skip
    find_binary("influxd")
    result = subprocess.run([*FLUXEDGE, "demo", "--duration", "20", "--period", "10", "--plots", str(tmp_path)],
                            capture_output=True, text=True, timeout=240)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    if "so the station skips it" in out:  # started more than 10 % into a period: skipped, and said why
        assert re.search(r"Skipped: the period from \S+: \d+ of 200 samples \([\d.]+ % missing, limit 10 %\): "
                         r"the station started during it", out), out
    else:  # started within the first second of a period
        assert "so it is processed too" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[-8:] == ["H", "LE", "FC", "USTAR", "TAU", "ZL",
                                                                             "WS", "N_SAMPLES"])
    true_line = next(line for line in lines if line.strip().startswith("true (emulator)"))
    rows = [_row(line) for line in lines[header + 1:lines.index(true_line)]]
    true = _row(true_line)
    assert len(rows) >= 2 and true[2] == pytest.approx(true_values()["FC"], rel=1e-3)
    assert true[5] is None and true[7] is None  # ZL, N_SAMPLES: no true value
    # 200-sample periods: each covariance within about 17 % (one standard error) of the truth
    assert any(abs(r[2] / true[2] - 1) < 0.35 and abs(r[0] / true[0] - 1) < 0.35 for r in rows), rows
    alarms = out[out.index("Alarms read back from InfluxDB"):]
    assert re.search(r"irga  instrument_silent  raised", alarms) and re.search(r"irga  instrument_silent  cleared",
                                                                               alarms), alarms
    assert "the station raises the instrument_silent alarm" in out
    check_demo_plots(out, tmp_path)


def check_demo_plots(out: str, directory: Path) -> None:
    """The demo's plots, as images: pixel size (figure inches x 110 dpi), not blank, and in the SVG
    the axes and the plotted series of each panel."""
    import xml.etree.ElementTree as ET

    import matplotlib.image

    listed = out[out.index("Plots of the demo's data"):]
    drawn = re.findall(r"  (\w+): (\S+\.png)", listed)
    assert {k for k, _ in drawn} >= {"timeseries", "fingerprint", "health"}, listed
    assert "energy_balance: not drawn:" in listed and "NETRAD" in listed  # the demo tower has no radiometer
    for kind, png in drawn:
        image = matplotlib.image.imread(png)
        assert image.shape[0] >= 300 and image.shape[1] >= 500, (kind, image.shape)
        assert image[..., :3].std() > 0.05, f"{kind}: a blank image"
        svg = ET.parse(Path(png).with_suffix(".svg")).getroot()
        groups = [g.get("id", "") for g in svg.iter("{http://www.w3.org/2000/svg}g")]
        axes = [g for g in groups if re.fullmatch(r"axes_\d+", g)]
        if kind == "timeseries":  # FC, LE, H: one panel each, with at least one QC-coloured series
            assert len(axes) == 3 and sum(g.startswith("PathCollection") for g in groups) >= 3, groups
        elif kind == "fingerprint":  # the image and its colour bar
            assert len(axes) == 2
        elif kind == "health":  # signal strength of the LI-7500, flagged and missing shares, checksum errors
            assert len(axes) >= 3 and sum(g.startswith("line2d") for g in groups) >= 3, groups
