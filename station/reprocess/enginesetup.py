"""From a raw file's EddyPro metadata to the flux engine's :class:`~station.flux.pipeline.Setup`.

The choices are EddyPro 7.0.9's, so that anyone's ``.ghg`` or TOA5 files process as EddyPro does:

- instruments by model from :mod:`station.flux.instruments` (path lengths and time constants of
  the table, not the metadata's, except for generic models; open or closed path by model);
- separations relative to the master anemometer (EddyPro ``DefineRelativeSeparations``);
- time-lag windows where the metadata sets none (EddyPro ``SetTimelags``): open path
  +-(2 s m-1 x sqrt(horizontal^2 + vertical^2) separation + 0.3 s); closed path nominal lag =
  (tube volume + cell volume) / flow, window max(0, nominal - 2 s) .. nominal (1 + 2, or 10 for
  H2O) + 0.3 s (:func:`station.flux.timelag.eddypro_lag_window`);
- the sonic's frame (Gill axis +30 deg, R2, USA-1) and its wind-direction offset (CSAT3 -180 deg);
- the diagnostic words that screen records (EddyPro ``FilterDatasetForDiagnostics``).

Every problem with the metadata is a :class:`SetupError` naming the file and what is wrong.
"""

from __future__ import annotations

import math

from station.flux import instruments, spectral, timelag
from station.flux.pipeline import GasSetup, Setup
from station.flux.screening import DiagnosticScreen, analyser_rule, sonic_rule
from station.rawdata import RawPeriod, ambient_column
from station.rawdata.metadata import Column, Instrument, Metadata

GASES = ("co2", "h2o", "ch4")
#: the diagnostic words that screen records (canonical names of :mod:`station.rawdata`)
DIAGNOSTICS = ("diag_sonic", "diag_irga", "diag_ch4")
#: the raw columns the flux engine uses (sos is read too where it stands for ts): only these are parsed
ENGINE_VARIABLES = ("u", "v", "w", "ts", "pa", "ta", *GASES, *DIAGNOSTICS)
#: canonical diagnostic column -> EddyPro variables that feed it
_DIAG_VARIABLES = {"diag_irga": ("diag_72", "diag_75"), "diag_ch4": ("diag_77",),
                   "diag_sonic": ("anemometer_diagnostic", "diag_anem")}


class SetupError(ValueError):
    """Metadata the engine cannot be set up from (an unknown model, a generic model without its geometry...)."""


def _spec_error(md: Metadata, ins: Instrument, problem: str) -> SetupError:
    return SetupError(f"{md.source}: [Instruments] instr_{ins.index}_*: {ins.model}: {problem}")


def _table_row(md: Metadata, ins: Instrument, lookup):
    try:
        return lookup(ins.model)
    except instruments.UnknownModelError as exc:
        raise _spec_error(md, ins, str(exc)) from None


def _geometry(md: Metadata, ins: Instrument, spec) -> tuple[float, float]:
    """(vertical path [m], time constant [s]): the table's, or the metadata's for generic models."""
    if not spec.from_metadata:
        return spec.vpath_m or 0.0, spec.tau_s or 0.0
    if not (ins.vpath_length_m and ins.tau_s is not None):
        raise _spec_error(md, ins, "a generic model needs instr_N_vpath_length and instr_N_tau")
    return ins.vpath_length_m, ins.tau_s


def master_sonic(md: Metadata) -> Instrument | None:
    """EddyPro's master anemometer: the first one that the wind columns name, else the first described."""
    named = {c.instrument for c in md.read_columns if c.variable in ("u", "v", "w")}
    # an IRGASON is an analyser and a sonic in one: its wind columns make it the master sonic
    return next((i for i in md.instruments if i.model in named and
                 (i.kind == "sonic" or i.model_base in instruments.SONIC_MODELS)), md.sonic)


