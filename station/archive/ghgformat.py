"""One period as LI-COR writes it: the ``.data`` text and the EddyPro ``.metadata`` of a ``.ghg``.

The ``.data`` follows LI-COR SmartFlux: ``Key:<TAB>value`` header lines (Model, SN, Instrument,
File Type, Software Version, Timestamp, Timezone), a ``DATAH`` line of column names with units, and
one ``DATA`` record per grid slot: Seconds, Nanoseconds (UTC Unix time), Sequence Number, the
analyser's Diagnostic Value, Date, Time (``HH:MM:SS:mmm``, the logger's local clock as in LI-COR's
files, e.g. shared/data/ec/degeb: Date/Time 20:00 for Seconds 19:00 UTC with ``Timezone:
Europe/Berlin``), the first analyser's gas columns, the
sonic's as ``Aux`` channels, then each further analyser's (an LI-7700's as LI-COR names them:
``CH4 Diagnostic Value``, ``CH4 (mmol/m^3)``, ``CH4 Temperature``, ``CH4 Pressure``, ``CH4 Signal
Strength``). Values are written with Python's ``repr`` (shortest text that parses back to the
same float64), missing values as ``-9999`` (EddyPro's error label), in the units the instruments
report (m s-1, degC, mmol m-3, kPa) so that the readers' conversions repeat the live arithmetic.

The ``.metadata`` is EddyPro's INI: [Project], [Site], [Station], [Timing], [Instruments] (the sonic
as ``instr_1``, each gas analyser as ``instr_2``, ``instr_3`` ... with its model and separations) and
[FileDescription] with one ``col_N_*`` group per data field (N counts fields after ``DATA``), each
naming its instrument by EddyPro model (``li7500_1``, ``li7700_1``) as EddyPro does.
Displacement height and roughness length are left empty when the site does not set them (EddyPro
then derives them from the canopy height without a warning; 0 would be a value it warns about).
The sonic's diagnostic is EddyPro's ``anemometer_diagnostic`` (EddyPro screens u, v, w and Ts by it:
0 good for every sonic but the Gill WindMaster/HS, whose status codes 0, 10 and 11 are good), in the
form a logger writes it: :func:`anemometer_diagnostic`. A channel the block lacks (a silent sonic)
is written as missing throughout.
Times: Seconds/Nanoseconds are UTC; the file name, the ``Timestamp`` header and Date/Time are the
local clock of the site's zone (``TowerInfo.time_zone``, UTC by default), which ``Timezone`` names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from firmware_bridge import csat3b
from fluxedge.common.sitetime import local_clock, zone
from station.acquisition.periodblock import GAS_CHANNELS, AnalyserInfo, PeriodBlock, TowerInfo

MISSING = "-9999"
#: fluxedge driver -> (EddyPro manufacturer, EddyPro model without the _1 suffix, wref)
SONIC_MODELS = {"csat3": ("csi", "csat3", "na"), "csat3b": ("csi", "csat3b", "na"),
                "windmaster": ("gill", "wm", "spar")}
#: fluxedge driver -> (EddyPro model, diagnostic variable, LI-COR's model line)
GAS_MODELS = {"li7500": ("li7500", "diag_75", "LI-7500 Open Path CO2/H2O Analyzer"),
              "li7200": ("li7200", "diag_72", "LI-7200 Enclosed CO2/H2O Analyzer"),
              "li7700": ("li7700", "diag_77", "LI-7700 Open Path CH4 Analyzer")}


@dataclass(frozen=True)
class ColumnSpec:
    """One data field: its DATAH name, the block channel it holds, and its EddyPro description."""

    header: str
    channel: str | None  # block channel; None for the time and counter fields
    variable: str  # EddyPro variable, "ignore" or "not_numeric"
    instrument: str
    unit_in: str = ""
    measure_type: str = ""
    integer: bool = False


#: The data fields of an LI-7700 (LI-COR's SmartFlux names); further analysers of other models get
#: their configured name before the LI-7500's field names.
CH4_HEADERS = {"diag_gas": "CH4 Diagnostic Value", "ch4": "CH4 (mmol/m^3)", "t_air": "CH4 Temperature",
               "pressure": "CH4 Pressure", "signal_strength": "CH4 Signal Strength"}
#: The slow met sensor's air temperature, repeated on every row of the period.
MET_TA_HEADER = "Met Air Temperature (C)"
GAS_HEADERS = {"diag_gas": "Diagnostic Value", "co2": "CO2 (mmol/m^3)", "h2o": "H2O (mmol/m^3)",
               "ch4": "CH4 (mmol/m^3)", "t_air": "Temperature (C)", "pressure": "Total Pressure (kPa)",
               "signal_strength": "CO2 Signal Strength"}


def sonic_model(tower: TowerInfo) -> str:
    return f"{SONIC_MODELS.get(tower.sonic_driver, ('other_sonic', 'generic_sonic', 'na'))[1]}_1"


def analyser_models(tower: TowerInfo) -> list[str]:
    """EddyPro model of each gas analyser, numbered per model as EddyPro does (``li7500_1``,
    ``li7700_1``; a second LI-7500 is ``li7500_2``)."""
    seen: dict[str, int] = {}
    models = []
    for info in tower.analysers:
        base = GAS_MODELS.get(info.driver, ("generic_open_path", "ignore", ""))[0]
        seen[base] = seen.get(base, 0) + 1
        models.append(f"{base}_{seen[base]}")
    return models


def gas_model(tower: TowerInfo) -> str | None:
    """The first gas analyser's EddyPro model, or None without one."""
    models = analyser_models(tower)
    return models[0] if models else None


