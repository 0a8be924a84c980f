"""From parsed metadata columns to canonical names, units and measure types (shared by all readers)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from station.rawdata._textparse import ParsedColumn, Records, parse_columns
from station.rawdata.errors import RawDataError
from station.rawdata.metadata import Column, Metadata
from station.rawdata.units import GAS_MEASURE_TYPES, GASES, sonic_temperature_from_sos

#: EddyPro variable -> canonical column name (gases and unknown variables keep their own name).
CANONICAL_NAMES = {
    "u": "u", "v": "v", "w": "w", "ts": "ts", "sos": "sos",
    "cell_t": "tc", "int_t_1": "tc_in", "int_t_2": "tc_out", "int_p": "pc",
    "air_t": "ta", "fast_t": "ta_fast", "air_p": "pa", "flowrate": "flow_rate",
    "diag_72": "diag_irga", "diag_75": "diag_irga", "diag_77": "diag_ch4",
    "anemometer_diagnostic": "diag_sonic", "diag_anem": "diag_sonic",
}

#: Which measure type becomes the plain gas name when a file has several, as EddyPro 7's
#: ``DefaultVarsSelection`` picks them by the path type of the gas's analyser: closed and enclosed
#: paths prefer dry mixing ratios (no density corrections), then mole fractions, then densities;
#: open paths prefer molar densities (so the WPL terms of Webb et al. 1980 apply to what was measured).
CLOSED_PATH_PREFERENCE: tuple[str, ...] = ("mixing_ratio", "mole_fraction", "molar_density")
OPEN_PATH_PREFERENCE: tuple[str, ...] = ("molar_density", "mole_fraction", "mixing_ratio")
#: ``None``: EddyPro's choice per gas (:func:`eddypro_gas_preference`).
DEFAULT_GAS_PREFERENCE = None
#: Ambient air temperature and pressure: EddyPro takes the LI-7700's when one is in the file (its
#: thermocouple and barometer sit in the open path), otherwise the last ``air_t``/``air_p`` column.
AMBIENT_VARIABLES = ("air_t", "air_p")

GasPreference = Sequence[str] | Mapping[str, Sequence[str]] | None


def eddypro_gas_preference(metadata: Metadata) -> dict[str, tuple[str, ...]]:
    """Measure-type preference of each gas in the file, by the path type of the analyser its columns
    name (EddyPro 7 ``DefaultVarsSelection``); gases of an unnamed or unknown analyser take the
    closed-path order."""
    out: dict[str, tuple[str, ...]] = {}
    for col in metadata.read_columns:
        if col.variable not in GASES or col.variable in out:
            continue
        ins = metadata.instrument(col.instrument) if col.instrument else None
        out[col.variable] = OPEN_PATH_PREFERENCE if ins is not None and ins.open_path else CLOSED_PATH_PREFERENCE
    return out


def _preference_for(gas: str, gas_preference: GasPreference, metadata: Metadata) -> Sequence[str]:
    if gas_preference is None:
        return eddypro_gas_preference(metadata).get(gas, CLOSED_PATH_PREFERENCE)
    if isinstance(gas_preference, Mapping):
        return gas_preference.get(gas, CLOSED_PATH_PREFERENCE)
    return gas_preference


def _check_preference(gas_preference: GasPreference) -> None:
    if gas_preference is None:
        return
    orders = gas_preference.values() if isinstance(gas_preference, Mapping) else [gas_preference]
    for order in orders:
        for m in order:
            if m not in GAS_MEASURE_TYPES:
                raise ValueError(f"unknown gas measure type {m!r}; one of {', '.join(GAS_MEASURE_TYPES)}")


def ambient_column(metadata: Metadata, variable: str) -> Column | None:
    """The ``air_t`` or ``air_p`` column EddyPro takes as ambient: the LI-7700's, else the last one."""
    return min((c for c in metadata.read_columns if c.variable == variable),
               key=lambda c: _ambient_rank(c, metadata), default=None)


