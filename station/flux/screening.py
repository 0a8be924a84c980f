"""Records screened out by the instruments' own diagnostic words, before any statistics.

EddyPro 7 (``FilterDatasetForDiagnostics``) sets a variable to missing where the diagnostic word of
its instrument says the sample is bad; a missing word keeps the sample. The rules by model:

- LI-7500 family (``diag_75``; bit set = OK): bad unless PLL, detector and chopper (bits 5-7) are
  all set: ``(d & 0xE0) != 0xE0``; sync and AGC are not tested.
- LI-7200 family (``diag_72``): bad unless PLL, detector, chopper and delta-p (bits 5-8) and head
  detect (bit 12) are set: ``(d & 0x1E0) != 0x1E0 or not d & 0x1000``.
- LI-7700 (``diag_77``; bit set = condition present): bad if any of NOTREADY, NOSIGNAL, REFUNLOCKED,
  LASERTEMPUNREGULATED, BLOCKTEMPUNREGULATED, MOTORSPINNING, PUMPON or CALIBRATING is set:
  ``(d & 0xEF20) != 0`` (heaters, bad aux thermocouples and box-connected do not screen).
- Gill WindMaster and HS anemometers: good for 0, 10 and 11 only; every other anemometer (CSAT3,
  Gill R3, ...): good for 0 only.

Arrays in, arrays out; the counts are EddyPro's ``*_DIAG_NREX`` (records set to missing per variable).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from station.flux.instruments import model_base


@dataclass(frozen=True)
class DiagnosticScreen:
    """The word in column ``column`` screens the columns ``targets`` with ``rule``."""

    column: str
    rule: str  # "li7500" | "li7200" | "li7700" | "gill_wm_hs" | "zero"
    targets: tuple[str, ...]


def analyser_rule(model: str) -> str | None:
    """The screening rule of a gas analyser's diagnostic word, None where EddyPro has none."""
    base = model_base(model)
    for family in ("li7500", "li7200", "li7700"):
        if base.startswith(family):
            return family
    return None


def sonic_rule(model: str) -> str:
    base = model_base(model)
    return "gill_wm_hs" if base.startswith(("wm", "hs")) else "zero"


def bad_records(word: np.ndarray, rule: str) -> np.ndarray:
    """Where the diagnostic word ``word`` (any numeric array, NaN = missing) marks a bad record."""
    word = np.asarray(word, dtype=float)
    ok = np.isfinite(word)
    d = np.where(ok, np.rint(np.where(ok, word, 0.0)), 0.0).astype(np.int64)
    if rule == "li7500":
        bad = (d & 0xE0) != 0xE0
    elif rule == "li7200":
        bad = ((d & 0x1E0) != 0x1E0) | ((d & 0x1000) == 0)
    elif rule == "li7700":
        bad = (d & 0xEF20) != 0
    elif rule == "gill_wm_hs":
        bad = (d != 0) & (d != 10) & (d != 11)
    elif rule == "zero":
        bad = d != 0
    else:
        raise ValueError(f"unknown diagnostic rule {rule!r}")
    return bad & ok


def screen(columns: dict[str, np.ndarray], screens: tuple[DiagnosticScreen, ...]
           ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Columns with the screened samples set to NaN (copies of those changed) and, per target
    column, how many records its diagnostic word excluded (EddyPro counts records whether or not the
    value was already missing)."""
    out = dict(columns)
    counts: dict[str, int] = {}
    for s in screens:
        word = columns.get(s.column)
        if word is None:
            continue
        bad = bad_records(word, s.rule)
        n = int(np.count_nonzero(bad))
        for target in s.targets:
            if target not in out:
                continue
            counts[target] = counts.get(target, 0) + n
            if n:
                values = np.array(out[target], dtype=float)
                values[bad] = np.nan
                out[target] = values
    return out, counts