def _analyser_specs(info: AnalyserInfo, model: str, cols: dict[str, np.ndarray], taken: set[str],
                    diag_first: bool) -> list[ColumnSpec]:
    """One analyser's data fields. A gas already given by an earlier analyser is archived as ``ignore``
    (EddyPro takes one column per gas); only the first analyser's pressure is EddyPro's ``air_p``."""
    first = info.index == 0
    names = CH4_HEADERS if info.driver == "li7700" else GAS_HEADERS if first else \
        {k: f"{info.name} {v}" for k, v in GAS_HEADERS.items()}
    diag_var = GAS_MODELS.get(info.driver, ("", "ignore", ""))[1]

    def has(channel: str) -> bool:
        key = info.key(channel)
        return key in cols and bool(np.isfinite(cols[key]).any())

    specs = []
    if info.key("diag_gas") in cols and (diag_first or not first):
        specs.append(ColumnSpec(names["diag_gas"], info.key("diag_gas"), diag_var, model, integer=True))
    for gas in GAS_CHANNELS:
        if has(gas):
            specs.append(ColumnSpec(names[gas], info.key(gas), "ignore" if gas in taken else gas, model, "mmol_m3",
                                    "molar_density"))
            taken.add(gas)
    if info.key("t_air") in cols:
        specs.append(ColumnSpec(names["t_air"], info.key("t_air"), "ignore", model, "celsius"))
    if has("pressure"):
        specs.append(ColumnSpec(names["pressure"], info.key("pressure"), "air_p" if first else "ignore", model,
                                "kpa"))
    if info.key("signal_strength") in cols:
        specs.append(ColumnSpec(names["signal_strength"], info.key("signal_strength"), "ignore", model))
    return specs


def layout(tower: TowerInfo, block: PeriodBlock) -> list[ColumnSpec]:
    """The data fields of this block's file: the first analyser's where LI-COR puts the LI-7500's,
    the sonic's as ``Aux`` channels, then each further analyser's (LI-7700: ``CH4 ...``). Gas and
    pressure columns only where the block has a finite value (an unplugged analyser leaves no column
    behind, as if it were not installed)."""
    son = sonic_model(tower)
    models = analyser_models(tower)
    gas = models[0] if models else son
    cols = block.columns
    analysers = tower.analysers
    taken: set[str] = set()

    specs = [ColumnSpec("Seconds", None, "ignore", gas, integer=True),
             ColumnSpec("Nanoseconds", None, "ignore", gas, integer=True),
             ColumnSpec("Sequence Number", None, "ignore", gas, integer=True)]
    first = analysers[0] if analysers else None
    if first is not None and "diag_gas" in cols:
        diag_var = GAS_MODELS.get(first.driver, ("", "ignore", ""))[1]
        specs.append(ColumnSpec("Diagnostic Value", "diag_gas", diag_var, gas, integer=True))
    elif first is None and "diag_gas" in cols:
        specs.append(ColumnSpec("Diagnostic Value", "diag_gas", "ignore", gas, integer=True))
    specs += [ColumnSpec("Date", None, "not_numeric", gas), ColumnSpec("Time", None, "not_numeric", gas)]
    if first is not None:
        specs += _analyser_specs(first, models[0], cols, taken, diag_first=False)
    specs += [ColumnSpec("Aux 1 - U (m/s)", "u", "u", son, "m_sec"),
              ColumnSpec("Aux 2 - V (m/s)", "v", "v", son, "m_sec"),
              ColumnSpec("Aux 3 - W (m/s)", "w", "w", son, "m_sec"),
              ColumnSpec("Aux 4 - Ts (C)", "t_sonic", "ts", son, "celsius")]
    if "diag_sonic" in cols:
        variable = "anemometer_diagnostic" if tower.sonic_driver in SONIC_MODELS else "ignore"
        specs.append(ColumnSpec("Anemometer Diagnostic", "diag_sonic", variable, son, integer=True))
    for info, model in zip(analysers[1:], models[1:], strict=True):
        specs += _analyser_specs(info, model, cols, taken, diag_first=True)
    if "ta_met" in cols and bool(np.isfinite(cols["ta_met"]).any()):
        # the met sensor's air temperature: EddyPro's ambient Ta (used instead of the sonic's)
        specs.append(ColumnSpec(MET_TA_HEADER, "ta_met", "air_t", gas, "celsius"))
    return specs


