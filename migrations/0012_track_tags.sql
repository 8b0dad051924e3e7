-- Track tags in the catalog (projectors/track.py), by the one rule of kernel/tags.py
-- (the record's `tags` array: normalised, distinct, at most 10), the same rule the search
-- read model applies to search_tag. This column is what the API serves tags from
-- (/tracks/tags, /tracks/tags/{tag}, ?tags= filters, hidden tags).
-- Tracks projected before this migration get their tags on the next
-- `plyr-appview rebuild catalog` (plyr's own tags never reach the network, so records
-- carry none today).
ALTER TABLE track ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
CREATE INDEX track_tags_idx ON track USING gin (tags);

-- Search and moderation guard their records with projectors.records.RecordTable, as the
-- catalog does: a row per live record (the newest rev) and a tombstone per deleted one,
-- each projector in its own tombstone table so it rebuilds alone. Deleted rows of the old
-- guards (deleted = true) become tombstones; the `deleted` columns stay, always false,
-- for readers written against 0006/0007.
CREATE TABLE search_tombstone (
    key         text        PRIMARY KEY,
    did         text        NOT NULL,
    rev         text        NOT NULL,
    deleted_at  timestamptz NOT NULL
);
CREATE INDEX search_tombstone_did_idx ON search_tombstone (did);
INSERT INTO search_tombstone (key, did, rev, deleted_at)
    SELECT uri, did, rev, now() FROM search_record WHERE deleted;
DELETE FROM search_record WHERE deleted;

CREATE TABLE moderation_tombstone (
    key         text        PRIMARY KEY,
    did         text        NOT NULL,
    rev         text        NOT NULL,
    deleted_at  timestamptz NOT NULL
);
CREATE INDEX moderation_tombstone_did_idx ON moderation_tombstone (did);
INSERT INTO moderation_tombstone (key, did, rev, deleted_at)
    SELECT uri, did, rev, now() FROM moderation_record WHERE deleted;
DELETE FROM moderation_record WHERE deleted;

-- Search derives an artist's albums with the catalog's rule (projectors.album.derive), which
-- needs each album list's items; lists projected before this migration get them on the next
-- `plyr-appview rebuild search`.
ALTER TABLE search_album_member ADD COLUMN items text[] NOT NULL DEFAULT '{}';
CREATE INDEX search_album_member_did_idx ON search_album_member (did);
