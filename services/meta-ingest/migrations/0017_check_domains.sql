-- The hot tables' value lists as domains instead of CHECK constraints.
--
-- Postgres parses a table's CHECK constraints from their stored text and
-- plans them again for every statement that writes the table (the
-- executor's ExecConstraints), while a domain's check is read once per
-- backend (the type cache) and only compiled into each statement. For
-- ingest_batch(), which writes messages, reply_jobs, journal and
-- conversations in every call, that is 240 k of 2,507 k instructions a
-- call of one message and 269 k of 8,956 k a call of 18
-- (tests/bench/ingest_instructions; docs/PERFORMANCE.md).
--
-- Without a table rewrite: a column changes to a domain with no
-- constraint yet (the same text, so the rows and indexes stay as they
-- are), its CHECK is dropped in the same statement, and the domain then
-- gets the same condition NOT VALID, which holds for every new value; the
-- rows already stored met it as the table's CHECK. The partial indexes
-- whose predicates name these columns (messages_outbox,
-- messages_awaiting_receipt, reply_jobs_due) are built again, a scan of
-- their tables under this migration's lock; the claim queries still use
-- them (EXPLAIN checked).
CREATE DOMAIN message_direction AS text;
CREATE DOMAIN message_author AS text;
CREATE DOMAIN message_state AS text;
CREATE DOMAIN conversation_status AS text;
CREATE DOMAIN thread_owner_kind AS text;
CREATE DOMAIN hit_signature AS text;
CREATE DOMAIN reply_job_state AS text;

ALTER TABLE messages
    DROP CONSTRAINT messages_direction_check,
    DROP CONSTRAINT messages_author_check,
    DROP CONSTRAINT messages_state_check,
    ALTER COLUMN direction TYPE message_direction,
    ALTER COLUMN author TYPE message_author,
    ALTER COLUMN state TYPE message_state;
ALTER TABLE conversations
    DROP CONSTRAINT conversations_status_check,
    DROP CONSTRAINT conversations_thread_owner_check,
    ALTER COLUMN status TYPE conversation_status,
    ALTER COLUMN thread_owner TYPE thread_owner_kind;
ALTER TABLE journal
    DROP CONSTRAINT journal_signature_check,
    ALTER COLUMN signature TYPE hit_signature;
ALTER TABLE reply_jobs
    DROP CONSTRAINT reply_jobs_state_check,
    ALTER COLUMN state TYPE reply_job_state;

ALTER DOMAIN message_direction ADD CONSTRAINT message_direction_check
    CHECK (VALUE IN ('in', 'out')) NOT VALID;
ALTER DOMAIN message_author ADD CONSTRAINT message_author_check
    CHECK (VALUE IN ('customer', 'ai', 'agent', 'meta_inbox', 'app'))
    NOT VALID;
ALTER DOMAIN message_state ADD CONSTRAINT message_state_check
    CHECK (VALUE IN ('received', 'queued', 'sending', 'sent', 'delivered',
                     'read', 'failed', 'refused')) NOT VALID;
ALTER DOMAIN conversation_status ADD CONSTRAINT conversation_status_check
    CHECK (VALUE IN ('open', 'pending', 'closed')) NOT VALID;
ALTER DOMAIN thread_owner_kind ADD CONSTRAINT thread_owner_kind_check
    CHECK (VALUE IN ('us', 'other')) NOT VALID;
ALTER DOMAIN hit_signature ADD CONSTRAINT hit_signature_check
    CHECK (VALUE IN ('valid', 'invalid', 'missing')) NOT VALID;
ALTER DOMAIN reply_job_state ADD CONSTRAINT reply_job_state_check
    CHECK (VALUE IN ('pending', 'claimed', 'done', 'cancelled')) NOT VALID;
