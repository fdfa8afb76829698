"""Domain exceptions.

Every boundary (CSV import, CLI, HTTP API, model files) raises one of these with a message that names the row,
column or field and what was expected; the CLI and the web app translate them once into an exit code or a 4xx.
"""


class ElectivesError(Exception):
    """Base class for every error a user can cause and fix.

    ``field`` names the input at fault where the library knows it (e.g. ``student_id``), so a front end can point
    at it without reading the message; None otherwise.
    """

    field: str | None = None


class ScaleError(ElectivesError):
    """A grade scale is unknown or its definition is invalid."""


class DataError(ElectivesError):
    """An input file (grade export, catalogue, pairs file) cannot be used."""


class StorageError(ElectivesError):
    """The database cannot be opened or written."""


class ModelError(ElectivesError):
    """A model artifact is missing, corrupt, or of an unsupported format."""
