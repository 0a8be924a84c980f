"""LI-COR LI-7500 family open-path CO2/H2O analysers: LI-7500 (original), LI-7500A, LI-7500RS, LI-7500DS.

The A/RS/DS talk through the LI-7550 interface unit in the text grammar of :mod:`firmware_bridge.licor`
(labelled ``(Data ...)`` records or TAB-separated values); the original LI-7500 uses the same
grammar without an LI-7550 (19200 8N1 in NCAR deployments [S]). Source: LI-7200RS manual App. D,
LI-COR tech tip "Interpreting Diagnostic Values" (shared/reference/instruments.md section 4).

Labels -> channels (``LABELS``): ``Ndx`` index, ``DiagVal`` diag, ``CO2D``/``H2OD`` co2/h2o
[mmol m-3], ``Temp`` temperature [degC], ``Pres`` pressure [kPa] are verified [V]; ``CO2MF`` co2_mf
[umol mol-1], ``H2OMF`` h2o_mf [mmol mol-1] and ``CO2SS`` signal_strength [%] are seen in LI-7500DS/
SmartFlux records and production drivers (UBC micromet ``fr_read_TCP_LI7x00_data``) [S]; whether
these mole fractions are per mole of moist or dry air is not documented in our sources [?] (the
emulator writes moist-air values).

Diagnostic value (1 byte): bits 0-3 signal strength code (x 6.67 %), or on the original LI-7500 the
AGC code (x 6.25 %, high = dirty: the opposite sense); bits 4-7 Sync, PLL, Detector, Chopper, 1 = OK.
:func:`decode_flags` reports them as faults (True = problem) plus ``signal_low``
(:data:`licor.SIGNAL_LOW_PCT` / :data:`licor.AGC_HIGH_PCT`). Example: 125 -> chopper fault, SS 87 %.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from firmware_bridge import licor
from firmware_bridge.licor import MAX_LINE_BYTES, MISSING  # noqa: F401  (part of the family's API)

NAME = "li7500"
ROLE = "gas"
TRANSPORT = "serial"
DEFAULT_BAUD = licor.DEFAULT_BAUD
BAUDS = licor.BAUDS
#: Models of the family; ``li7500`` (original) reports AGC instead of signal strength.
MODELS = ("li7500", "li7500a", "li7500rs", "li7500ds")
DEFAULT_MODEL = "li7500a"

RECORD_COUNTER = ("index", None)  # Ndx
CHANNELS = ("index", "diag", "co2", "h2o", "co2_mf", "h2o_mf", "temperature", "pressure", "signal_strength")
UNITS = {"index": "record index (Ndx)", "diag": "diagnostic value (DiagVal)", "co2": "mmol m-3",
         "h2o": "mmol m-3", "co2_mf": "umol mol-1", "h2o_mf": "mmol mol-1", "temperature": "degC",
         "pressure": "kPa", "signal_strength": "% (original LI-7500: AGC %, high = dirty)"}
#: The step of each float channel (:mod:`firmware_bridge.resolution`): LI-COR's 8 significant digits.
RESOLUTION = licor.resolution(CHANNELS)
#: Instrument labels -> channels (see the module docstring for what is verified).
LABELS = {"Ndx": "index", "DiagVal": "diag", "CO2D": "co2", "H2OD": "h2o", "CO2MF": "co2_mf",
          "H2OMF": "h2o_mf", "Temp": "temperature", "Pres": "pressure", "CO2SS": "signal_strength"}
#: Every output the emulated instrument can write, in the order it writes them (order of the
#: manual's record and of LI-7500DS/SmartFlux records [S]).
ORDER = ("Ndx", "DiagVal", "CO2D", "H2OD", "Temp", "Pres", "CO2MF", "H2OMF", "CO2SS")
#: Outputs :func:`command_start` enables, hence the parser's default TAB column order.
DEFAULT_COLUMNS = ("Ndx", "DiagVal", "CO2D", "H2OD", "Temp", "Pres")
#: Bits 4-7 of the diagnostic value (1 = OK); :func:`decode_flags` names them as faults.
OK_BITS = dict(licor.OK_BITS_CORE)
OK_MASK = 0xF0
#: All OK at 100 % signal strength (code 15); the original LI-7500's all OK at AGC 56 % (code 9).
DIAG_ALL_OK = 0xFF
DIAG_ALL_OK_ORIGINAL = 0xF9


def _check_model(model: str) -> str:
    if model not in MODELS:
        raise ValueError(f"unknown LI-7500 model {model!r}; choose one of {', '.join(MODELS)}")
    return model


def signal_strength_pct(diag: np.ndarray, model: str = DEFAULT_MODEL) -> np.ndarray:
    """Signal strength [%] from diagnostic bits 0-3 (code x 6.67), or the AGC [%] (code x 6.25) of
    the original LI-7500 (section 4, "Diagnostic value bit maps")."""
    return licor.signal_strength_pct(diag, agc=_check_model(model) == "li7500")


def decode_flags(diag: np.ndarray, model: str = DEFAULT_MODEL) -> dict[str, np.ndarray]:
    """``sync_fault``, ``pll_fault``, ``detector_fault``, ``chopper_fault`` (bits 4-7 clear) and
    ``signal_low`` (signal strength < 70 %, original LI-7500: AGC > 75 %); True = problem."""
    return licor.decode_ok_bits(diag, OK_BITS, agc=_check_model(model) == "li7500")


def valid(columns: dict[str, np.ndarray], model: str = DEFAULT_MODEL) -> np.ndarray:
    """Samples whose Sync, PLL, Detector and Chopper bits (4-7) all report OK, whose signal is not
    low (``signal_low`` of :func:`decode_flags`; pass ``model="li7500"`` for the original LI-7500,
    whose bits 0-3 are AGC) and whose ``co2`` and ``h2o`` are finite."""
    return licor.valid_ok_bits(columns, OK_MASK, agc=_check_model(model) == "li7500")


class Parser(licor.Parser):
    """Streaming LI-7500 text parser (:class:`licor.Parser`). ``model`` selects the signal-strength
    conversion; ``columns`` is the TAB layout (instrument labels), by default :data:`DEFAULT_COLUMNS`."""

    family = NAME

    def __init__(self, model: str = DEFAULT_MODEL, columns: tuple[str, ...] = DEFAULT_COLUMNS) -> None:
        self.model = _check_model(model)
        super().__init__(LABELS, CHANNELS, columns, agc=model == "li7500")


def command_outputs(freq_hz: float, labels: bool = True, bandwidth_hz: int = 10,
                    columns: tuple[str, ...] = DEFAULT_COLUMNS) -> bytes:
    """The ``(Outputs ...)`` block enabling ``columns`` on RS-232 at ``freq_hz`` (section 4)."""
    return licor.command_outputs(columns, freq_hz, labels, bandwidth_hz)


def command_start(rate_hz: float) -> bytes:
    """What the driver (re)sends at connect: labelled records of :data:`DEFAULT_COLUMNS` at
    ``rate_hz`` with CR LF line ends, so a later ``Labels FALSE`` keeps the parser's default layout."""
    return command_outputs(rate_hz)


