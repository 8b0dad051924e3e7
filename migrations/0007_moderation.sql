-- The moderation read model (projectors/moderation.py) and the ONE visibility decision
-- every API surface uses (api/moderation.py emits the SQL that calls it).
--
-- Inputs, all from the log: labels from trusted labelers and the operator (topic labels),
-- creator self-labels of fm.plyr.track records and account status (topic repo).
-- Policy (plyr.fm's, reference/plyr-fm.md §6), per context
--   list   = feeds, top, tag pages, radio       search = /search/
--   view   = a page someone navigated to (artist catalogue, album, playlist)
--   detail = a permalink (/tracks/{id})         audio  = the bytes (/audio/{id})
-- * `!takedown` / `!hide` (operator or trusted labeler) on the item or its account:
--   hidden in every context, detail and audio included.
-- * account deactivated / takendown / suspended / deleted: hidden in every context.
-- * `copyright-violation` (labeler or self-label): hidden in list, search and view;
--   the permalink and the audio stay.
-- * adult (`sexual`, `porn`, `nudity`, `graphic-media`): hidden in list and search unless
--   the viewer opted in (adult_ok); shown in view, detail, audio.
-- A label on a DID applies to everything that DID owns. Labels are per source: a
-- negation cancels only its own source's label. Labels whose `exp` has passed are
-- ignored at query time. Unknown contexts are treated like `list` (the strictest).

-- The newest label event per (src, uri, val); a negation is kept as a row with neg = true
-- so an older application arriving late cannot resurrect the label.
CREATE TABLE moderation_label (
    src  text        NOT NULL,
    uri  text        NOT NULL,
    val  text        NOT NULL,
    neg  boolean     NOT NULL DEFAULT false,
    cid  text,
    cts  timestamptz NOT NULL,
    exp  timestamptz,
    PRIMARY KEY (src, uri, val)
);
CREATE INDEX moderation_label_uri_idx ON moderation_label (uri) WHERE NOT neg;

-- Every fm.plyr.track record seen (rev guard, tombstone on delete, image for the blur list).
CREATE TABLE moderation_record (
    uri       text    PRIMARY KEY,
    did       text    NOT NULL,
    rev       text    NOT NULL,
    deleted   boolean NOT NULL DEFAULT false,
    image_url text
);
CREATE INDEX moderation_record_did_idx ON moderation_record (did);

-- Creator self-labels: only records that carry some.
CREATE TABLE moderation_self_label (
    uri  text   PRIMARY KEY,
    did  text   NOT NULL,
    vals text[] NOT NULL
);
CREATE INDEX moderation_self_label_did_idx ON moderation_self_label (did);

-- The host's word on each account (account.changed events, last in log order wins).
CREATE TABLE moderation_account (
    did    text PRIMARY KEY,
    status text NOT NULL
);

CREATE OR REPLACE FUNCTION plyr_adult_labels() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['sexual', 'porn', 'nudity', 'graphic-media']::text[] $$;

-- The subjects (AT-URIs and DIDs) hidden in `context` for a viewer. An inlinable SQL
-- set-returning function: the planner folds it into the caller's query.
CREATE OR REPLACE FUNCTION plyr_hidden(context text, adult_ok boolean)
RETURNS TABLE (subject text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT l.uri FROM moderation_label l
     WHERE NOT l.neg
       AND (l.exp IS NULL OR l.exp > now())
       AND (l.val IN ('!takedown', '!hide')
            OR (l.val = 'copyright-violation' AND context NOT IN ('detail', 'audio'))
            OR (l.val = ANY (plyr_adult_labels()) AND NOT adult_ok
                AND context NOT IN ('view', 'detail', 'audio')))
    UNION ALL
    SELECT s.uri FROM moderation_self_label s
     WHERE ('copyright-violation' = ANY (s.vals) AND context NOT IN ('detail', 'audio'))
        OR (s.vals && plyr_adult_labels() AND NOT adult_ok
            AND context NOT IN ('view', 'detail', 'audio'))
    UNION ALL
    SELECT a.did FROM moderation_account a
     WHERE a.status IN ('deactivated', 'takendown', 'suspended', 'deleted')
$$;

-- The visibility decision for one item: its AT-URI (or DID, for an artist) and owner DID.
-- For single rows (detail, audio); list queries use the NOT EXISTS form from
-- api/moderation.py, which plans as hash anti-joins.
CREATE OR REPLACE FUNCTION plyr_visible(uri text, did text, context text, adult_ok boolean)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT NOT EXISTS (
        SELECT 1 FROM plyr_hidden(context, adult_ok) h
         WHERE h.subject = uri OR h.subject = did)
$$;
