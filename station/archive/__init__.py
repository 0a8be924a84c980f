"""The raw archive: period blocks in, EddyPro-readable ``.ghg`` files out.

:mod:`~station.archive.ghgformat` writes the LI-COR ``.ghg`` layout (data, metadata, status),
:mod:`~station.archive.writer` places files in ``raw/YYYY/MM/`` and prunes by age and space.
"""
