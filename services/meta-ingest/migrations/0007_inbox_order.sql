-- The inbox (conv.list) is read in order of last activity through an
-- index, instead of sorting all of a tenant's conversations for every
-- page.
--
-- The exact activity time changes with every message, and indexing it
-- would make every thread-row update in ingest_batch() a non-HOT one (0005
-- removed such an index for that reason). Its minute changes at most once
-- a minute per thread, so an index on (tenant_id, activity minute) costs
-- ingest little: an update that stays in the same minute is still HOT.
-- conv.list orders by (minute, time, id), which is the same order as
-- (time, id) since the minute only grows with the time; the index gives
-- the minutes in order, and only the rows of the minutes a page reaches
-- are sorted (incremental sort).

-- The Unix minute of the activity. A generated column needs an immutable
-- expression, and extract(epoch) of a timestamptz is only stable, so it
-- is taken of the UTC wall time, a timestamp: the same number. (A SQL
-- function declared immutable around the timestamptz form is not inlined:
-- pg_stat_statements counted 2,996 plans of it in 3,001 calls.)
ALTER TABLE conversations ADD COLUMN activity_minute bigint
    GENERATED ALWAYS AS (floor(extract(epoch FROM
        coalesce(last_message_at, created_at) AT TIME ZONE 'UTC')
        / 60)::bigint) STORED;

DROP INDEX conversations_tenant;
CREATE INDEX conversations_inbox ON conversations
    (tenant_id, activity_minute DESC) WITH (fillfactor = 70);
