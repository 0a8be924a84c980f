"""LI-COR LI-7200 / LI-7200RS enclosed-path CO2/H2O analysers, through the LI-7550 on RS-232.

Same text grammar as the LI-7500 family (:mod:`firmware_bridge.licor`); source: LI-7200RS manual
App. D, LI-COR "Gas analyzer diagnostics" and tech tip "Interpreting Diagnostic Values", Thünen
``LI7200Diagnostic.jl`` (shared/reference/instruments.md section 4).

Labels -> channels (``LABELS``; the first label listed wins when a record has several for one channel):

- [V] ``Ndx`` index, ``DiagVal`` diag, ``CO2D``/``H2OD`` co2/h2o [mmol m-3, in the cell],
  ``Temp`` temperature [degC, cell], ``Pres`` pressure [kPa, total cell pressure];
- [S] (UBC micromet's production LI-7x00 reader ``fr_read_TCP_LI7x00_data``): ``CO2MFd``/``H2OMFd``
  dry mole fractions -> co2_mf [umol mol-1] / h2o_mf [mmol mol-1] (``CO2MF``/``H2OMF`` as
  fall-backs), ``TempIn``/``TempOut`` -> t_in/t_out [degC] (inlet/outlet thermocouples), ``DPres``
  -> dpressure [kPa] (differential pressure; sign convention cell minus ambient [?]),
  ``VolFlowRate`` (else ``MeasFlowRate``) -> flow [lpm ?], ``AvgSS`` (else ``CO2SS``) ->
  signal_strength [%].

Diagnostic value (16 bit, 0-8191 used): bits 0-3 signal strength code (x 6.67 %); 4 Sync, 5 PLL,
6 Detector, 7 Chopper, 8 differential-pressure sensor, 9 aux/internal reference voltages,
10 T_inlet thermocouple, 11 T_outlet thermocouple, 12 head detected (all 1 = OK); 13-15 unused.
8191 = everything OK at maximum signal. :func:`decode_flags` reports them as faults (True = problem).
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from firmware_bridge import licor
from firmware_bridge.licor import MAX_LINE_BYTES, MISSING  # noqa: F401  (part of the family's API)

NAME = "li7200"
ROLE = "gas"
TRANSPORT = "serial"
DEFAULT_BAUD = licor.DEFAULT_BAUD
BAUDS = licor.BAUDS
MODELS = ("li7200", "li7200rs")
DEFAULT_MODEL = "li7200rs"

RECORD_COUNTER = ("index", None)  # Ndx
CHANNELS = ("index", "diag", "co2", "h2o", "co2_mf", "h2o_mf", "temperature", "pressure", "signal_strength",
            "t_in", "t_out", "dpressure", "flow")
UNITS = {"index": "record index (Ndx)", "diag": "diagnostic value (DiagVal)", "co2": "mmol m-3",
         "h2o": "mmol m-3", "co2_mf": "umol mol-1", "h2o_mf": "mmol mol-1", "temperature": "degC",
         "pressure": "kPa", "signal_strength": "%", "t_in": "degC", "t_out": "degC", "dpressure": "kPa",
         "flow": "lpm"}
#: The step of each float channel (:mod:`firmware_bridge.resolution`): LI-COR's 8 significant digits.
RESOLUTION = licor.resolution(CHANNELS)
LABELS = {"Ndx": "index", "DiagVal": "diag", "CO2D": "co2", "H2OD": "h2o", "CO2MFd": "co2_mf",
          "CO2MF": "co2_mf", "H2OMFd": "h2o_mf", "H2OMF": "h2o_mf", "Temp": "temperature", "Pres": "pressure",
          "TempIn": "t_in", "TempOut": "t_out", "DPres": "dpressure", "VolFlowRate": "flow",
          "MeasFlowRate": "flow", "AvgSS": "signal_strength", "CO2SS": "signal_strength"}
#: Every output the emulated instrument can write, in the order it writes them [?].
ORDER = ("Ndx", "DiagVal", "CO2D", "H2OD", "Temp", "Pres", "CO2MFd", "H2OMFd", "TempIn", "TempOut", "DPres",
         "VolFlowRate", "AvgSS")
#: Outputs :func:`command_start` enables, hence the parser's default TAB column order. The RS-232
#: switch names of the LI-7200 extras (TempIn ... VolFlowRate) are the record labels [?].
DEFAULT_COLUMNS = ("Ndx", "DiagVal", "CO2D", "H2OD", "Temp", "Pres", "TempIn", "TempOut", "DPres", "VolFlowRate")
OK_BITS = {**licor.OK_BITS_CORE, "dpressure_fault": 8, "aux_ref_fault": 9, "t_inlet_fault": 10,
           "t_outlet_fault": 11, "head_missing": 12}
OK_MASK = 0x1FF0
DIAG_ALL_OK = 8191
#: Emulated cell: differential pressure [kPa] (cell minus ambient [?]), flow [lpm], and the inlet /
#: outlet thermocouples this far below / above the cell temperature [K].
DPRES_KPA = -1.0
FLOW_LPM = 15.0
T_SPLIT_K = 0.2


def _check_model(model: str) -> str:
    if model not in MODELS:
        raise ValueError(f"unknown LI-7200 model {model!r}; choose one of {', '.join(MODELS)}")
    return model


def signal_strength_pct(diag: np.ndarray) -> np.ndarray:
    """Signal strength [%] from diagnostic bits 0-3: code x 6.67 (section 4)."""
    return licor.signal_strength_pct(diag)


def decode_flags(diag: np.ndarray) -> dict[str, np.ndarray]:
    """``sync_fault``, ``pll_fault``, ``detector_fault``, ``chopper_fault``, ``dpressure_fault``,
    ``aux_ref_fault``, ``t_inlet_fault``, ``t_outlet_fault``, ``head_missing`` (bits 4-12 clear) and
    ``signal_low`` (signal strength < 70 %); True = problem."""
    return licor.decode_ok_bits(diag, OK_BITS)


def valid(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Samples whose bits 4-12 all report OK, whose signal strength is not low (< 70 %) and whose
    ``co2`` and ``h2o`` are finite."""
    return licor.valid_ok_bits(columns, OK_MASK)


