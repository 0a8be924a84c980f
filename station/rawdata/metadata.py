"""EddyPro ``.metadata`` files: the site, the instruments and the layout of the raw data files.

The format is INI (``[Section]`` then ``key=value``; ``;`` starts a comment). EddyPro writes lengths
of the instrument geometry in the units of its GUI; here they become SI with the unit in the name:

- ``instr_N_height`` [m], ``instr_N_north_offset`` [deg]
- ``instr_N_northward/eastward/vertical_separation`` [cm] -> ``*_separation_m``
- ``instr_N_hpath_length`` / ``vpath_length`` [cm] -> ``hpath_length_m`` / ``vpath_length_m``
- ``instr_N_tube_length`` [cm] -> ``tube_length_m``; ``tube_diameter`` [mm] -> ``tube_diameter_m``
- ``instr_N_tube_flowrate`` [l min-1] -> ``flow_rate_l_min``; ``instr_N_tau`` [s] -> ``tau_s``

Each ``col_N_*`` group of ``[FileDescription]`` becomes a :class:`Column` (N counts data fields,
without the data-label field of files that have one). Columns whose variable has a physical
dimension (wind, temperatures, pressures, gases, flow) have their unit and measure type checked here,
so a bad unit is reported against its key before any data are read.

Every problem raises :class:`~station.rawdata.errors.RawDataError` naming the file, section and key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from station.flux import instruments
from station.rawdata.errors import RawDataError
from station.rawdata.units import GAS_MEASURE_TYPES, GASES, VARIABLE_DIMENSION, Conversion, UnitError, conversion_for

#: ``separator=`` words EddyPro writes, and the character each stands for.
SEPARATORS = {"comma": ",", "tab": "\t", "semicolon": ";", "space": " "}

#: Variables that mark a column as not to be read.
SKIPPED_VARIABLES = frozenset({"ignore", "not_numeric", ""})

#: EddyPro's instrument models (without the ``_N`` suffix) by kind: the instrument table's.
SONIC_MODELS = frozenset(instruments.SONIC_MODELS)
IRGA_MODELS = frozenset(instruments.ANALYSER_MODELS)
CONVERSIONS = ("none", "gain_offset", "zero_fullscale")

_COL_KEY = re.compile(r"^col_(\d+)_(.+)$")
_INSTR_KEY = re.compile(r"^instr_(\d+)_(.+)$")


@dataclass(frozen=True)
class Site:
    name: str
    id: str
    altitude_m: float
    latitude_deg: float
    longitude_deg: float
    #: None when absent; EddyPro writes 0 for "not set" and then derives d and z0 from the canopy height
    canopy_height_m: float | None
    displacement_height_m: float | None
    roughness_length_m: float | None


@dataclass(frozen=True)
class Station:
    name: str
    id: str
    logger_id: str
    logger_sw_version: str


@dataclass(frozen=True)
class Instrument:
    """One ``instr_N_*`` group. Lengths in m whatever EddyPro's file used (see the module doc)."""

    index: int
    manufacturer: str
    #: as written, with EddyPro's ``_N`` suffix (``hs_50_1``); columns refer to instruments by it
    model: str
    kind: str  # "sonic" | "irga" | "other"
    serial: str
    sw_version: str
    id: str
    height_m: float | None
    #: wind format (``uvw``, ``polar_w``, ``axis``) and north reference (``spar``, ``axis``, ``na``)
    wformat: str | None
    wref: str | None
    north_offset_deg: float | None
    northward_separation_m: float
    eastward_separation_m: float
    vertical_separation_m: float
    tube_length_m: float | None
    tube_diameter_m: float | None
    flow_rate_l_min: float | None
    hpath_length_m: float | None
    vpath_length_m: float | None
    tau_s: float | None
    kw: float | None
    ko: float | None

    @property
    def model_base(self) -> str:
        """The model without EddyPro's ``_N`` suffix (``hs_50``)."""
        return _model_base(self.model)

    @property
    def closed_path(self) -> bool:
        """A closed (or enclosed) path analyser, by its model as EddyPro decides it: the tube keys are
        ignored (SmartFlux writes ``tube_length=100`` for open-path analysers)."""
        return self.kind == "irga" and instruments.analyser_model(self.model).closed_path

    @property
    def open_path(self) -> bool:
        return self.kind == "irga" and not self.closed_path


