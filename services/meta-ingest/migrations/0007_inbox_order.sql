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

-- The Unix minute of a time: as immutable as epoch itself (no time zone
-- enters it), which a generated column needs.
CREATE FUNCTION unix_minute(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT floor(extract(epoch FROM t) / 60)::bigint
$$;

ALTER TABLE conversations ADD COLUMN activity_minute bigint
    GENERATED ALWAYS AS (unix_minute(coalesce(last_message_at, created_at)))
    STORED;

DROP INDEX conversations_tenant;
CREATE INDEX conversations_inbox ON conversations
    (tenant_id, activity_minute DESC) WITH (fillfactor = 70);
