"""Canonical units of raw eddy-covariance data and the conversions into them.

Every array a reader returns is in one of these units, whatever the logger wrote:

==================  ===============  ====================================================================
quantity            canonical unit   columns
==================  ===============  ====================================================================
wind, sound speed   m s-1            ``u``, ``v``, ``w``, ``sos``
temperature         K                ``ts`` (sonic), ``tc`` (cell), ``tc_in``/``tc_out``, ``ta``, ``ta_fast``
pressure            Pa               ``pc`` (cell), ``pa`` (ambient) -- Pa, as EddyPro reports them
molar density       mmol m-3         gases with measure type ``molar_density`` (CO2, H2O, CH4, ...)
mole fraction,      umol mol-1       CO2, CH4, N2O and the other trace gases
dry mixing ratio    mmol mol-1       H2O
flow rate           l min-1          ``flow_rate``
voltage             V                any column given in V or mV
==================  ===============  ====================================================================

Pressure is in Pa (not kPa) because that is what EddyPro's statistics files report, so raw statistics
compare without a factor. Mass densities (g m-3, mg m-3, ug m-3) become molar densities with the molar
masses in :data:`MOLAR_MASS_G_MOL` (CO2 44.0095, H2O 18.01528, CH4 16.04246 g mol-1). EddyPro itself
uses rounded values (44.01 and 18.02); its statistics of a converted density therefore differ from
ours by the ratio of the molar masses (2.6e-4 for H2O), see :data:`EDDYPRO_MOLAR_MASS_G_MOL`.

The measure type of a gas column (``molar_density``, ``mole_fraction`` = per mole of moist air,
``mixing_ratio`` = per mole of dry air) is never converted: it is kept next to the values
(``RawPeriod.gas_types``), because turning one into another needs temperature, pressure and H2O.

Unit codes are EddyPro's (``m_sec``, ``celsius``, ``kpa``, ``mg_m3``, ``ppm`` ...) plus a few obvious
aliases. ``ppt`` is parts per thousand (mmol mol-1), as in EddyPro, never parts per trillion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Molar masses used to turn mass densities into molar densities [g mol-1].
MOLAR_MASS_G_MOL: dict[str, float] = {
    "co2": 44.0095,
    "h2o": 18.01528,
    "ch4": 16.04246,
    "n2o": 44.0128,
    "co": 28.0101,
    "so2": 64.0638,
    "o3": 47.9982,
    "nh3": 17.03052,
    "no": 30.0061,
    "no2": 46.0055,
}

#: The molar masses EddyPro 7 uses for the same conversion (m_common_global_var: MW(co2) = 44.01,
#: MW(h2o) = 18.02 ...). Only needed to compare with EddyPro output; the readers never use them.
EDDYPRO_MOLAR_MASS_G_MOL: dict[str, float] = {"co2": 44.01, "h2o": 18.02, "ch4": 16.04, "n2o": 44.02}

#: Sonic temperature from speed of sound, Ts = sos**2 / 403 [K] (EddyPro's constant, about gamma*R of
#: moist air); applied when a file gives the speed of sound but no sonic temperature.
SOS2_PER_K = 403.0

#: Gases EddyPro knows; each may come as any of the three measure types.
GASES = ("co2", "h2o", "ch4", "n2o", "co", "so2", "o3", "nh3", "no", "no2")
GAS_MEASURE_TYPES = ("molar_density", "mole_fraction", "mixing_ratio")


class UnitError(ValueError):
    """A unit code that is unknown or does not fit the variable (the metadata reader adds file and key)."""


@dataclass(frozen=True)
class Unit:
    """A unit code: ``canonical = value * scale + offset`` within its dimension."""

    code: str
    dimension: str
    scale: float
    offset: float = 0.0


def _u(dimension: str, scale: float, offset: float = 0.0, *codes: str) -> dict[str, Unit]:
    return {c: Unit(c, dimension, scale, offset) for c in codes}


# dimension -> canonical unit of that dimension (what ``scale``/``offset`` lead to)
_DIMENSION_UNIT = {
    "speed": "m s-1",
    "temperature": "K",
    "pressure": "Pa",
    "molar_density": "mmol m-3",
    "mass_density": "g m-3",  # intermediate: divided by the molar mass afterwards
    "mole_ratio": "mol mol-1",  # intermediate: scaled to umol or mmol per mol afterwards
    "flow": "l min-1",
    "voltage": "V",
    "dimensionless": "",
    "angle": "deg",
}

UNITS: dict[str, Unit] = {
    **_u("speed", 1.0, 0.0, "m_sec", "m/s", "m_s"),
    **_u("speed", 0.01, 0.0, "cm_sec", "cm/s", "cm_s"),
    **_u("speed", 0.001, 0.0, "mm_sec", "mm/s", "mm_s"),
    **_u("temperature", 1.0, 0.0, "kelvin", "k"),
    **_u("temperature", 0.01, 0.0, "ckelvin"),
    **_u("temperature", 1.0, 273.15, "celsius", "c", "degc", "deg_c"),
    **_u("temperature", 0.01, 273.15, "ccelsius"),
    **_u("pressure", 1.0, 0.0, "pa"),
    **_u("pressure", 100.0, 0.0, "hpa", "mbar"),
    **_u("pressure", 1000.0, 0.0, "kpa"),
    **_u("molar_density", 1000.0, 0.0, "mol_m3"),
    **_u("molar_density", 1.0, 0.0, "mmol_m3"),
    **_u("molar_density", 0.001, 0.0, "umol_m3"),
    **_u("mass_density", 1.0, 0.0, "g_m3"),
    **_u("mass_density", 0.001, 0.0, "mg_m3"),
    **_u("mass_density", 1e-6, 0.0, "ug_m3"),
    **_u("mole_ratio", 1e-3, 0.0, "ppt", "mmol_mol"),
    **_u("mole_ratio", 1e-6, 0.0, "ppm", "umol_mol"),
    **_u("mole_ratio", 1e-9, 0.0, "ppb", "nmol_mol"),
    **_u("flow", 1.0, 0.0, "lit_m", "l_min", "lpm"),
    **_u("flow", 60000.0, 0.0, "m3_s"),
    **_u("flow", 0.06, 0.0, "cm3_s"),
    **_u("flow", 0.0283168466 * 60000.0, 0.0, "ft3_s"),
    **_u("flow", 1.6387064e-5 * 60000.0, 0.0, "in3_s"),
    **_u("voltage", 1.0, 0.0, "volt", "v"),
    **_u("voltage", 0.001, 0.0, "mvolt", "mv"),
    **_u("dimensionless", 1.0, 0.0, "dimensionless", "none", "other", "", "percent", "%"),
    **_u("angle", 1.0, 0.0, "degrees", "deg"),
}

#: EddyPro variable -> the dimension its unit must have ("gas" for gas columns).
VARIABLE_DIMENSION: dict[str, str] = {
    "u": "speed", "v": "speed", "w": "speed", "sos": "speed",
    "ts": "temperature", "cell_t": "temperature", "int_t_1": "temperature", "int_t_2": "temperature",
    "air_t": "temperature", "fast_t": "temperature",
    "int_p": "pressure", "air_p": "pressure",
    "flowrate": "flow",
    **{g: "gas" for g in GASES},
}


def lookup_unit(code: str) -> Unit | None:
    """The :class:`Unit` of an EddyPro unit code (case-insensitive), or None if unknown."""
    return UNITS.get(code.strip().lower())


def gas_unit(gas: str, measure_type: str) -> str:
    """Canonical unit of a gas column of ``measure_type``."""
    if measure_type == "molar_density":
        return "mmol m-3"
    return "mmol mol-1" if gas == "h2o" else "umol mol-1"


@dataclass(frozen=True)
class Conversion:
    """``canonical = raw * scale + offset`` for one column, and the unit that results."""

    scale: float
    offset: float
    unit: str

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Convert in place (float64 arrays) and return ``values``."""
        if self.scale != 1.0:
            values *= self.scale
        if self.offset != 0.0:
            values += self.offset
        return values


