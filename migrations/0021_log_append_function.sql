-- One append to the table-backed log (kernel/log/postgres.py) as one statement.
--
-- An append used to be a transaction of its own statements: BEGIN, an UPDATE of each
-- partition's counter, a COPY of the messages, pg_notify, COMMIT, each a round trip
-- from the API process; for a play report (the API's group commit appends a few dozen
-- at a time, spread over every partition) that was a fifth of the API's CPU per report
-- (bench/bench_plays.py). The function does the same work in one call, which in
-- autocommit is its own transaction, with the same guarantees:
--
-- - offsets are gapless and appear in commit order: each partition's counter row stays
--   locked from its UPDATE until the commit;
-- - concurrent appends cannot deadlock: counters are locked in ascending partition
--   order, as before;
-- - readers wake on commit: the notification on channel `plyr_log` names the topic.
--
-- `partitions[i]` is the partition of message i (`keys[i]`, `vals[i]`); a partition's
-- messages take consecutive offsets in the order given. Returns the first offset given
-- in each partition named, in ascending partition order. A partition without a counter
-- row raises no_data_found (P0002) and appends nothing.
CREATE FUNCTION plyr_log_append(
    log_topic text, partitions integer[], keys bytea[], vals bytea[]
) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    part integer;
    n integer;
    next bigint;
    parts integer[] := '{}';
    firsts bigint[] := '{}';
BEGIN
    FOR part, n IN
        SELECT p, count(*) FROM unnest(partitions) AS p GROUP BY p ORDER BY p
    LOOP
        UPDATE log_partition SET next_offset = next_offset + n
         WHERE topic = log_topic AND partition = part
        RETURNING next_offset INTO next;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'unknown partition %/%', log_topic, part
                USING ERRCODE = 'no_data_found';
        END IF;
        parts := parts || part;
        firsts := firsts || (next - n);
    END LOOP;
    INSERT INTO log_message (topic, partition, "offset", key, value)
    SELECT log_topic, m.p, f.first + m.rank, m.k, m.v
      FROM (SELECT p, k, v, row_number() OVER (PARTITION BY p ORDER BY i) - 1 AS rank
              FROM unnest(partitions, keys, vals) WITH ORDINALITY AS u(p, k, v, i)) AS m
      JOIN unnest(parts, firsts) AS f(p, first) USING (p);
    PERFORM pg_notify('plyr_log', log_topic);
    RETURN firsts;
END
$$;
