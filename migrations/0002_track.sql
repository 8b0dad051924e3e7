-- Tracks projected from fm.plyr.track records.

CREATE TABLE track (
    uri            text        PRIMARY KEY,
    id             bigint      NOT NULL UNIQUE,
    did            text        NOT NULL,
    rkey           text        NOT NULL,
    cid            text        NOT NULL,
    rev            text        NOT NULL,
    title          text        NOT NULL,
    artist         text        NOT NULL,
    file_type      text        NOT NULL,
    album          text,
    duration       integer,
    audio_url      text,
    audio_blob_cid text,
    audio_mime     text,
    audio_size     bigint,
    image_url      text,
    description    text,
    features       jsonb       NOT NULL DEFAULT '[]',
    self_labels    jsonb       NOT NULL DEFAULT '[]',
    support_gate   jsonb,
    created_at     timestamptz NOT NULL,
    indexed_at     timestamptz NOT NULL DEFAULT now(),
    record         jsonb       NOT NULL
);

CREATE INDEX track_created_idx ON track (created_at DESC, id DESC);
CREATE INDEX track_did_created_idx ON track (did, created_at DESC, id DESC);

-- Handles and statuses of the DIDs we index (filled by identity/account events).
CREATE TABLE artist (
    did            text        PRIMARY KEY,
    handle         text,
    display_name   text,
    avatar_url     text,
    bio            text,
    pds_url        text,
    account_status text        NOT NULL DEFAULT 'active',
    updated_at     timestamptz NOT NULL DEFAULT now()
);
