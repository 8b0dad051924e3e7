-- Network scrobbles (fm.teal.feed.play and fm.teal.alpha.feed.play from any repo) in the
-- plays read model (projectors/plays.py). A matched scrobble is a `play` row with
-- source 'network' and play_id = the scrobble's AT-URI, so deleting the record removes it.
-- Unmatched scrobbles are not stored, only counted here (printed by `plyr-appview status`);
-- the plays projector owns this table, so a plays rebuild recounts it.
CREATE TABLE play_scrobble_counter (
    name  text   PRIMARY KEY,   -- matched, unmatched, removed
    value bigint NOT NULL
);

-- Matching by name: the track's title ignoring case (the artist is checked on the few
-- rows this finds).
CREATE INDEX track_title_lower_idx ON track (lower(title));

GRANT SELECT ON play_scrobble_counter TO plyr_api_ro;
