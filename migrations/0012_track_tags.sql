-- Track tags in the catalog (projectors/track.py), by the one rule of kernel/tags.py
-- (the record's `tags` array: normalised, distinct, at most 10), the same rule the search
-- read model applies to search_tag. This column is what the API serves tags from
-- (/tracks/tags, /tracks/tags/{tag}, ?tags= filters, hidden tags).
-- Tracks projected before this migration get their tags on the next
-- `plyr-appview rebuild catalog` (plyr's own tags never reach the network, so records
-- carry none today).
ALTER TABLE track ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
CREATE INDEX track_tags_idx ON track USING gin (tags);
