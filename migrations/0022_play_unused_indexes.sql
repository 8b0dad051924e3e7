-- Two indexes of the plays read model (0013) that no query reads, dropped: each counted
-- play paid for an entry in each (some 4.5 µs of the projector's database CPU apiece,
-- bench/bench_plays.py).
--
-- - play (track_uri, played_at): plays are looked up by id, by listener and track (the
--   qualifier's state, scrobble removal: play_listener_track_idx) and by artist or
--   listener (a purge: play_did_idx, play_listener_track_idx); never by track alone.
-- - play_track_listener_day (did): its rows are found by their key (track, day, listener);
--   an artist's listeners per day are play_artist_listener_day.
DROP INDEX play_track_idx;
DROP INDEX play_track_listener_day_did_idx;