def _ambient_rank(col: Column, metadata: Metadata) -> tuple[int, int]:
    """Sort key of the ``air_t``/``air_p`` candidates: the LI-7700's first, then the last column."""
    ins = metadata.instrument(col.instrument) if col.instrument else None
    return (0 if ins is not None and ins.model_base == "li7700" else 1, -col.index)


def _name(variable: str) -> str:
    return CANONICAL_NAMES.get(variable, re.sub(r"[^a-z0-9_]+", "_", variable.lower()).strip("_") or "unnamed")


def selected(column: Column, variables: Collection[str]) -> bool:
    """Whether ``column`` is among ``variables``: canonical or EddyPro names; a gas name selects all its
    measure types (``co2_mixing_ratio`` just one); ``ts`` also selects ``sos`` (to derive it)."""
    names = {column.variable, _name(column.variable)}
    if column.variable in GASES:
        names.add(f"{column.variable}_{column.measure_type}")
    if column.variable == "sos":
        names.add("ts")
    return not names.isdisjoint(variables)


def _preferred_gas_columns(wanted: list[Column], variables: Collection[str], gas_preference: GasPreference,
                           metadata: Metadata) -> list[Column]:
    """Of a gas asked for by its bare name, only the columns of its preferred measure type present
    (those not parsed at all); a measure type asked for by name (``co2_molar_density``) stays."""
    drop: set[tuple[str, str]] = set()
    for gas in GASES:
        if gas not in variables:
            continue
        present = {c.measure_type or "molar_density" for c in wanted if c.variable == gas}
        chosen = next((m for m in _preference_for(gas, gas_preference, metadata) if m in present), None)
        if chosen is not None:
            drop |= {(gas, m) for m in present if m != chosen and f"{gas}_{m}" not in variables}
    return [c for c in wanted if (c.variable, c.measure_type or "molar_density") not in drop]


class ColumnPlan(NamedTuple):
    """Which record fields :func:`assemble` parses: the metadata's ``wanted`` columns, then ``extra``."""

    wanted: list[Column]
    ambient: dict[str, Column | None]
    fields: list[int]
    extra: dict[str, tuple[int, str]]


def plan_columns(metadata: Metadata, *, nfields: int, field_offset: int, source: str, first_line: int | None,
                 gas_preference: GasPreference = DEFAULT_GAS_PREFERENCE,
                 extra: dict[str, tuple[int, str]] | None = None,
                 variables: Collection[str] | None = None) -> ColumnPlan:
    """The fields to parse from records of ``nfields`` fields (see :func:`assemble`); ``first_line`` (of the
    first record) goes into the error raised when the metadata describes more columns than there are."""
    _check_preference(gas_preference)
    wanted: list[Column] = [c for c in metadata.read_columns if variables is None or selected(c, variables)]
    if variables is not None:
        wanted = _preferred_gas_columns(wanted, variables, gas_preference, metadata)
    # the ambient T and p column EddyPro uses takes the plain name, whatever its place in the file
    ambient = {v: min((c for c in wanted if c.variable == v), key=lambda c: _ambient_rank(c, metadata), default=None)
               for v in AMBIENT_VARIABLES}
    last = max((c.index for c in wanted), default=0) - 1 + field_offset
    if wanted and last >= nfields:
        col = max(wanted, key=lambda c: c.index)
        raise RawDataError(source, f"metadata {metadata.source} describes column {col.index} ({col.variable}) but "
                           f"records have only {nfields - field_offset} data fields", line=first_line)
    extra = extra or {}
    fields = [c.index - 1 + field_offset for c in wanted] + [j for j, _ in extra.values()]
    return ColumnPlan(wanted, ambient, fields, extra)


def assemble(records: Records, metadata: Metadata, *, field_offset: int, source: str,
             gas_preference: GasPreference = DEFAULT_GAS_PREFERENCE,
             extra: dict[str, tuple[int, str]] | None = None, variables: Collection[str] | None = None,
             ) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str], list[str]]:
    """Parse the metadata's columns from ``records`` and convert them.

    ``field_offset`` is the record field holding metadata column 1 (1 when a data label comes first).
    ``extra`` adds columns the metadata skips: canonical name -> (field index, unit) -- raw values.
    ``variables`` limits the columns read (see :func:`selected`). Returns columns, units, gas measure
    types and notes.
    """
    plan = plan_columns(metadata, nfields=records.nfields, field_offset=field_offset, source=source,
                        first_line=int(records.line[0]) if len(records) else None, gas_preference=gas_preference,
                        extra=extra, variables=variables)
    parsed = parse_columns(records, plan.fields)
    return convert(parsed, plan, metadata, source=source, gas_preference=gas_preference, notes=list(records.notes))