def anemometer_diagnostic(driver: str, word: np.ndarray) -> np.ndarray:
    """The sonic's diagnostic word as the archive holds it, so that EddyPro's screen (any nonzero
    ``anemometer_diagnostic`` is bad, Gill status codes 0/10/11 are good) rejects exactly the samples
    the instrument's own ``valid()`` rejects: the CSAT3 word without its counter and range codes
    (the four warning flags, bits 15-12, in place: 0 = good, as Campbell loggers record
    ``diag_csat``), the CSAT3B word's bits that invalidate a sample (supply and humidity warnings are
    housekeeping), a WindMaster's status code as sent. NaN stays missing."""
    w = np.asarray(word, dtype=np.float64)
    ok = np.isfinite(w)
    d = np.where(ok, w, 0.0).astype(np.int64)
    if driver == "csat3":
        d &= 0xF000
    elif driver == "csat3b":
        d &= csat3b.INVALID_MASK
    return np.where(ok, d.astype(np.float64), np.nan)


def column_values(block: PeriodBlock, spec: ColumnSpec, tower: TowerInfo) -> np.ndarray:
    """The values of one data field (not the time and counter fields): the block's channel, NaN
    throughout where the block lacks it; the anemometer diagnostic as :func:`anemometer_diagnostic`."""
    values = block.columns.get(spec.channel or "")
    if values is None:
        return np.full(len(block.time_s), np.nan)
    if spec.channel == "diag_sonic":
        return anemometer_diagnostic(tower.sonic_driver, values)
    return values


def _floats(values: np.ndarray) -> list[str]:
    return [repr(v) if v == v else MISSING for v in values.tolist()]


def _ints(values: np.ndarray) -> list[str]:
    return [str(int(v)) if v == v else MISSING for v in values.tolist()]


def header_lines(tower: TowerInfo, block: PeriodBlock) -> list[str]:
    model = GAS_MODELS.get(tower.gas_driver or "", ("", "", "fluxedge station"))[2]
    return [f"Model:\t{model}", f"SN:\t{tower.gas_name or tower.sonic_name}", f"Instrument:\t{tower.station_id}",
            "File Type:\t2", f"Software Version:\t{tower.software}",
            f"Timestamp:\t{local_clock(block.start_s, tower.time_zone):%H:%M:%S}",
            f"Timezone:\t{tower.time_zone if zone(tower.time_zone) is not None else 'UTC'}"]


