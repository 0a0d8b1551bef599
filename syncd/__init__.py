"""syncd: social conversations into CRM history."""

__version__ = "0.1.0"