@dataclass(frozen=True)
class Column:
    """One ``col_N_*`` group: the N-th data field of each record (1-based, label field not counted)."""

    index: int
    variable: str
    instrument: str
    measure_type: str | None
    unit_in: str
    unit_out: str
    conversion: str  # "none" | "gain_offset" | "zero_fullscale"
    min_value: float
    max_value: float
    a_value: float
    b_value: float
    nom_timelag_s: float
    min_timelag_s: float
    max_timelag_s: float
    #: raw value -> canonical unit, after the linear ``conversion``; None for columns not read
    to_canonical: Conversion | None = field(default=None, compare=False, repr=False)

    @property
    def skipped(self) -> bool:
        """``ignore`` and ``not_numeric`` columns are never read."""
        return self.variable in SKIPPED_VARIABLES

    @property
    def unit(self) -> str:
        """The unit of the values after EddyPro's linear conversion (``unit_out`` if there is one)."""
        return self.unit_out if self.conversion != "none" else self.unit_in

    def linear(self, raw):
        """EddyPro's linear rescaling of raw values (``gain_offset``: a*x + b; ``zero_fullscale``:
        maps [min_value, max_value] onto [a_value, b_value]); identity for ``none``."""
        if self.conversion == "gain_offset":
            return self.a_value * raw + self.b_value
        if self.conversion == "zero_fullscale":
            return (self.b_value - self.a_value) / (self.max_value - self.min_value) * (raw - self.min_value) \
                + self.a_value
        return raw


@dataclass(frozen=True)
class Metadata:
    source: str
    site: Site
    station: Station
    acquisition_frequency_hz: float
    file_duration_min: float | None
    #: ``[Files] tstamp_end=1``: the time in a file's name is the END of the file's period
    timestamp_at_end: bool
    instruments: tuple[Instrument, ...]
    #: the separator character (``","``, ``"\t"``, ``";"``, ``" "``)
    separator: str
    header_rows: int
    #: string opening each data record (``DATA`` in LI-COR files); None when not set
    data_label: str | None
    columns: tuple[Column, ...]
    #: every section and key as read (lower-case keys), for what the dataclasses do not model
    sections: Mapping[str, Mapping[str, str]] = field(compare=False, repr=False, default_factory=dict)

    def instrument(self, model: str) -> Instrument | None:
        """The instrument a column names (``hs_50_1``), or None."""
        for ins in self.instruments:
            if ins.model == model:
                return ins
        return None

    @property
    def sonic(self) -> Instrument | None:
        """The first anemometer (EddyPro's default master sonic)."""
        return next((i for i in self.instruments if i.kind == "sonic"), None)

    @property
    def read_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if not c.skipped)


# ---------------------------------------------------------------------------------------------- parsing


def _model_base(model: str) -> str:
    return instruments.model_base(model)


