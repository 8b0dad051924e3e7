-- Deleted accounts and their plays (projectors/plays.py, purge_account).
--
-- An account.changed event with status `deleted` (repo topic) purges the plays of that
-- DID, both as the artist of the track played and as a listener (DID listeners), played
-- up to the deletion's time; the DID stays here so a play of it up to that time that
-- arrives later (the plays and repo topics are not ordered against each other, and a
-- rebuild interleaves them differently from the live run) is refused as well. Plays
-- after the deletion time count again (an account that comes back).
CREATE TABLE play_purge (
    did    text        PRIMARY KEY,
    before timestamptz NOT NULL
);
