-- A repo that became known live keeps status 'active' (its sync-1.1 chain is checked as
-- usual) with status_reason 'first_sight' until a getRepo resync has read the records we
-- keep only for known repos (its profile), written before we knew it. The resync worker
-- polls for these; a finished backfill clears the reason.
CREATE INDEX IF NOT EXISTS repo_state_first_sight_idx ON repo_state (updated_at)
    WHERE status = 'active' AND status_reason = 'first_sight';
