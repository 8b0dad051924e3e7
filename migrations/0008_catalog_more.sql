-- Catalog projector support: tombstones for deleted records and accounts, and indexes the
-- batched projector and the recounts need. Additive only (0002/0003 are the API contract).

-- The newest delete seen per record (key = AT-URI) or per deleted account (key = DID,
-- rev = ''): an event whose rev is not newer than the tombstone is ignored, so replays and
-- out-of-order delivery never resurrect what was deleted. Written by projectors/catalog.
CREATE TABLE catalog_tombstone (
    key         text        PRIMARY KEY,
    did         text        NOT NULL,
    rev         text        NOT NULL,
    deleted_at  timestamptz NOT NULL   -- the event's time, not the wall clock
);
CREATE INDEX catalog_tombstone_did_idx ON catalog_tombstone (did);

-- The counts are recomputed per subject: count likes by (subject, liker).
CREATE INDEX like_subject_did_idx ON "like" (subject_uri, did);