def _sonic(md: Metadata, sonic: Instrument | None) -> tuple[spectral.Sonic, instruments.SonicModel | None]:
    if sonic is None:
        return spectral.Sonic(), None
    spec = _table_row(md, sonic, instruments.sonic_model)
    path, tau = _geometry(md, sonic, spec)
    return spectral.Sonic(path, tau), spec


def _relative(ins: Instrument, sonic: Instrument | None) -> tuple[float, float]:
    """(horizontal, vertical) separation [m] from the master sonic (EddyPro ``DefineRelativeSeparations``)."""
    north = ins.northward_separation_m - (sonic.northward_separation_m if sonic else 0.0)
    east = ins.eastward_separation_m - (sonic.eastward_separation_m if sonic else 0.0)
    vertical = ins.vertical_separation_m - (sonic.vertical_separation_m if sonic else 0.0)
    return math.hypot(north, east), vertical


def _analyser(md: Metadata, ins: Instrument | None, sonic: Instrument | None
              ) -> tuple[spectral.GasAnalyser, instruments.AnalyserModel | None]:
    if ins is None:
        return spectral.GasAnalyser(), None
    spec = _table_row(md, ins, instruments.analyser_model)
    path, tau = _geometry(md, ins, spec)
    horizontal, vertical = _relative(ins, sonic)
    tube = {}
    if spec.closed_path:  # EddyPro reads the tube only for closed paths, and requires it there
        length, diameter, flow = ins.tube_length_m or 0.0, ins.tube_diameter_m or 0.0, ins.flow_rate_l_min or 0.0
        if min(length, diameter, flow) <= 0.0:
            raise _spec_error(md, ins, "a closed-path analyser needs a positive instr_N_tube_length, "
                                       f"tube_diameter and tube_flowrate (got {length * 100:g} cm, "
                                       f"{diameter * 1000:g} mm, {flow:g} l min-1)")
        tube = {"tube_length_m": length, "tube_diameter_m": diameter, "tube_flow_m3_s": flow / 60000.0}
    return spectral.GasAnalyser(path, tau, horizontal_separation_m=horizontal, vertical_separation_m=vertical,
                                **tube), spec


def nominal_lag_s(analyser: spectral.GasAnalyser, spec: instruments.AnalyserModel, ins: Instrument) -> float:
    """EddyPro's nominal lag of a closed path [s]: (tube volume + cell volume) / flow (``SetTimelags``)."""
    if not analyser.closed_path or analyser.tube_flow_m3_s <= 0.0:
        return 0.0
    tube = math.pi * (analyser.tube_diameter_m / 2.0) ** 2 * analyser.tube_length_m
    cell = spec.cell_volume(ins.hpath_length_m, ins.vpath_length_m) if spec.from_metadata else spec.cell_volume()
    return (tube + cell) / analyser.tube_flow_m3_s


def _gas_column(md: Metadata, raw: RawPeriod, gas: str) -> Column | None:
    cols = [c for c in md.read_columns if c.variable == gas]
    return next((c for c in cols if (c.measure_type or "molar_density") == raw.gas_types.get(gas)), None) \
        or (cols[0] if cols else None)


def _gas_instrument(md: Metadata, col: Column | None) -> Instrument | None:
    """The analyser a gas column names (by EddyPro model, or by id in some files); else the first analyser."""
    if col is not None:
        ins = md.instrument(col.instrument)
        if ins is not None and ins.kind == "irga":
            return ins
        ins = next((i for i in md.instruments if i.id and i.id == col.instrument and i.kind == "irga"), None)
        if ins is not None:
            return ins
    return next((i for i in md.instruments if i.kind == "irga"), None)


def _lag_window(col: Column | None, analyser: spectral.GasAnalyser, spec, ins) -> tuple[float, float, float]:
    nominal, lo, hi = (col.nom_timelag_s, col.min_timelag_s, col.max_timelag_s) if col else (0.0, 0.0, 0.0)
    if analyser.closed_path:
        if nominal == 0.0 and spec is not None:
            nominal = nominal_lag_s(analyser, spec, ins)
        return nominal, lo, hi  # the closed-path window follows in timelag.eddypro_lag_window
    reach = timelag.open_path_reach_s(math.hypot(analyser.horizontal_separation_m, analyser.vertical_separation_m))
    return nominal, (lo if lo != 0.0 else -reach), (hi if hi != 0.0 else reach)


