-- The table-backed log (embedded mode), ingest cursors, projector offsets, dead letters.

CREATE TABLE log_partition (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (topic, partition)
);

CREATE TABLE log_message (
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    key         bytea       NOT NULL,
    value       bytea       NOT NULL,
    appended_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);

-- Where a source resumes: saved only after the log acknowledged every earlier event.
CREATE TABLE ingest_cursor (
    source     text        PRIMARY KEY,
    cursor     bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The next offset each projector will read, written in the same transaction as its rows.
CREATE TABLE projector_offset (
    projector   text    NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (projector, topic, partition)
);

CREATE TABLE dead_letter (
    id          bigserial   PRIMARY KEY,
    projector   text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    uri         text,
    reason      text        NOT NULL,
    envelope    jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (projector, topic, partition, "offset")
);

-- What ingest knows of each repo it indexes.
CREATE TABLE repo_state (
    did        text        PRIMARY KEY,
    rev        text,
    handle     text,
    pds_url    text,
    status     text        NOT NULL DEFAULT 'active',
    updated_at timestamptz NOT NULL DEFAULT now()
);
