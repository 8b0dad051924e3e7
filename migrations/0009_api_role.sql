-- The API reads the read models through a read-only role, plus the indexes its queries need.
--
-- plyr_api_ro is NOLOGIN: the API's pool switches to it with SET ROLE after connecting (any
-- member or superuser may), so the embedded mode needs no setup. In the scaled mode an
-- operator creates a LOGIN role that is a member of it (or ALTER ROLE plyr_api_ro LOGIN
-- PASSWORD ...) and sets PLYR_API_DATABASE_URL. Roles are cluster-global, hence the guard.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plyr_api_ro') THEN
        CREATE ROLE plyr_api_ro NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created concurrently by a migration of another database on this cluster
END
$$;

GRANT USAGE ON SCHEMA public TO plyr_api_ro;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO plyr_api_ro;
-- Tables added by later migrations (run by the same owner) are readable too.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO plyr_api_ro;

-- /artists/by-handle, /albums/{handle}, /users/{handle}/likes: handles compare lower-cased.
CREATE INDEX IF NOT EXISTS artist_handle_lower_idx ON artist (lower(handle));
-- /tracks/top?period=all_time: the most liked tracks without scanning every track.
CREATE INDEX IF NOT EXISTS track_like_count_idx ON track (like_count DESC, id DESC)
    WHERE like_count > 0;
-- /activity/: each UNION branch reads newest-first.
CREATE INDEX IF NOT EXISTS comment_created_idx ON comment (created_at DESC);
CREATE INDEX IF NOT EXISTS list_created_idx ON list (created_at DESC);
CREATE INDEX IF NOT EXISTS artist_first_seen_idx ON artist (first_seen_at DESC);
