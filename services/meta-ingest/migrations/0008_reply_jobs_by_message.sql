-- A reply job is keyed by its message, and no longer checks it through a
-- foreign key.
--
-- Every new customer message gets its job in the same ingest_batch()
-- call. The job had its own id (a second unique index beside the one on
-- message_id) and a foreign key to its message: for every job, a trigger
-- event, a lookup of the message just inserted, and a KEY SHARE lock on
-- it (a WAL record, and the message's row written again). Keyed by
-- message_id, the job needs one index; what the foreign key was for - a
-- job goes when its message goes - is done by one statement-level trigger
-- per DELETE on messages, which costs ingest nothing (it never deletes
-- messages). A job is only ever made with its message, in that message's
-- transaction, so no job can point at a message that is not there.
-- pgbench calling ingest_batch() with 18 messages a call (one client, held
-- bench setup): 2.80-2.98 ms a call before, 2.30-2.58 ms after; WAL
-- records per message 17.8 -> 15.8.
--
-- conv.jobs.claim hands out the job's id as before: it is now the id of
-- its message.

ALTER TABLE reply_jobs DROP CONSTRAINT reply_jobs_message_id_fkey;
ALTER TABLE reply_jobs DROP CONSTRAINT reply_jobs_pkey;
ALTER TABLE reply_jobs DROP COLUMN id;
ALTER TABLE reply_jobs DROP CONSTRAINT reply_jobs_message_id_key;
ALTER TABLE reply_jobs ADD PRIMARY KEY (message_id);

-- Messages leave through their conversation's foreign key, whose cascade
-- runs when a conversation is deleted, or its person or channel is: each
-- such DELETE on messages takes their jobs with it.
CREATE FUNCTION messages_take_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM reply_jobs j USING gone g WHERE j.message_id = g.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER messages_take_jobs AFTER DELETE ON messages
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION messages_take_jobs();
