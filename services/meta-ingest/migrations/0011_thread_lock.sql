-- A message no longer checks its conversation through a foreign key: its
-- writers share-lock the conversation once per statement instead.
--
-- The foreign key checked every message: a trigger event, a query run
-- through SPI (with its own executor start and end), and a KEY SHARE lock
-- on the conversation's row, per message, although a batch writes into a
-- few conversations only. tests/bench/ingest_instructions, with the key
-- and without it (and with the lock below): 11.26 M -> 10.76 M
-- instructions a call of 18 messages, 37.09 M -> 34.67 M a call of 75
-- (32 k a message). On its cluster, calls of 64 new messages from 16
-- customers, the messages statement took 2.56-2.67 ms a call with the key
-- and 2.08-2.20 ms without (pg_stat_statements, three alternated pairs).
--
-- What the key gave, and what gives it now:
-- 1. No message of a conversation that is gone. The two statements that
--    write messages (ingest_batch(), and conv.send's insert in mi_send.c)
--    take FOR KEY SHARE on their conversations' rows first, as the key's
--    check did: a conversation's DELETE waits for them to commit, and one
--    that committed first leaves them nothing to lock. ingest_batch()
--    then fails the batch (foreign_key_violation, as the key's check
--    did), and its hits are tried again alone, which makes the thread
--    anew; conv.send answers that there is no such conversation. KEY
--    SHARE does not conflict with the FOR NO KEY UPDATE that batches take
--    to update the threads, so two batches still do not wait for each
--    other until then.
-- 2. A conversation's messages leave with it (ON DELETE CASCADE): one
--    statement-level trigger per DELETE on conversations, whoever deletes
--    (conv.delete, or a person's or channel's delete cascading), which
--    ingest never fires. Their reply jobs follow through
--    messages_take_jobs (0008_reply_jobs_by_message.sql).

ALTER TABLE messages DROP CONSTRAINT messages_conversation_id_fkey;

-- The trigger fires for whoever deletes, so it keeps this schema's
-- search_path.
CREATE FUNCTION conversations_take_messages() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM messages m USING gone g WHERE m.conversation_id = g.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER conversations_take_messages AFTER DELETE ON conversations
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION conversations_take_messages();