def _parse_ini(text: str, source: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise RawDataError(source, f"malformed section header {line!r}", line=lineno)
            current = sections.setdefault(line[1:-1].strip().lower(), {})
            continue
        if "=" not in line:
            raise RawDataError(source, f"expected key=value, got {line!r}", line=lineno)
        if current is None:
            raise RawDataError(source, f"key outside any [section]: {line!r}", line=lineno)
        key, value = line.split("=", 1)
        current[key.strip().lower()] = value.strip()
    return sections


class _Section:
    """Typed access to one INI section; every failure names file, section and key."""

    def __init__(self, source: str, name: str, values: Mapping[str, str] | None) -> None:
        self.source = source
        self.name = name
        self.values = values if values is not None else {}

    def error(self, key: str, problem: str) -> RawDataError:
        return RawDataError(self.source, problem, section=self.name, key=key)

    def text(self, key: str, default: str | None = None) -> str:
        value = self.values.get(key)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise self.error(key, "missing")
            return default
        return value

    def number(self, key: str, default: float | None = None, *, required: bool = False) -> float | None:
        value = self.values.get(key, "")
        if value == "":
            if required:
                raise self.error(key, "missing" if key not in self.values else "empty, a number is required")
            return default
        try:
            number = float(value)
        except ValueError:
            raise self.error(key, f"not a number: {value!r}") from None
        if not math.isfinite(number):
            raise self.error(key, f"not a finite number: {value!r}")
        return number

    def required(self, key: str) -> float:
        value = self.number(key, required=True)
        assert value is not None
        return value


def _site(sec: _Section) -> Site:
    lat = sec.required("latitude")
    lon = sec.required("longitude")
    if not -90.0 <= lat <= 90.0:
        raise sec.error("latitude", f"must be within -90..90 deg, got {lat}")
    if not -180.0 <= lon <= 360.0:
        raise sec.error("longitude", f"must be within -180..180 deg, got {lon}")
    heights = {}
    for key in ("canopy_height", "displacement_height", "roughness_length"):
        value = sec.number(key)
        if value is not None and value < 0:
            raise sec.error(key, f"must not be negative, got {value}")
        heights[key] = value
    return Site(
        name=sec.text("site_name", ""), id=sec.text("site_id", ""), altitude_m=sec.required("altitude"),
        latitude_deg=lat, longitude_deg=lon, canopy_height_m=heights["canopy_height"],
        displacement_height_m=heights["displacement_height"], roughness_length_m=heights["roughness_length"],
    )


def _instrument(sec: _Section, n: int) -> Instrument:
    def key(name: str) -> str:
        return f"instr_{n}_{name}"

    def opt(name: str, per: float = 1.0) -> float | None:
        value = sec.number(key(name))  # in EddyPro's unit; ``per`` of them make the SI unit
        return None if value is None else value / per

    manufacturer = sec.text(key("manufacturer"), "").lower()
    model = sec.text(key("model"))
    kind = instruments.kind_of(model, manufacturer)
    if _model_base(model) not in SONIC_MODELS | IRGA_MODELS:
        raise sec.error(key("model"), f"unknown instrument model {model!r} (manufacturer "
                                      f"{manufacturer or 'not set'!r}); fluxedge knows: {instruments.known_models()}")
    assert kind is not None
    height = opt("height")
    if kind == "sonic":
        if height is None:
            raise sec.error(key("height"), f"missing: the height of anemometer {model!r} is required")
        if height <= 0:
            raise sec.error(key("height"), f"must be positive, got {height}")
    for name in ("tube_length", "tube_diameter", "tube_flowrate", "hpath_length", "vpath_length", "tau"):
        value = opt(name)
        if value is not None and value < 0:
            raise sec.error(key(name), f"must not be negative, got {value}")
    wformat = sec.text(key("wformat"), "") or None
    wref = sec.text(key("wref"), "") or None
    return Instrument(
        index=n, manufacturer=manufacturer, model=model, kind=kind, serial=sec.text(key("sn"), ""),
        sw_version=sec.text(key("sw_version"), ""), id=sec.text(key("id"), ""), height_m=height,
        wformat=wformat, wref=wref, north_offset_deg=opt("north_offset"),
        northward_separation_m=opt("northward_separation", 100.0) or 0.0,
        eastward_separation_m=opt("eastward_separation", 100.0) or 0.0,
        vertical_separation_m=opt("vertical_separation", 100.0) or 0.0,
        tube_length_m=opt("tube_length", 100.0), tube_diameter_m=opt("tube_diameter", 1000.0),
        flow_rate_l_min=opt("tube_flowrate"), hpath_length_m=opt("hpath_length", 100.0),
        vpath_length_m=opt("vpath_length", 100.0), tau_s=opt("tau"), kw=opt("kw"), ko=opt("ko"),
    )


def _column(sec: _Section, n: int) -> Column:
    def key(name: str) -> str:
        return f"col_{n}_{name}"

    variable = sec.text(key("variable")).strip().lower()
    measure = sec.text(key("measure_type"), "").strip().lower() or None
    unit_in = sec.text(key("unit_in"), "").strip()
    unit_out = sec.text(key("unit_out"), "").strip()
    conversion = sec.text(key("conversion"), "none").strip().lower() or "none"
    if conversion not in CONVERSIONS:
        raise sec.error(key("conversion"), f"unknown conversion {conversion!r}; one of {', '.join(CONVERSIONS)}")
    column = Column(
        index=n, variable=variable, instrument=sec.text(key("instrument"), "").strip(), measure_type=measure,
        unit_in=unit_in, unit_out=unit_out, conversion=conversion,
        min_value=sec.number(key("min_value"), 0.0) or 0.0, max_value=sec.number(key("max_value"), 0.0) or 0.0,
        a_value=sec.number(key("a_value"), 1.0) or 0.0,
        b_value=sec.number(key("b_value"), 0.0) or 0.0,
        nom_timelag_s=sec.number(key("nom_timelag"), 0.0) or 0.0,
        min_timelag_s=sec.number(key("min_timelag"), 0.0) or 0.0,
        max_timelag_s=sec.number(key("max_timelag"), 0.0) or 0.0,
    )
    if column.skipped:
        return column
    if conversion == "gain_offset" and column.a_value == 0:
        raise sec.error(key("a_value"), "gain_offset conversion with a zero gain")
    if conversion == "zero_fullscale" and column.max_value == column.min_value:
        raise sec.error(key("max_value"), "zero_fullscale conversion needs max_value != min_value")
    unit_key = key("unit_out" if conversion != "none" else "unit_in")
    if variable in GASES and measure not in GAS_MEASURE_TYPES:
        raise sec.error(key("measure_type"), f"gas {variable!r} needs a measure type, one of "
                                             f"{', '.join(GAS_MEASURE_TYPES)}; got {measure!r}")
    if variable in VARIABLE_DIMENSION and not column.unit:
        raise sec.error(unit_key, f"missing: {variable!r} needs a unit")
    try:
        to_canonical = conversion_for(variable, column.unit, measure)
    except UnitError as exc:
        raise sec.error(unit_key, str(exc)) from None
    return replace(column, to_canonical=to_canonical)


def _indices(keys, pattern: re.Pattern[str]) -> list[int]:
    return sorted({int(m.group(1)) for k in keys if (m := pattern.match(k))})


#: (text, Metadata) of the last successful :func:`parse_metadata`: the files of one station carry the
#: same metadata, parsed once (replaced as one tuple: threads may share it)
_LAST_PARSED: list = [None]


def parse_metadata(text: str, source: str | Path) -> Metadata:
    """Parse the text of an EddyPro metadata file; ``source`` names it in errors. The same text as the
    last one parsed gives the same result (under this ``source``) without parsing it again."""
    source = str(source)
    last = _LAST_PARSED[0]
    if last is not None and last[0] == text:
        return replace(last[1], source=source)
    md = _parse_metadata(text, source)
    _LAST_PARSED[0] = (text, md)
    return md


def _parse_metadata(text: str, source: str) -> Metadata:
    ini = _parse_ini(text.lstrip("\ufeff"), source)

    def section(name: str, required: bool = True) -> _Section:
        if name.lower() not in ini and required:
            raise RawDataError(source, "missing section", section=name)
        return _Section(source, name, ini.get(name.lower()))

    site = _site(section("Site"))
    st = section("Station", required=False)
    station = Station(name=st.text("station_name", ""), id=st.text("station_id", ""),
                      logger_id=st.text("logger_id", ""), logger_sw_version=st.text("logger_sw_version", ""))
    timing = section("Timing")
    rate = timing.required("acquisition_frequency")
    if rate <= 0:
        raise timing.error("acquisition_frequency", f"must be positive, got {rate}")
    duration = timing.number("file_duration")
    files = section("Files", required=False)
    tstamp_end = files.text("tstamp_end", "0").strip() in ("1", "true", "yes")

    ins_sec = section("Instruments")
    numbers = _indices(ins_sec.values, _INSTR_KEY)
    if not numbers:
        raise ins_sec.error("instr_1_model", "missing: no instrument described")
    instruments = tuple(_instrument(ins_sec, n) for n in numbers)

    fd = section("FileDescription")
    sep_word = fd.text("separator").strip()
    separator = SEPARATORS.get(sep_word.lower(), sep_word if len(sep_word) == 1 else None)
    if separator is None:
        raise fd.error("separator", f"unknown separator {sep_word!r}; one of {', '.join(SEPARATORS)} or one character")
    header_rows = fd.required("header_rows")
    if header_rows < 0 or header_rows != int(header_rows):
        raise fd.error("header_rows", f"must be a whole number >= 0, got {fd.text('header_rows')!r}")
    label = fd.text("data_label", "").strip()
    data_label = None if label.lower() in ("", "not set", "none") else label
    col_numbers = _indices(fd.values, _COL_KEY)
    if not col_numbers:
        raise fd.error("col_1_variable", "missing: no column described")
    for expected in range(1, col_numbers[-1] + 1):
        if f"col_{expected}_variable" not in fd.values:
            raise fd.error(f"col_{expected}_variable", "missing (columns must be numbered 1, 2, 3 ... without gaps)")
    columns = tuple(_column(fd, n) for n in range(1, col_numbers[-1] + 1))
    models = {i.model for i in instruments}
    for col in columns:
        if not col.skipped and col.instrument and col.instrument not in models:
            raise fd.error(f"col_{col.index}_instrument",
                           f"names instrument {col.instrument!r}, which [Instruments] does not describe "
                           f"(described: {', '.join(sorted(models))})")
    return Metadata(
        source=source, site=site, station=station, acquisition_frequency_hz=rate, file_duration_min=duration,
        timestamp_at_end=tstamp_end, instruments=instruments, separator=separator, header_rows=int(header_rows),
        data_label=data_label, columns=columns,
        sections=ini,
    )


def load_metadata(path: str | Path) -> Metadata:
    """Read and parse a ``.metadata`` file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RawDataError(path, f"cannot read: {exc.strerror or exc}") from None
    return parse_metadata(decode_text(data), path)


def decode_text(data: bytes) -> str:
    """UTF-8, falling back to Latin-1 (old loggers write degree signs in it)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")
