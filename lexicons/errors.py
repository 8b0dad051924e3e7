"""The exceptions raised by the `lexicons` package (the tree is in the package docstring)."""

from __future__ import annotations

__all__ = [
    "LexiconError",
    "LexiconSchemaError",
    "RecordInvalid",
    "UnknownLexicon",
    "ValidationError",
]


class LexiconError(Exception):
    """Base class of every error this package raises."""


class LexiconSchemaError(LexiconError):
    """A lexicon document is malformed, or refers to a definition that does not exist."""


class UnknownLexicon(LexiconError):
    """No lexicon (or no definition of the needed kind) is registered under this name."""

    def __init__(self, name: str, detail: str = "unknown lexicon") -> None:
        super().__init__(f"{detail}: {name}")
        self.name = name


class ValidationError(LexiconError):
    """A value does not match its lexicon definition.

    `path` names the offending field (`features[2].did`), `reason` says what is wrong;
    the message is `"<path>: <reason>"`.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class RecordInvalid(ValidationError):
    """A repository record does not match the record lexicon of its collection."""

    def __init__(self, nsid: str, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.nsid = nsid
