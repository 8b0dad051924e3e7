"""Lexicons for plyr records, and validation of records against them.

The lexicon JSON files live in `lexicons/schemas/` (file name = NSID + `.json`): the
`fm.plyr.*` records, the `fm.teal.*` scrobble records plyr writes, `app.bsky.actor.profile`
and the `com.atproto.*` definitions they refer to. `default_registry()` loads them once.

    from lexicons import RecordInvalid, validate_record

    try:
        validate_record("fm.plyr.track", record)
    except RecordInvalid as exc:
        dead_letter(reason=str(exc))  # e.g. "title: must be at most 256 bytes, got 300"

Records that arrive as JSON (Jetstream) first go through `normalize_json_record`, the
data-model rules no lexicon states (no floats, a `$type` is a non-empty string, well-formed
bytes, links and blobs); it raises `ValidationError`.

Exceptions, all from `lexicons.errors`:

    LexiconError                 base class of everything raised here
    ├── LexiconSchemaError       a lexicon document is malformed or has a dangling ref
    ├── UnknownLexicon           no lexicon (or no record lexicon) under that NSID
    └── ValidationError          data does not match its definition (.path, .reason)
        └── RecordInvalid        a record does not match its collection's lexicon (.nsid)
"""

from lexicons.datamodel import normalize_json_record
from lexicons.errors import (
    LexiconError,
    LexiconSchemaError,
    RecordInvalid,
    UnknownLexicon,
    ValidationError,
)
from lexicons.formats import (
    FORMAT_CHECKS,
    is_at_identifier,
    is_at_uri,
    is_cid,
    is_datetime,
    is_did,
    is_handle,
    is_language,
    is_nsid,
    is_record_key,
    is_tid,
    is_uri,
)
from lexicons.registry import LexiconRegistry, default_registry, is_known, record_nsids
from lexicons.schema import Lexicon, parse_lexicon
from lexicons.validate import (
    validate_query_output,
    validate_query_params,
    validate_record,
    validate_value,
)

__all__ = [
    "FORMAT_CHECKS",
    "Lexicon",
    "LexiconError",
    "LexiconRegistry",
    "LexiconSchemaError",
    "RecordInvalid",
    "UnknownLexicon",
    "ValidationError",
    "default_registry",
    "is_at_identifier",
    "is_at_uri",
    "is_cid",
    "is_datetime",
    "is_did",
    "is_handle",
    "is_known",
    "is_language",
    "is_nsid",
    "is_record_key",
    "is_tid",
    "is_uri",
    "normalize_json_record",
    "parse_lexicon",
    "record_nsids",
    "validate_query_output",
    "validate_query_params",
    "validate_record",
    "validate_value",
]
