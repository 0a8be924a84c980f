"""From parsed metadata columns to canonical names, units and measure types (shared by all readers)."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

import numpy as np

from station.rawdata._textparse import Records, parse_columns
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

#: Which measure type becomes the plain gas name when a file has several (EddyPro's preference for
#: closed-path analysers: dry mixing ratios need no density corrections).
DEFAULT_GAS_PREFERENCE: tuple[str, ...] = ("mixing_ratio", "mole_fraction", "molar_density")


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


def _preferred_gas_columns(wanted: list[Column], variables: Collection[str],
                           gas_preference: Sequence[str]) -> list[Column]:
    """Of a gas asked for by its bare name, only the columns of its preferred measure type present
    (those not parsed at all); a measure type asked for by name (``co2_molar_density``) stays."""
    drop: set[tuple[str, str]] = set()
    for gas in GASES:
        if gas not in variables:
            continue
        present = {c.measure_type or "molar_density" for c in wanted if c.variable == gas}
        chosen = next((m for m in gas_preference if m in present), None)
        if chosen is not None:
            drop |= {(gas, m) for m in present if m != chosen and f"{gas}_{m}" not in variables}
    return [c for c in wanted if (c.variable, c.measure_type or "molar_density") not in drop]


def assemble(records: Records, metadata: Metadata, *, field_offset: int, source: str,
             gas_preference: Sequence[str] = DEFAULT_GAS_PREFERENCE,
             extra: dict[str, tuple[int, str]] | None = None, variables: Collection[str] | None = None,
             ) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str], list[str]]:
    """Parse the metadata's columns from ``records`` and convert them.

    ``field_offset`` is the record field holding metadata column 1 (1 when a data label comes first).
    ``extra`` adds columns the metadata skips: canonical name -> (field index, unit) -- raw values.
    ``variables`` limits the columns read (see :func:`selected`). Returns columns, units, gas measure
    types and notes.
    """
    for m in gas_preference:
        if m not in GAS_MEASURE_TYPES:
            raise ValueError(f"unknown gas measure type {m!r}; one of {', '.join(GAS_MEASURE_TYPES)}")
    wanted: list[Column] = [c for c in metadata.read_columns if variables is None or selected(c, variables)]
    if variables is not None:
        wanted = _preferred_gas_columns(wanted, variables, gas_preference)
    last = max((c.index for c in wanted), default=0) - 1 + field_offset
    if wanted and last >= records.nfields:
        col = max(wanted, key=lambda c: c.index)
        raise RawDataError(source, f"metadata {metadata.source} describes column {col.index} ({col.variable}) but "
                           f"records have only {records.nfields - field_offset} data fields",
                           line=int(records.line[0]) if len(records) else None)
    extra = extra or {}
    fields = [c.index - 1 + field_offset for c in wanted] + [j for j, _ in extra.values()]
    parsed = parse_columns(records, fields)
    columns: dict[str, np.ndarray] = {}
    units: dict[str, str] = {}
    gas_types: dict[str, str] = {}
    notes: list[str] = list(records.notes)
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
        for measure in gas_preference:
            if measure in by_type:
                columns[gas] = columns[by_type[measure]]
                units[gas] = units[by_type[measure]]
                gas_types[gas] = measure
                break
        else:
            notes.append(f"{gas}: only {', '.join(sorted(by_type))} present, none of {', '.join(gas_preference)}")
    if "ts" not in columns and "sos" in columns:
        columns["ts"] = sonic_temperature_from_sos(columns["sos"])
        units["ts"] = "K"
        notes.append("ts derived from the speed of sound: sos**2 / 403")
    sonic = metadata.sonic
    if sonic is not None and sonic.wformat not in (None, "uvw"):
        notes.append(f"anemometer {sonic.model} gives wind as {sonic.wformat!r}: u and v are as written, "
                     "not converted to components")
    return columns, units, gas_types, notes