def tab_columns(command: bytes, current: tuple[str, ...] = DEFAULT_COLUMNS) -> tuple[str, ...]:
    """The TAB layout (``Parser(columns=...)``) after sending ``command`` to an instrument that had
    ``current`` enabled (assumes the instrument writes in :data:`ORDER`) [?]."""
    return licor.tab_columns(command, ORDER, current)


class Device(licor.Device):
    """An emulated LI-7500A/RS/DS (or original LI-7500 with ``model="li7500"``) writing
    :data:`DEFAULT_COLUMNS` as labelled records until told otherwise by ``(Outputs ...)``.

    Observations used: ``co2``, ``h2o`` [mmol m-3], ``temperature`` [degC], ``pressure`` [kPa] and
    optionally ``gas_diag`` (replaces the all-OK diagnostic value). Conditions change only the
    signal code in bits 0-3 (section 9: "LI-7500 signal strength ramp-down"): rain 3 (20 %),
    obstruction 1 (6.7 %), low_signal 9 (60 %); on the original LI-7500 the AGC rises instead:
    rain and obstruction 15 (93.75 %), low_signal 13 (81.25 %). Sync/PLL/Detector/Chopper concern
    the chopper wheel and detector cooling, which a wet or blocked path does not disturb, so they
    stay OK. The CO2 and H2O mole fractions and ``CO2SS`` are derived from the same observation.
    """

    family = NAME
    ORDER = ORDER
    DEFAULT_OUTPUTS = DEFAULT_COLUMNS
    DIAG_ALL_OK = DIAG_ALL_OK
    CONDITION_CODES = MappingProxyType({"rain": 3, "obstruction": 1, "low_signal": 9})
    CONDITION_CODES_ORIGINAL = MappingProxyType({"rain": 15, "obstruction": 15, "low_signal": 13})

    def __init__(self, rate_hz: float = 20.0, seed: int | None = None, baud: int | None = DEFAULT_BAUD,
                 model: str = DEFAULT_MODEL) -> None:
        super().__init__(rate_hz, seed, baud)
        self.model = _check_model(model)
        if model == "li7500":
            self.diag_all_ok = DIAG_ALL_OK_ORIGINAL
            self.condition_codes = dict(self.CONDITION_CODES_ORIGINAL)

    def values(self, obs: dict[str, np.ndarray], first_index: int) -> dict[str, np.ndarray]:
        n = len(obs["co2"])
        diag = self.diag(obs, n)
        full = {k: np.broadcast_to(np.asarray(obs[k], dtype=float), (n,)) for k in ("co2", "h2o", "temperature",
                                                                                   "pressure")}
        co2_mf, h2o_mf = licor.mole_fractions(full, dry=False)
        return {"Ndx": first_index + np.arange(n), "DiagVal": diag, "CO2D": full["co2"], "H2OD": full["h2o"],
                "Temp": full["temperature"], "Pres": full["pressure"], "CO2MF": co2_mf, "H2OMF": h2o_mf,
                "CO2SS": signal_strength_pct(diag, self.model)}


def encode_observation(obs: dict[str, np.ndarray], first_index: int, labels: bool = True) -> bytes:
    """Records for an observation block, as a default :class:`Device` writes them (kept for callers
    not yet using ``Device.frames``); ``labels=False`` gives TAB records of :data:`DEFAULT_COLUMNS`."""
    dev = Device()
    dev.labels = labels
    return b"".join(dev.frames(obs, first_index))
