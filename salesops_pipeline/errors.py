"""Errors the project raises on purpose: each carries a message meant for a person."""


class SalesopsError(Exception):
    """Base class: the command line prints these as one line, without a traceback."""


class SalesDatabaseError(SalesopsError):
    """The sales database is missing, unreadable or lacks what the reports need."""


class SettingError(SalesopsError, ValueError):
    """A setting in the environment or `.env` has a value that cannot be used."""


class InvalidInputError(SalesopsError):
    """A value given by a user (month, agent, file) cannot be used."""