class Parser(licor.Parser):
    """Streaming LI-7200 text parser (:class:`licor.Parser`); ``columns`` is the TAB layout."""

    family = NAME

    def __init__(self, model: str = DEFAULT_MODEL, columns: tuple[str, ...] = DEFAULT_COLUMNS) -> None:
        self.model = _check_model(model)
        super().__init__(LABELS, CHANNELS, columns)


def command_outputs(freq_hz: float, labels: bool = True, bandwidth_hz: int = 10,
                    columns: tuple[str, ...] = DEFAULT_COLUMNS) -> bytes:
    """The ``(Outputs ...)`` block enabling ``columns`` on RS-232 at ``freq_hz`` (section 4)."""
    return licor.command_outputs(columns, freq_hz, labels, bandwidth_hz)


def command_start(rate_hz: float) -> bytes:
    """What the driver (re)sends at connect: labelled records of :data:`DEFAULT_COLUMNS` at
    ``rate_hz`` with CR LF line ends."""
    return command_outputs(rate_hz)


def tab_columns(command: bytes, current: tuple[str, ...] = DEFAULT_COLUMNS) -> tuple[str, ...]:
    """The TAB layout after sending ``command`` to an instrument that had ``current`` enabled [?]."""
    return licor.tab_columns(command, ORDER, current)


class Device(licor.Device):
    """An emulated LI-7200RS writing :data:`DEFAULT_COLUMNS` as labelled records until told
    otherwise by ``(Outputs ...)``.

    Observations used: ``co2``, ``h2o`` [mmol m-3], ``temperature`` [degC], ``pressure`` [kPa] and
    optionally ``gas_diag``. They are read as the state *in the cell* (an observation holds what the
    analyser reports), so ``CO2D``, ``H2OD``, ``Temp`` and ``Pres`` are written unchanged and
    ``DPres`` (:data:`DPRES_KPA`) only says the ambient pressure was ``Pres - DPres``. Mole
    fractions are per mole of dry air, as the LI-7200 reports them.

    Conditions (section 9): rain -> signal code 9 (60 %, droplets drawn into the cell), low_signal ->
    5 (33 %, dirty cell windows), obstruction -> 3 (20 %) with the intake blocked: flow collapses to
    1 lpm and the differential pressure to -8 kPa. Subsystem bits stay OK in every condition; all
    three fail :func:`valid` through ``signal_low``.
    """

    family = NAME
    ORDER = ORDER
    DEFAULT_OUTPUTS = DEFAULT_COLUMNS
    DIAG_ALL_OK = DIAG_ALL_OK
    CONDITION_CODES = MappingProxyType({"rain": 9, "obstruction": 3, "low_signal": 5})

    def __init__(self, rate_hz: float = 20.0, seed: int | None = None, baud: int | None = DEFAULT_BAUD,
                 model: str = DEFAULT_MODEL) -> None:
        super().__init__(rate_hz, seed, baud)
        self.model = _check_model(model)

    def values(self, obs: dict[str, np.ndarray], first_index: int) -> dict[str, np.ndarray]:
        n = len(obs["co2"])
        diag = self.diag(obs, n)
        cell = {k: np.broadcast_to(np.asarray(obs[k], dtype=float), (n,)) for k in ("co2", "h2o", "temperature",
                                                                                   "pressure")}
        blocked = self.condition == "obstruction"
        dpres = np.full(n, -8.0 if blocked else DPRES_KPA)
        flow = (1.0 if blocked else FLOW_LPM) + 0.05 * self.rng.standard_normal(n)
        co2_mf, h2o_mf = licor.mole_fractions(cell, dry=True)
        return {"Ndx": first_index + np.arange(n), "DiagVal": diag, "CO2D": cell["co2"], "H2OD": cell["h2o"],
                "Temp": cell["temperature"], "Pres": cell["pressure"], "CO2MFd": co2_mf, "H2OMFd": h2o_mf,
                "TempIn": cell["temperature"] - T_SPLIT_K, "TempOut": cell["temperature"] + T_SPLIT_K,
                "DPres": dpres, "VolFlowRate": flow, "AvgSS": signal_strength_pct(diag)}


def encode_observation(obs: dict[str, np.ndarray], first_index: int, labels: bool = True) -> bytes:
    """Records for an observation block, as a default :class:`Device` writes them (kept for callers
    not yet using ``Device.frames``)."""
    dev = Device()
    dev.labels = labels
    return b"".join(dev.frames(obs, first_index))
