"""The demo's plots (``fluxedge demo --plots DIR``): every plot of :mod:`collector.science.plots`
the demo tower's data allow, from the demo's InfluxDB, as PNG (the README shows them) and SVG."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

STATION = "demo-tower"
#: the demo site lies in Singapore (station.toml's latitude and longitude): UTC+8 all year
TIME_ZONE = "Asia/Singapore"


def make_plots(influx, start_s: float, end_s: float, out: Path) -> list[tuple[str, Path | str]]:
    """(kind, path) of each plot made, or (kind, why not) for each the data did not allow."""
    from collector.science import frame, plots

    site = frame.SiteTime.of(TIME_ZONE)
    start = datetime.fromtimestamp(start_s, UTC)
    end = datetime.fromtimestamp(end_s, UTC)
    periods = frame.load(influx, STATION, start, end, site=site, site_id="SG-Dmo")
    diag = frame.load_diag(influx, STATION, start, end, site=site)
    out.mkdir(parents=True, exist_ok=True)
    made: list[tuple[str, Path | str]] = []
    for kind, draw in plots.PLOTS.items():
        try:
            fig = draw(diag, periods) if kind == "health" else draw(periods)
        except ValueError as exc:
            made.append((kind, str(exc)))
            continue
        plots.save(fig, out / f"demo_{kind}.svg")
        made.append((kind, plots.save(fig, out / f"demo_{kind}.png")))
    return made
