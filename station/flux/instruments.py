"""The instrument table: every sonic anemometer and gas analyser model an EddyPro ``.metadata`` can name.

One row per model, keyed by EddyPro's model string without its ``_N`` suffix (``csat3``, ``li7500ds``).
Values are EddyPro 7's (``retrieve_sensor_params.f90``, ``read_metadata_file.f90``,
``adjust_sonic_coordinates.f90``), which EddyPro applies whatever the metadata says:

- path lengths [m]: ``vpath_m`` (line averaging in the Moncrieff et al. 1997 transfer functions),
  ``hpath_m`` (Massman 2000; for closed paths also the cell diameter);
- ``tau_s``: first-order time constant [s] (a sonic's is 1 / its internal output rate);
- open or closed path by model only (EddyPro ignores the tube keys of open-path models: SmartFlux
  writes ``tube_length=100`` for an LI-7500DS); a closed path's cell volume is the hpath x vpath
  cylinder (EddyPro ``set_timelags.f90``), used for its nominal time lag;
- wind conventions: Gill sonics whose ``wref`` is ``axis`` are rotated by +30 deg into the spar
  frame before anything else (the R2 always, left-handed); the Metek USA-1 is left-handed (v = -v);
  a CSAT3's wind direction is offset by -180 deg, a Young 81000's by -90, a uSonic-3's by +90.

The ``generic_*``, krypton and Lyman-alpha models take path lengths and time constant from the
metadata (EddyPro reads them only for these). Campbell's EC150, EC155 and IRGASON are not in
EddyPro 7.0.9's table (its metadata cannot name them); their rows use Campbell's specifications
(EC150/IRGASON path 15.37 cm, EC155 cell 12 cm, 5.9 cm3; CSAT3A geometry of the CSAT3) so that files
from EasyFlux towers can be processed the same way. An unknown model raises :class:`UnknownModelError`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass


class UnknownModelError(ValueError):
    """A model string that is in no row of the table."""


@dataclass(frozen=True)
class SonicModel:
    model: str
    manufacturer: str
    label: str
    hpath_m: float | None
    vpath_m: float | None
    tau_s: float | None
    #: added to the north offset for the wind direction only (EddyPro ``AdjustSonicCoordinates``)
    direction_offset_deg: float = 0.0
    #: a Gill that reports in its own axis frame when ``wref = axis`` (rotated +30 deg to the spar frame)
    gill_axis: bool = False
    #: R2: always in the axis frame, and left-handed (u flipped)
    r2: bool = False
    #: Metek USA-1: left-handed, v = -v
    flip_v: bool = False
    #: geometry from the metadata (``generic_sonic``)
    from_metadata: bool = False


@dataclass(frozen=True)
class AnalyserModel:
    model: str
    manufacturer: str
    label: str
    closed_path: bool
    hpath_m: float | None
    vpath_m: float | None
    tau_s: float | None
    from_metadata: bool = False
    #: an LI-7500-family open path whose own surfaces heat the air in its path (Burba et al. 2008)
    li7500_family: bool = False
    #: the cell volume [m3] where it differs from the hpath x vpath cylinder (EC155)
    cell_volume_m3: float | None = None

    @property
    def open_path(self) -> bool:
        return not self.closed_path

    def cell_volume(self, hpath_m: float | None = None, vpath_m: float | None = None) -> float:
        """Cell volume [m3]: pi (hpath / 2)^2 vpath, as EddyPro (``set_timelags.f90``)."""
        if self.cell_volume_m3 is not None:
            return self.cell_volume_m3
        h = self.hpath_m if hpath_m is None else hpath_m
        v = self.vpath_m if vpath_m is None else vpath_m
        return math.pi * (h / 2.0) ** 2 * v if h and v else 0.0


def _gill(model: str, label: str, rate_hz: float, **kw) -> SonicModel:
    return SonicModel(model, "gill", label, 0.110, 0.125, 1.0 / rate_hz, gill_axis=True, **kw)


SONIC_MODELS: dict[str, SonicModel] = {s.model: s for s in (
    _gill("hs_50", "Gill HS-50", 50.0),
    _gill("hs_100", "Gill HS-100", 100.0),
    _gill("r2", "Gill R2", 50.0, r2=True),
    _gill("r3_50", "Gill R3-50", 50.0),
    _gill("r3_100", "Gill R3-100", 100.0),
    _gill("r3a_100", "Gill R3A-100", 100.0),
    _gill("wm", "Gill WindMaster", 32.0),
    _gill("wmpro", "Gill WindMaster Pro", 40.0),
    SonicModel("usa1_standard", "metek", "Metek USA-1 Standard", 0.099, 0.131, 1.0 / 25.0, flip_v=True),
    SonicModel("usa1_fast", "metek", "Metek USA-1 Fast", 0.099, 0.131, 1.0 / 50.0, flip_v=True),
    SonicModel("usoni3_classa_mp", "metek", "Metek uSonic-3 Class A MP", 0.099, 0.131, 1.0 / 30.0,
               direction_offset_deg=90.0),
    SonicModel("usoni3_cage_mp", "metek", "Metek uSonic-3 Cage MP", 0.099, 0.131, 1.0 / 30.0,
               direction_offset_deg=90.0),
    SonicModel("csat3", "csi", "Campbell CSAT3", 0.058, 0.115, 1.0 / 60.0, direction_offset_deg=-180.0),
    SonicModel("csat3b", "csi", "Campbell CSAT3B", 0.058, 0.115, 1.0 / 60.0, direction_offset_deg=-180.0),
    # not in EddyPro 7.0.9: the CSAT3A head of the IRGASON and EC150 has the CSAT3's geometry
    SonicModel("csat3a", "csi", "Campbell CSAT3A (EC150)", 0.058, 0.115, 1.0 / 60.0, direction_offset_deg=-180.0),
    SonicModel("irgason", "csi", "Campbell IRGASON sonic", 0.058, 0.115, 1.0 / 60.0, direction_offset_deg=-180.0),
    # EddyPro sets no horizontal path for the Young 81000 family (only Massman 2000 would use it)
    *(SonicModel(m, "young", f"Young {m.upper()}", None, 0.150, 1.0 / 40.0, direction_offset_deg=-90.0)
      for m in ("81000", "81000v", "81000re", "81000vre")),
    SonicModel("generic_sonic", "other_sonic", "generic anemometer", None, None, None, from_metadata=True),
)}

ANALYSER_MODELS: dict[str, AnalyserModel] = {a.model: a for a in (
    *(AnalyserModel(m, "licor", label, False, 0.0095, 0.127, 0.1, li7500_family=True)
      for m, label in (("li7500", "LI-COR LI-7500"), ("li7500a", "LI-COR LI-7500A"),
                       ("li7500rs", "LI-COR LI-7500RS"), ("li7500ds", "LI-COR LI-7500DS"))),
    AnalyserModel("li7200", "licor", "LI-COR LI-7200", True, 0.0127, 0.127, 0.1),
    AnalyserModel("li7200rs", "licor", "LI-COR LI-7200RS", True, 0.0127, 0.127, 0.1),
    AnalyserModel("li7700", "licor", "LI-COR LI-7700", False, 0.0635, 0.50, 0.1),
    AnalyserModel("li6262", "licor", "LI-COR LI-6262", True, 0.013, 0.152, 0.1),
    AnalyserModel("li7000", "licor", "LI-COR LI-7000", True, 0.0095, 0.152, 0.1),
    # not in EddyPro 7.0.9 (Campbell's specifications; EC155: closed path, 12 cm cell of 5.9 cm3)
    AnalyserModel("ec150", "csi", "Campbell EC150", False, 0.0095, 0.1537, 0.1),
    AnalyserModel("irgason", "csi", "Campbell IRGASON", False, 0.0095, 0.1537, 0.1),
    AnalyserModel("ec155", "csi", "Campbell EC155", True, 0.0079, 0.12, 0.1, cell_volume_m3=5.9e-6),
    AnalyserModel("generic_open_path", "other_irga", "generic open path", False, None, None, None,
                  from_metadata=True),
    AnalyserModel("generic_closed_path", "other_irga", "generic closed path", True, None, None, None,
                  from_metadata=True),
    AnalyserModel("open_path_krypton", "other_irga", "krypton hygrometer (open)", False, None, None, None,
                  from_metadata=True),
    AnalyserModel("open_path_lyman", "other_irga", "Lyman-alpha hygrometer (open)", False, None, None, None,
                  from_metadata=True),
    AnalyserModel("closed_path_krypton", "other_irga", "krypton hygrometer (closed)", True, None, None, None,
                  from_metadata=True),
    AnalyserModel("closed_path_lyman", "other_irga", "Lyman-alpha hygrometer (closed)", True, None, None, None,
                  from_metadata=True),
)}

#: Manufacturer strings of EddyPro's metadata by kind (its category comes from the firm).
SONIC_MAKERS = frozenset({"gill", "metek", "young", "csi", "other_sonic"})
ANALYSER_MAKERS = frozenset({"licor", "other_irga"})


def model_base(model: str) -> str:
    """EddyPro's model string without its ``_N`` instance suffix, lower case (``li7500ds_1`` -> ``li7500ds``;
    a bare model such as ``hs_100`` stays as it is)."""
    name = model.strip().lower()
    if name in SONIC_MODELS or name in ANALYSER_MODELS:
        return name
    return re.sub(r"_\d+$", "", name)


def known_models() -> str:
    return ", ".join(sorted({*SONIC_MODELS, *ANALYSER_MODELS}))


def sonic_model(model: str) -> SonicModel:
    """The table row of a sonic anemometer; :class:`UnknownModelError` names the model and the known ones."""
    base = model_base(model)
    if base in SONIC_MODELS:
        return SONIC_MODELS[base]
    raise UnknownModelError(f"unknown anemometer model {model!r}; known: {', '.join(sorted(SONIC_MODELS))}")


def analyser_model(model: str) -> AnalyserModel:
    """The table row of a gas analyser; :class:`UnknownModelError` names the model and the known ones."""
    base = model_base(model)
    if base in ANALYSER_MODELS:
        return ANALYSER_MODELS[base]
    raise UnknownModelError(f"unknown gas analyser model {model!r}; known: {', '.join(sorted(ANALYSER_MODELS))}")


def kind_of(model: str, manufacturer: str = "") -> str | None:
    """``"sonic"``, ``"irga"`` or None: by the model where the table knows it (the IRGASON is both, an
    analyser by its gas columns, a sonic by its wind columns: here ``irga``), else by EddyPro's firm."""
    base = model_base(model)
    if base in ANALYSER_MODELS:
        return "irga"
    if base in SONIC_MODELS:
        return "sonic"
    maker = manufacturer.strip().lower()
    if maker in SONIC_MAKERS:
        return "sonic"
    if maker in ANALYSER_MAKERS:
        return "irga"
    return None
