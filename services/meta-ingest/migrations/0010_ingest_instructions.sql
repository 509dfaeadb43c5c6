-- ingest_batch() does the same work with fewer instructions: 16 % fewer
-- for a call of 18 messages, 18 % fewer for 75.
--
-- Counted by tests/bench/ingest_instructions (callgrind on a single-user
-- backend), which counts the same for the same input whatever else the
-- machine does; wall-clock timings of one call spread by 30 % here. Each
-- call stores new text messages from 16 known customers, in steady state
-- (the first calls and their plans are not counted). Instructions a call:
--
--                            1 message   18 messages   75 messages
--   before (0009)                3.80 M       14.36 M       47.62 M
--   after                        3.13 M       12.13 M       39.17 M
--
-- Where it went, measured by taking statements out one at a time: of the
-- 47.6 M of a 75-message call, building the result's "new" rows took
-- 7.0 M (jsonb_build_object and jsonb_agg, 10 keys a message) and reading
-- them back in the journal statement 2.0 M; and the statements unpacked
-- the whole event array again and again (all 27 columns of every event,
-- 7 times in a call of messages; 3 times now), mostly to join it to
-- participants and conversations.
--
-- 1. People and threads are resolved once, in the statement that unpacks
--    the batch, into an array of ingest_thread (below). The two inserts
--    run only when someone is new (they come first in the array), and the
--    array is resolved again after them. The later statements join the
--    events to that array instead of to the tables, the reply jobs take
--    the thread's owner from it, and the announced rows their channel's
--    kind.
-- 2. The result is json, not jsonb: json_build_object and json_agg write
--    text where the jsonb ones built a tree and copied it again per row.
--    The function is dropped and made again because its type changes.
-- 3. "new" lists only what meta-ingest announces (customers' messages,
--    not unsent), without the fields it did not use (direction, channel
--    id, mid, unsent); the journal statement takes the new messages' keys
--    from two arrays instead of reading them back out of "new". A hit's
--    row in "hits" no longer has new_messages (the journal keeps it; the
--    caller never read it).
--
-- During a rolling upgrade, a meta-ingest older than this migration would
-- announce nothing (it looked for "direction" in "new"): announcements
-- only wake consumers, and the reply jobs they would fetch are stored as
-- before.
--
-- From here on, ingest_batch() lives in routines/ingest_batch.sql, which
-- is applied again whenever it changes (common/src/db_migrate.c),
-- instead of being copied into each migration that changes it. This
-- migration drops the function of 0009_journal_spans.sql (its type
-- changes); the routine, applied after it, makes the new one. It is
-- otherwise the function of 0009.

-- A thread of a batch: the customer's person and conversation, NULL when
-- not stored yet.
CREATE TYPE ingest_thread AS (
    channel_id uuid, customer text, tenant_id uuid, channel_kind text,
    participant_id uuid, conversation_id uuid, thread_owner text);

DROP FUNCTION ingest_batch(jsonb);
