-- Search trigram indexes take new entries directly: no GIN pending list.
--
-- With fastupdate (the default) a GIN index queues new entries in a pending list until
-- VACUUM, or an insert that finds it over gin_pending_list_limit (4 MB), merges them,
-- and every search reads the whole list linearly. After a rebuild or a bulk load the
-- lists held thousands of documents: at 100k tracks /search/ took ~80 ms at the median
-- instead of ~8 ms. Even the smallest limit (64 kB) still cost ~1 ms per search. The
-- search projector writes one event at a time, where a direct insert is a small part of
-- the cost (bulk inserts are 2-3x slower: 120k documents in ~20 s instead of ~7 s).
ALTER INDEX search_doc_track_trgm_idx SET (fastupdate = off);
ALTER INDEX search_doc_artist_trgm_idx SET (fastupdate = off);
ALTER INDEX search_doc_album_trgm_idx SET (fastupdate = off);
ALTER INDEX search_doc_playlist_trgm_idx SET (fastupdate = off);
ALTER INDEX search_doc_alt_trgm_idx SET (fastupdate = off);
ALTER INDEX search_tag_norm_trgm_idx SET (fastupdate = off);