def convert(parsed: Sequence[ParsedColumn], plan: ColumnPlan, metadata: Metadata, *, source: str,
            gas_preference: GasPreference = DEFAULT_GAS_PREFERENCE, notes: list[str] | None = None,
            ) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str], list[str]]:
    """The parsed fields of ``plan`` (in its order) as canonical columns, their units, gas measure types
    and notes (after ``notes``); the second half of :func:`assemble`."""
    wanted, ambient, extra = plan.wanted, plan.ambient, plan.extra
    columns: dict[str, np.ndarray] = {}
    units: dict[str, str] = {}
    gas_types: dict[str, str] = {}
    notes = list(notes or ())
    variants: dict[str, dict[str, str]] = {}  # gas -> measure type -> column name
    for col, result in zip(wanted, parsed, strict=False):
        values = result.values
        if result.unparsable:
            line, token = result.first_bad or (0, "")
            finite = np.count_nonzero(np.isfinite(values))
            if finite == 0:
                raise RawDataError(source, f"no value of column {col.index} ({col.variable}) is a number, e.g. "
                                   f"{token!r}; is the metadata's column layout right?", line=line,
                                   column=f"{col.index} ({col.variable})")
            notes.append(f"column {col.index} ({col.variable}): {result.unparsable} values are not numbers "
                         f"(first on line {line}: {token!r}), read as NaN")
        if col.conversion != "none":
            values = col.linear(values)
        conv = col.to_canonical
        unit = col.unit
        if conv is not None:
            conv.apply(values)
            unit = conv.unit or unit
        if col.variable in GASES:
            measure = col.measure_type or "molar_density"
            name = f"{col.variable}_{measure}"
            variants.setdefault(col.variable, {})
        else:
            name = _name(col.variable)
        if col.variable in AMBIENT_VARIABLES and ambient[col.variable] is not col:
            chosen = ambient[col.variable]
            notes.append(f"column {col.index} ({col.variable}) kept as {name}_col{col.index}: the ambient "
                         f"{col.variable} is column {chosen.index} ({chosen.instrument or 'no instrument'})")
            name = f"{name}_col{col.index}"
        if name in columns:
            dup = f"{name}_col{col.index}"
            notes.append(f"column {col.index} ({col.variable}) duplicates {name!r}: kept as {dup!r}")
            name = dup
        elif col.variable in GASES:
            variants[col.variable][col.measure_type or "molar_density"] = name
        columns[name] = values
        units[name] = unit
    for (name, (_j, unit)), result in zip(extra.items(), parsed[len(wanted):], strict=True):
        if name not in columns:
            columns[name] = result.values
            units[name] = unit
    for gas, by_type in variants.items():
        for measure in _preference_for(gas, gas_preference, metadata):
            if measure in by_type:
                columns[gas] = columns[by_type[measure]]
                units[gas] = units[by_type[measure]]
                gas_types[gas] = measure
                break
        else:
            notes.append(f"{gas}: only {', '.join(sorted(by_type))} present, none of "
                         f"{', '.join(_preference_for(gas, gas_preference, metadata))}")
    if "ts" not in columns and "sos" in columns:
        columns["ts"] = sonic_temperature_from_sos(columns["sos"])
        units["ts"] = "K"
        notes.append("ts derived from the speed of sound: sos**2 / 403")
    sonic = metadata.sonic
    if sonic is not None and sonic.wformat not in (None, "uvw"):
        notes.append(f"anemometer {sonic.model} gives wind as {sonic.wformat!r}: u and v are as written, "
                     "not converted to components")
    return columns, units, gas_types, notes
