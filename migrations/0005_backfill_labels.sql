-- Backfill and resync: what we last published of each repo, and backfill progress.

-- The records of each repo as last published on the log (by backfill, Jetstream or the
-- firehose): a getRepo backfill diffs the repo against these rows to find creates,
-- updates and deletes. Written after the log acknowledged the envelopes.
CREATE TABLE IF NOT EXISTS repo_record (
    did        text NOT NULL,
    collection text NOT NULL,
    rkey       text NOT NULL,
    cid        text NOT NULL,
    rev        text,
    PRIMARY KEY (did, collection, rkey)
);

-- One backfill run per discovery source (a relay or PDS host, or 'dids' for an explicit
-- list). `run` backfills on first start, and again if the last run never finished.
CREATE TABLE IF NOT EXISTS backfill_run (
    source      text        PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    repos       integer     NOT NULL DEFAULT 0,
    done        integer     NOT NULL DEFAULT 0,
    failed      integer     NOT NULL DEFAULT 0,
    records     bigint      NOT NULL DEFAULT 0
);

-- Per-repo outcome of the latest backfill attempt (for `status` and for giving up).
CREATE TABLE IF NOT EXISTS backfill_repo (
    did        text        PRIMARY KEY,
    status     text        NOT NULL,   -- done | failed | skipped
    attempts   integer     NOT NULL DEFAULT 0,
    records    integer     NOT NULL DEFAULT 0,
    last_error text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Labeler cursors live in ingest_cursor (source 'labeler:<did>'), Jetstream's under
-- 'jetstream:<host>' (time_us).
