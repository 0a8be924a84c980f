"""What scientists get out of the collector: query, export, plots and the carbon budget.

Needs the ``science`` extra (pandas, matplotlib, hesseflux); a station installs none of it.

The one shape everything here shares, a **period frame** (:func:`collector.science.frame.load`):

- a pandas DataFrame, one row per averaging period, indexed by the period's END time as a
  tz-aware ``DatetimeIndex`` in the site's local STANDARD time (a fixed UTC offset, no daylight
  saving: AmeriFlux's convention), index name ``"TIMESTAMP_END"``;
- float columns with AmeriFlux BASE names (``FC`` [umol m-2 s-1], ``FCH4`` [nmol m-2 s-1], ``LE``,
  ``H`` [W m-2], ``USTAR`` [m s-1], ``FC_SSITC_TEST`` ..., and the met variables averaged over the
  period: ``TA`` [degC], ``RH`` [%], ``VPD`` [hPa], ``PA`` [kPa], ``SW_IN``, ``NETRAD``, ``G``
  [W m-2], ``PPFD_IN`` [umol m-2 s-1], ``P`` [mm, summed], ...); NaN where missing;
- ``attrs``: ``units`` (column -> unit), ``station``, ``site_id``, ``time_zone`` (the IANA name or
  ``UTC+HH:MM``), ``period_s`` (averaging period [s]).

A **diag frame** (:func:`collector.science.frame.load_diag`): one row per diag record, indexed by
record time (local standard time, index name ``"TIME"``), a ``source`` column (instrument name) and
float columns of :data:`fluxedge.common.messages.DIAG_FIELDS` names (``SIGNAL_MEAN`` [%],
``SAMPLES_EXPECTED``, ``SAMPLES_RECEIVED``, ``SAMPLES_MISSING``, ``FLAGGED_SAMPLES``,
``CHECKSUM_ERRORS`` [counts per record interval], ``FLAG_<NAME>`` counts, ...); NaN where a
record lacks a value. Spikes are a flux-frame column: ``VM97_HARD_FLAGS``.
"""