def _diag_screens(md: Metadata, raw: RawPeriod, gases: dict[str, Instrument | None],
                  sonic: Instrument | None) -> tuple[DiagnosticScreen, ...]:
    """Which diagnostic word blanks which columns (EddyPro ``FilterDatasetForDiagnostics``): an
    analyser's word its gases, and the ambient T and p when they are its own; the sonic's u, v, w, ts."""
    screens = []
    for name, variables in _DIAG_VARIABLES.items():
        if name not in raw.columns:
            continue
        col = next((c for c in md.read_columns if c.variable in variables), None)
        ins = md.instrument(col.instrument) if col is not None and col.instrument else None
        if name == "diag_sonic":
            ins = ins or sonic
            rule = sonic_rule(ins.model) if ins is not None else None
            if rule is not None:
                screens.append(DiagnosticScreen(name, rule, ("u", "v", "w", "ts")))
            continue
        if ins is None:
            continue
        rule = analyser_rule(ins.model)
        if rule is None:
            continue
        targets = [g for g, owner in gases.items() if owner is not None and owner.model == ins.model]
        for variable, canonical in (("air_t", "ta"), ("air_p", "pa")):
            amb = ambient_column(md, variable)
            if amb is not None and amb.instrument == ins.model:
                targets.append(canonical)
        if targets:
            screens.append(DiagnosticScreen(name, rule, tuple(targets)))
    return tuple(screens)


def setup_for(raw: RawPeriod, period_s: float, period_mid_unix_s: float | None = None) -> Setup:
    """The engine's view of the site and instruments, from the file's metadata (EddyPro's choices)."""
    md = raw.metadata
    sonic = master_sonic(md)
    sonic_geometry, sonic_spec = _sonic(md, sonic)
    gases = []
    owners: dict[str, Instrument | None] = {}
    for gas in GASES:
        if gas not in raw.columns:
            continue
        col = _gas_column(md, raw, gas)
        ins = _gas_instrument(md, col)
        owners[gas] = ins
        analyser, spec = _analyser(md, ins, sonic)
        lags = _lag_window(col, analyser, spec, ins)
        gases.append(GasSetup(gas, raw.gas_types.get(gas, "molar_density"), analyser, lags,
                              self_heating=bool(spec and spec.li7500_family),
                              li7700=bool(spec and spec.model == "li7700")))
    site = md.site
    north = (sonic.north_offset_deg or 0.0) if sonic else 0.0
    frame = {}
    if sonic_spec is not None:
        wref = (sonic.wref or "spar").lower()
        wformat = (sonic.wformat or "uvw").lower()
        frame = {"wind_format": wformat if wformat in ("polar_w", "axis") else "uvw",
                 "sonic_rotation_deg": 30.0 if sonic_spec.r2 or (sonic_spec.gill_axis and (
                     wref == "axis" or wformat == "axis")) else 0.0,
                 "sonic_flip_u": sonic_spec.r2, "sonic_flip_v": sonic_spec.flip_v}
        north += sonic_spec.direction_offset_deg
    return Setup(rate_hz=raw.rate_hz, period_s=period_s,
                 measurement_height_m=(sonic.height_m if sonic and sonic.height_m else 2.0),
                 canopy_height_m=site.canopy_height_m or 0.0, displacement_m=site.displacement_height_m or None,
                 roughness_m=site.roughness_length_m or None, latitude_deg=site.latitude_deg,
                 longitude_deg=site.longitude_deg, period_mid_unix_s=period_mid_unix_s, altitude_m=site.altitude_m,
                 north_offset_deg=north, sonic=sonic_geometry, gases=tuple(gases),
                 diagnostics=_diag_screens(md, raw, owners, sonic), **frame)
