"""City supervisory core.

Everything here is protocol- and GUI-free: configuration loading and validation, the columnar tag
database, qualities and samples, the exception tree, and (as other issues land) poll scheduling,
the alarm engine and journal, the server and the CLI::

    tags.yaml ──► scada.config ──► CityConfig ──► TagDatabase ◄── drivers (samples)
    alarms.yaml ─┘                                     │ change events (old, new)
                                                       ├──► alarm engine ──► journal
                                                       ├──► historian
                                                       ├──► fail-safe monitor
                                                       └──► API / HMI consoles

The core imports no Qt and no protocol library (an import-linter contract in pyproject.toml keeps it so).
"""

__version__ = "0.1.0"
