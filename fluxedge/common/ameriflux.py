"""AmeriFlux BASE half-hourly CSV: column names, units and formatting.

Conventions (AmeriFlux "Half-Hourly/Hourly Data Upload Format", FLUXNET data variables; see
shared/reference/ec-methods.md f.8): ``TIMESTAMP_START`` and ``TIMESTAMP_END`` first, as
``YYYYMMDDHHMM``; missing values ``-9999``; base names with their AmeriFlux units. Every quantity
the engine computes that has an AmeriFlux name is a column (random uncertainties with the
``_RANDUNC`` qualifier, in the unit of their flux; ``ET`` in mm hour-1 as EddyPro's ``ET``). The CSV
holds AmeriFlux names only: why a value is missing goes to a companion file (:func:`write_reasons`).
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Iterable
from typing import IO

MISSING = -9999

#: Column -> unit, in output order (after the two time stamps).
COLUMNS: dict[str, str] = {
    "FC": "umolCO2 m-2 s-1", "FH2O": "mmolH2O m-2 s-1", "LE": "W m-2", "H": "W m-2", "TAU": "kg m-1 s-2",
    "USTAR": "m s-1", "FCH4": "nmolCH4 m-2 s-1", "ET": "mm hour-1", "FC_RANDUNC": "umolCO2 m-2 s-1",
    "LE_RANDUNC": "W m-2", "H_RANDUNC": "W m-2", "TAU_RANDUNC": "kg m-1 s-2", "ZL": "nondimensional",
    "MO_LENGTH": "m", "WS": "m s-1", "WD": "decimal degrees", "U_SIGMA": "m s-1", "V_SIGMA": "m s-1",
    "W_SIGMA": "m s-1", "T_SONIC": "deg C", "TA": "deg C", "RH": "%", "CO2": "umolCO2 mol-1",
    "H2O": "mmolH2O mol-1", "PA": "kPa", "FC_SSITC_TEST": "nondimensional", "H_SSITC_TEST": "nondimensional",
    "LE_SSITC_TEST": "nondimensional", "TAU_SSITC_TEST": "nondimensional",
    "FETCH_MAX": "m", "FETCH_70": "m", "FETCH_90": "m", "CO2_LAG": "s", "H2O_LAG": "s",
    "CH4": "nmolCH4 mol-1", "FCH4_SSITC_TEST": "nondimensional", "CH4_LAG": "s", "FCH4_RANDUNC": "nmolCH4 m-2 s-1",
}
#: Written only where a methane analyser measured (``flux process`` leaves them out otherwise).
CH4_COLUMNS = frozenset({"FCH4", "CH4", "FCH4_SSITC_TEST", "CH4_LAG", "FCH4_RANDUNC"})
INTEGER_COLUMNS = {"FC_SSITC_TEST", "H_SSITC_TEST", "LE_SSITC_TEST", "TAU_SSITC_TEST", "FCH4_SSITC_TEST"}


def timestamp(unix_s: float) -> str:
    """``YYYYMMDDHHMM`` of a Unix time (the caller has already chosen the time zone: AmeriFlux
    wants local standard time, without daylight saving)."""
    return time.strftime("%Y%m%d%H%M", time.gmtime(unix_s))


def cell(name: str, value: float | int | None, digits: int | None = 6) -> str:
    """One value: ``digits`` significant digits, or with ``None`` Python's ``repr`` (the shortest text
    that reads back as the same float64, so a CSV can be compared exactly)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return str(MISSING)
    if name in INTEGER_COLUMNS or name.endswith("_QC"):  # flags, FLUXNET's gap-fill quality too
        return str(int(value))
    return repr(float(value)) if digits is None else f"{value:.{digits}g}"


def write(out: IO[str], rows: Iterable[tuple[float, float, dict[str, float]]], columns: list[str] | None = None,
          digits: int | None = 6) -> int:
    """Write ``(start_unix, end_unix, results)`` rows; returns the number written. Columns with
    no value in any row (e.g. FCH4 without a methane analyser) are left out only when the caller
    passes ``columns``."""
    names = columns or list(COLUMNS)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["TIMESTAMP_START", "TIMESTAMP_END", *names])
    n = 0
    for start, end, results in rows:
        writer.writerow([timestamp(start), timestamp(end), *(cell(c, results.get(c), digits) for c in names)])
        n += 1
    return n


#: The columns of the companion file of reasons (``<out stem>_reasons.csv``).
REASON_COLUMNS = ("TIMESTAMP_START", "TIMESTAMP_END", "VARIABLE", "REASON")


def write_reasons(out: IO[str], reasons: Iterable[tuple[float, float, str, str]]) -> int:
    """Write ``(start_unix, end_unix, variable, reason)`` rows, one per period and missing variable,
    time stamps as in the main file; returns the number written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REASON_COLUMNS)
    n = 0
    for start, end, variable, reason in reasons:
        writer.writerow([timestamp(start), timestamp(end), variable, reason])
        n += 1
    return n
