-- Per-repo sync state for verified ingest (sync 1.1): the last applied commit's data CID,
-- the account status apart from the sync status, and why a repo was desynchronized.
--   status:          active | backfilling | desynchronized   (our copy of the repo)
--   account_status:  active | deactivated | takendown | suspended | deleted | ...  (the host's word)

ALTER TABLE repo_state
    ADD COLUMN IF NOT EXISTS data_cid       text,
    ADD COLUMN IF NOT EXISTS account_status text,
    ADD COLUMN IF NOT EXISTS status_reason  text;

-- The backfill worker polls for repos that need a (re)sync.
CREATE INDEX IF NOT EXISTS repo_state_status_idx ON repo_state (status) WHERE status <> 'active';

-- Counters a source wants to survive restarts (events in, published, rejected by reason),
-- written with the cursor; `plyr-appview status` reads them.
CREATE TABLE IF NOT EXISTS ingest_counter (
    source     text        NOT NULL,
    name       text        NOT NULL,
    value      bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, name)
);
