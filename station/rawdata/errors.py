"""The one exception the raw-data readers raise for bad input."""

from __future__ import annotations

from pathlib import Path


class RawDataError(ValueError):
    """A raw-data or metadata file that cannot be read as described.

    The message always names the file; for metadata problems also the INI section and key, for data
    problems the line (1-based, counted in the file as stored) and the column where they are known.
    The parts are kept as attributes for callers that want to format them differently.
    """

    def __init__(self, path: str | Path, problem: str, *, section: str | None = None, key: str | None = None,
                 line: int | None = None, column: str | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        self.section = section
        self.key = key
        self.line = line
        self.column = column
        where = [self.path]
        if line is not None:
            where.append(f"line {line}")
        if section is not None:
            where.append(f"[{section}]" + (f" {key}" if key is not None else ""))
        elif key is not None:
            where.append(key)
        if column is not None:
            where.append(f"column {column}")
        super().__init__(f"{', '.join(where)}: {problem}")