IDENTITY = Conversion(1.0, 0.0, "")


def conversion_for(variable: str, unit_code: str, measure_type: str | None = None) -> Conversion:
    """How to bring a column of EddyPro ``variable`` given in ``unit_code`` to canonical units.

    Raises :class:`UnitError` for an unknown unit, a unit of the wrong dimension (wind in kPa), a gas
    without a valid measure type, or a measure type that does not fit the unit (molar density in ppm).
    Other variables (diagnostics, signal strengths ...) are converted within the dimension of their
    unit (mV to V, Celsius to K); in an unknown unit they are kept as written.
    """
    unit = lookup_unit(unit_code)
    wanted = VARIABLE_DIMENSION.get(variable)
    if unit is None and wanted is None:
        return Conversion(1.0, 0.0, unit_code)  # an auxiliary variable in a unit of its own: kept as written
    if unit is None:
        known = ", ".join(sorted(c for c in UNITS if c and "/" not in c))
        raise UnitError(f"unknown unit {unit_code!r} for {variable!r}; known unit codes: {known}")
    if wanted is None:
        if unit.dimension in ("mass_density", "mole_ratio"):
            return Conversion(1.0, 0.0, unit_code)  # no gas to refer to: keep as written
        return Conversion(unit.scale, unit.offset, _DIMENSION_UNIT[unit.dimension])
    if wanted != "gas":
        if unit.dimension != wanted:
            raise UnitError(f"{variable!r} needs a {wanted} unit, got {unit_code!r} ({unit.dimension})")
        return Conversion(unit.scale, unit.offset, _DIMENSION_UNIT[wanted])
    if measure_type not in GAS_MEASURE_TYPES:
        raise UnitError(f"gas {variable!r} needs a measure type, one of {', '.join(GAS_MEASURE_TYPES)}; "
                        f"got {measure_type!r}")
    if measure_type == "molar_density":
        if unit.dimension == "molar_density":
            return Conversion(unit.scale, 0.0, "mmol m-3")
        if unit.dimension == "mass_density":
            # g m-3 / (g mol-1) = mol m-3; * 1000 -> mmol m-3
            return Conversion(unit.scale * 1000.0 / MOLAR_MASS_G_MOL[variable], 0.0, "mmol m-3")
        raise UnitError(f"{variable!r} is a molar density but its unit {unit_code!r} is a {unit.dimension}")
    if unit.dimension != "mole_ratio":
        raise UnitError(f"{variable!r} is a {measure_type} but its unit {unit_code!r} is a {unit.dimension}")
    per_mol = 1e3 if variable == "h2o" else 1e6
    scale = float(f"{unit.scale * per_mol:.12g}")  # powers of ten: 1e-9 * 1e3 must be exactly 1e-6
    return Conversion(scale, 0.0, gas_unit(variable, measure_type))


def sonic_temperature_from_sos(sos_m_s: np.ndarray) -> np.ndarray:
    """Sonic temperature [K] from speed of sound [m s-1]: ``sos**2 / 403`` (EddyPro's relation)."""
    return sos_m_s * sos_m_s / SOS2_PER_K
