-- The search read model (projectors/search.py; queried by api/search.py).
--
-- One row per searchable document in `search_doc` (tracks, artists, albums, playlists),
-- with its text normalised by plyr_search_norm() into stored generated columns, and two
-- indexes per searched column: a trigram GIN (substring, typo tolerance) and a btree with
-- text_pattern_ops (exact match, prefix-as-you-type). Tags live in `search_tag` (records
-- carry no tags today; the type is supported for records that do).
-- Everything here is owned by the `search` projector and rebuilt from the log.

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA public;

-- unaccent() is only STABLE (its dictionary could change); this wrapper pins the
-- dictionary so it can be IMMUTABLE, which generated columns and indexes need.
CREATE OR REPLACE FUNCTION plyr_unaccent(value text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT public.unaccent('public.unaccent'::regdictionary, value) $$;

-- The one normalisation applied to indexed text and to queries alike:
-- accents folded (Beyoncé -> beyonce, Sigur Rós -> sigur ros), lower case, joining
-- punctuation dropped (AC/DC -> acdc, R.E.M. -> rem, Guns N' Roses -> guns n roses),
-- every other punctuation run becomes one space, spaces collapsed and trimmed.
-- Letters of any script (CJK included) are kept as they are.
CREATE OR REPLACE FUNCTION plyr_search_norm(value text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
SELECT btrim(regexp_replace(
    regexp_replace(lower(plyr_unaccent(value)), '[.''`´’‘/]+', '', 'g'),
    '[[:space:]!"#$%&()*+,:;<=>?@\[\\\]^_{|}~¡¿«»“”„‹›–—―‐‑…·•、。「」『』【】（）！？，：；～・-]+',
    ' ', 'g'))
$$;

-- Records the projector has seen, by AT-URI, with the rev of the last event applied:
-- stale or duplicate events (rev <= stored) are skipped, deletes leave a tombstone.
CREATE TABLE search_record (
    uri      text    PRIMARY KEY,
    did      text    NOT NULL,
    rev      text    NOT NULL,
    deleted  boolean NOT NULL DEFAULT false
);
CREATE INDEX search_record_did_idx ON search_record (did);

-- What we know of each artist, from identity events, profiles and track records;
-- the artist document is derived from it.
CREATE TABLE search_artist (
    did               text PRIMARY KEY,
    handle            text,
    bsky_display_name text,
    bsky_avatar_cid   text,
    plyr_avatar_url   text,
    track_artist      text,   -- the `artist` string of the newest track record
    track_rev         text
);

CREATE TABLE search_doc (
    doc_type  text    NOT NULL CHECK (doc_type IN ('track', 'artist', 'album', 'playlist')),
    -- track, playlist: the record AT-URI; artist: the DID; album: DID || ' ' || normalised title
    doc_key   text    NOT NULL,
    did       text    NOT NULL,
    -- the subject the moderation predicate decides on (record URI; the DID for artists;
    -- albums are visible when one of their members is: see search_album_member)
    uri       text,
    item_id   bigint,            -- track: the public integer id
    title     text    NOT NULL,  -- title / name / display name
    alt       text,              -- artists: the handle
    image_url text,
    slug      text,              -- albums: a fallback slug when the catalog has none
    track_count integer NOT NULL DEFAULT 0,
    created_at timestamptz,
    norm      text GENERATED ALWAYS AS (plyr_search_norm(title)) STORED,
    alt_norm  text GENERATED ALWAYS AS (plyr_search_norm(alt)) STORED,
    PRIMARY KEY (doc_type, doc_key)
);
-- One trigram index per type, so a playlist search never wades through track matches.
CREATE INDEX search_doc_track_trgm_idx ON search_doc USING gin (norm gin_trgm_ops)
    WHERE doc_type = 'track';
CREATE INDEX search_doc_artist_trgm_idx ON search_doc USING gin (norm gin_trgm_ops)
    WHERE doc_type = 'artist';
CREATE INDEX search_doc_album_trgm_idx ON search_doc USING gin (norm gin_trgm_ops)
    WHERE doc_type = 'album';
CREATE INDEX search_doc_playlist_trgm_idx ON search_doc USING gin (norm gin_trgm_ops)
    WHERE doc_type = 'playlist';
CREATE INDEX search_doc_norm_prefix_idx ON search_doc (doc_type, norm text_pattern_ops);
CREATE INDEX search_doc_alt_trgm_idx ON search_doc USING gin (alt_norm gin_trgm_ops)
    WHERE alt_norm IS NOT NULL;
CREATE INDEX search_doc_alt_prefix_idx ON search_doc (doc_type, alt_norm text_pattern_ops)
    WHERE alt_norm IS NOT NULL;
CREATE INDEX search_doc_did_idx ON search_doc (did);
CREATE INDEX search_doc_item_idx ON search_doc (item_id) WHERE item_id IS NOT NULL;

-- Where album documents come from: tracks naming the album, album list records.
-- An album document exists while it has members; counts are recomputed from members.
CREATE TABLE search_album_member (
    album_key   text    NOT NULL,
    source_uri  text    NOT NULL,
    did         text    NOT NULL,
    kind        text    NOT NULL CHECK (kind IN ('track', 'list')),
    title       text    NOT NULL,
    item_count  integer NOT NULL DEFAULT 0,
    created_at  timestamptz,
    image_url   text,
    PRIMARY KEY (album_key, source_uri)
);
CREATE INDEX search_album_member_source_idx ON search_album_member (source_uri);

-- Tags per track (from a `tags` array of strings on the record, when present; plyr's
-- own tags are appview-local and never on the network, so this is empty today).
CREATE TABLE search_tag (
    track_uri text NOT NULL,
    did       text NOT NULL,
    tag       text NOT NULL,
    norm      text GENERATED ALWAYS AS (plyr_search_norm(tag)) STORED,
    PRIMARY KEY (track_uri, tag)
);
CREATE INDEX search_tag_norm_trgm_idx ON search_tag USING gin (norm gin_trgm_ops);
CREATE INDEX search_tag_norm_prefix_idx ON search_tag (norm text_pattern_ops);

-- Search skips artists whose account is not active (catalog's artist table): the few
-- inactive ones, indexed apart, are read once per query into a hashed set.
CREATE INDEX IF NOT EXISTS search_inactive_artist_idx ON artist (did)
    WHERE account_status <> 'active';
