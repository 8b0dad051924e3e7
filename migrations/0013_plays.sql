-- The plays read model (projectors/plays.py), fed by play.reported / play.counted events
-- on the plays topic. Qualification (projectors/plays_qualify.py) decides which reports
-- count; every counted play is a row of `play`, which is also the embedded qualifier's
-- state (the counted windows of each listener and track). Everything else is derived from
-- `play` in the same transaction as the row insert, and only when the insert happened, so
-- a replayed or duplicated event changes nothing.

-- Counted plays, one per play id.
CREATE TABLE play (
    play_id    text        PRIMARY KEY,
    listener   text        NOT NULL,
    track_uri  text        NOT NULL,
    did        text        NOT NULL,             -- the track's artist
    played_at  timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    self_play  boolean     NOT NULL DEFAULT false,
    source     text        NOT NULL
);
-- The qualifier's state lookup: one listener and track, newest first.
CREATE INDEX play_listener_track_idx ON play (listener, track_uri, played_at DESC);
CREATE INDEX play_did_idx ON play (did);
CREATE INDEX play_track_idx ON play (track_uri, played_at);

-- Plays per track per hour (UTC hour buckets); `self_plays` of them by the artist.
CREATE TABLE play_hourly (
    track_uri  text        NOT NULL,
    hour       timestamptz NOT NULL,
    did        text        NOT NULL,
    plays      integer     NOT NULL,
    self_plays integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (track_uri, hour)
);
CREATE INDEX play_hourly_hour_idx ON play_hourly (hour);
CREATE INDEX play_hourly_did_hour_idx ON play_hourly (did, hour);

-- Who listened to a track on a (UTC) day, and to any of an artist's tracks on a day:
-- unique listeners per day are count(*) over these (index-only scans).
CREATE TABLE play_track_listener_day (
    track_uri text NOT NULL,
    day       date NOT NULL,
    listener  text NOT NULL,
    did       text NOT NULL,
    PRIMARY KEY (track_uri, day, listener)
);
CREATE INDEX play_track_listener_day_did_idx ON play_track_listener_day (did);

CREATE TABLE play_artist_listener_day (
    did      text NOT NULL,
    day      date NOT NULL,
    listener text NOT NULL,
    PRIMARY KEY (did, day, listener)
);

-- All-time totals per track and per artist (self-plays included and also counted apart).
CREATE TABLE play_track_total (
    track_uri  text    PRIMARY KEY,
    did        text    NOT NULL,
    plays      bigint  NOT NULL,
    self_plays bigint  NOT NULL DEFAULT 0
);
CREATE INDEX play_track_total_did_idx ON play_track_total (did);

CREATE TABLE play_artist_total (
    did        text   PRIMARY KEY,
    plays      bigint NOT NULL,
    self_plays bigint NOT NULL DEFAULT 0
);

-- Unique listeners per track and per artist per day, for the API.
CREATE VIEW play_track_day AS
    SELECT track_uri, day, count(*) AS listeners
      FROM play_track_listener_day GROUP BY track_uri, day;
CREATE VIEW play_artist_day AS
    SELECT did, day, count(*) AS listeners
      FROM play_artist_listener_day GROUP BY did, day;

GRANT SELECT ON play, play_hourly, play_track_listener_day, play_artist_listener_day,
    play_track_total, play_artist_total, play_track_day, play_artist_day TO plyr_api_ro;

-- Responses show totals only: a change to them drops the API's response caches (0011).
SELECT plyr_watch_read_model('play_track_total');
SELECT plyr_watch_read_model('play_artist_total');
