-- Catalog read models beyond tracks: likes, comments, lists (playlists/albums), albums,
-- profiles. Written by projectors/ (catalog); read by api/. This schema is the contract
-- between the two: the API never imports projectors.

-- Artist: profile fields from fm.plyr.actor.profile and app.bsky.actor.profile.
ALTER TABLE artist
    ADD COLUMN first_seen_at      timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN plyr_profile_rev   text,
    ADD COLUMN bsky_profile_rev   text,
    ADD COLUMN bsky_display_name  text,
    ADD COLUMN bsky_avatar_cid    text,
    ADD COLUMN plyr_avatar_url    text;
-- display_name / avatar_url / bio (from 0002) hold the effective values the API shows:
-- display_name = bsky displayName; avatar_url = plyr avatar or the bsky avatar CDN URL;
-- bio = plyr profile bio.

ALTER TABLE track
    ADD COLUMN like_count    integer NOT NULL DEFAULT 0,
    ADD COLUMN comment_count integer NOT NULL DEFAULT 0,
    ADD COLUMN album_slug    text;   -- slug of the derived album (album.slug), if any

CREATE INDEX track_album_idx ON track (did, album_slug) WHERE album_slug IS NOT NULL;
CREATE INDEX track_file_idx ON track (audio_blob_cid) WHERE audio_blob_cid IS NOT NULL;

-- fm.plyr.like; subject may not be (or never be) in track: no foreign key.
CREATE TABLE "like" (
    uri          text        PRIMARY KEY,
    did          text        NOT NULL,
    rkey         text        NOT NULL,
    cid          text        NOT NULL,
    rev          text        NOT NULL,
    subject_uri  text        NOT NULL,
    subject_cid  text,
    created_at   timestamptz NOT NULL,
    indexed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX like_subject_idx ON "like" (subject_uri, created_at DESC);
CREATE INDEX like_did_idx ON "like" (did, created_at DESC);
CREATE INDEX like_created_idx ON "like" (created_at DESC);

-- fm.plyr.comment
CREATE TABLE comment (
    uri          text        PRIMARY KEY,
    id           bigint      NOT NULL UNIQUE,   -- 53-bit hash of the AT-URI, like track.id
    did          text        NOT NULL,
    rkey         text        NOT NULL,
    cid          text        NOT NULL,
    rev          text        NOT NULL,
    subject_uri  text        NOT NULL,
    text         text        NOT NULL,
    timestamp_ms bigint      NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz,
    indexed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX comment_subject_idx ON comment (subject_uri, timestamp_ms);
CREATE INDEX comment_did_idx ON comment (did, created_at DESC);

-- fm.plyr.list: playlists, albums and "liked" lists, items stored from the record.
CREATE TABLE list (
    uri          text        PRIMARY KEY,
    id           uuid        NOT NULL UNIQUE,   -- uuid5 of the AT-URI (plyr playlist ids are UUIDs)
    did          text        NOT NULL,
    rkey         text        NOT NULL,
    cid          text        NOT NULL,
    rev          text        NOT NULL,
    name         text,
    list_type    text,                          -- album | playlist | liked | other/unknown
    item_count   integer     NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz,
    indexed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX list_did_idx ON list (did, list_type, created_at DESC);

CREATE TABLE list_item (
    list_uri     text    NOT NULL REFERENCES list (uri) ON DELETE CASCADE,
    position     integer NOT NULL,
    subject_uri  text    NOT NULL,
    subject_cid  text,
    PRIMARY KEY (list_uri, position)
);
CREATE INDEX list_item_subject_idx ON list_item (subject_uri);

-- Albums, derived from list records of type album and from the track `album` title.
-- slug is stable per artist (same title → same slug after a rebuild).
CREATE TABLE album (
    did          text        NOT NULL,
    slug         text        NOT NULL,
    id           uuid        NOT NULL UNIQUE,   -- uuid5 of did + slug
    title        text        NOT NULL,
    list_uri     text,                          -- the album list record, when there is one
    image_url    text,
    description  text,
    track_count  integer     NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (did, slug)
);
CREATE INDEX album_title_idx ON album (lower(title));
