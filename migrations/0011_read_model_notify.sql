-- Tell the API when a read model changed, so its in-process response caches drop what they
-- hold (api/cache.py LISTENs on the channel `plyr_read_model`).
--
-- Statement-level AFTER triggers (INSERT, UPDATE, DELETE, TRUNCATE) on every table the API
-- reads. The payload is constant, and PostgreSQL folds identical notifications of one
-- transaction into one, so a projector batch touching many rows and tables sends a single
-- notification, delivered when (and only if) the transaction commits.
-- A read model added by a later migration attaches itself with
--   SELECT plyr_watch_read_model('its_table');

CREATE OR REPLACE FUNCTION plyr_read_model_changed() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('plyr_read_model', '');
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION plyr_watch_read_model(tbl regclass) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS plyr_read_model_changed ON %s', tbl);
    EXECUTE format(
        'CREATE TRIGGER plyr_read_model_changed'
        ' AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s'
        ' FOR EACH STATEMENT EXECUTE FUNCTION plyr_read_model_changed()', tbl);
END
$$;

-- Catalog, search and moderation read models; any other read model that already exists
-- (a plays model from a migration numbered before this one) is attached as well.
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY[
        'track', 'artist', 'like', 'comment', 'list', 'list_item', 'album',
        'search_record', 'search_artist', 'search_doc', 'search_album_member', 'search_tag',
        'moderation_label', 'moderation_record', 'moderation_self_label', 'moderation_account'
    ] LOOP
        IF to_regclass(quote_ident(name)) IS NOT NULL THEN
            PERFORM plyr_watch_read_model(quote_ident(name)::regclass);
        END IF;
    END LOOP;
    FOR name IN
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
           AND c.relname LIKE 'play%'
    LOOP
        PERFORM plyr_watch_read_model(quote_ident(name)::regclass);
    END LOOP;
END
$$;