def data_text(tower: TowerInfo, block: PeriodBlock, specs: list[ColumnSpec]) -> bytes:
    """The ``.data`` member: header, DATAH and one DATA record per grid slot."""
    ns = np.round(np.asarray(block.time_s, dtype=np.float64) * 1e9).astype(np.int64)
    local = local_clock(block.start_s, tower.time_zone)  # the clock's offset at the period start
    shift_ns = round((local - datetime(1970, 1, 1)).total_seconds() - block.start_s) * 1_000_000_000
    stamps = np.datetime_as_string((ns + shift_ns).astype("datetime64[ns]"), unit="ms")
    fields: list[list[str]] = []
    for spec in specs:
        if spec.header == "Seconds":
            fields.append([str(s) for s in (ns // 1_000_000_000).tolist()])
        elif spec.header == "Nanoseconds":
            fields.append([str(s) for s in (ns % 1_000_000_000).tolist()])
        elif spec.header == "Sequence Number":
            fields.append([str(i) for i in range(1, len(ns) + 1)])
        elif spec.header == "Date":
            fields.append([s[:10] for s in stamps.tolist()])
        elif spec.header == "Time":
            fields.append([s[11:].replace(".", ":") for s in stamps.tolist()])
        else:
            values = column_values(block, spec, tower)
            fields.append(_ints(values) if spec.integer else _floats(values))
    lines = header_lines(tower, block)
    lines.append("\t".join(["DATAH", *(s.header for s in specs)]))
    lines.extend("DATA\t" + "\t".join(row) for row in zip(*fields, strict=True))
    return ("\n".join(lines) + "\n").encode("ascii")


def _num(x: float) -> str:
    return repr(float(x))


def _minutes(seconds: int) -> str:
    """EddyPro reads the file duration in whole minutes where it can."""
    return str(seconds // 60) if seconds % 60 == 0 else _num(seconds / 60.0)


def metadata_text(tower: TowerInfo, block: PeriodBlock, specs: list[ColumnSpec], file_stem: str) -> str:
    """The ``.metadata`` member (EddyPro INI) describing site, instruments and every data field."""
    created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(block.end_s))
    maker, base, wref = SONIC_MODELS.get(tower.sonic_driver, ("other_sonic", "generic_sonic", "na"))
    out = [";GHG_METADATA", "[Project]", f"title={tower.station_id}", f"id={tower.station_id}",
           f"creation_date={created}", f"last_change_date={created}", "start_date=", "end_date=",
           f"file_name={file_stem}.metadata", f"sw_version={tower.software}", "ini_version=3.2.2", "",
           "[Site]", f"site_name={tower.station_id}", f"site_id={tower.station_id}",
           f"altitude={_num(tower.altitude_m)}", f"latitude={_num(tower.latitude_deg)}",
           f"longitude={_num(tower.longitude_deg)}", f"canopy_height={_num(tower.canopy_height_m)}",
           # unset: empty, as EddyPro expects (it derives d = 0.67 h and z0 = 0.15 h; a 0 it warns about)
           f"displacement_height={'' if tower.displacement_m is None else _num(tower.displacement_m)}",
           "roughness_length=", "",
           "[Station]", f"station_name={tower.station_id}", f"station_id={tower.station_id}",
           f"logger_id={tower.station_id}", f"logger_sw_version={tower.software}", "",
           "[Timing]", f"acquisition_frequency={_num(block.rate_hz)}",
           f"file_duration={_minutes(block.end_s - block.start_s)}", "pc_time_settings=utc", "",
           "[Instruments]",
           f"instr_1_manufacturer={maker}", f"instr_1_model={base}_1", f"instr_1_sn={tower.sonic_name}",
           f"instr_1_id={tower.sonic_name}", f"instr_1_height={_num(tower.measurement_height_m)}",
           "instr_1_wformat=uvw", f"instr_1_wref={wref}", f"instr_1_north_offset={_num(tower.north_offset_deg)}",
           "instr_1_northward_separation=0.0", "instr_1_eastward_separation=0.0",
           "instr_1_vertical_separation=0.0"]
    for n, (info, model) in enumerate(zip(tower.analysers, analyser_models(tower), strict=True), 2):
        north, east, vertical = (_num(100.0 * s) for s in info.separation_m)  # EddyPro: cm
        out += ["", f"instr_{n}_manufacturer=licor", f"instr_{n}_model={model}", f"instr_{n}_sn={info.name}",
                f"instr_{n}_id={info.name}", f"instr_{n}_sw_version={tower.software}",
                f"instr_{n}_northward_separation={north}", f"instr_{n}_eastward_separation={east}",
                f"instr_{n}_vertical_separation={vertical}"]
    out += ["", "[FileDescription]", "separator=tab", "flag_discards_if_above=0",
            f"header_rows={len(header_lines(tower, block)) + 1}", "data_label=DATA"]
    for n, spec in enumerate(specs, 1):
        out += ["", f"col_{n}_variable={spec.variable}", f"col_{n}_instrument={spec.instrument}",
                f"col_{n}_measure_type={spec.measure_type}", f"col_{n}_unit_in={spec.unit_in}",
                f"col_{n}_conversion=none", f"col_{n}_min_value=0", f"col_{n}_max_value=0",
                f"col_{n}_unit_out=", f"col_{n}_a_value=0", f"col_{n}_b_value=0",
                # zero lags: "not set", EddyPro's window (open path: +-(2 s m-1 x separation + 0.3 s))
                f"col_{n}_nom_timelag=0", f"col_{n}_min_timelag=0", f"col_{n}_max_timelag=0"]
    return "\n".join(out) + "\n"
