-- The sizes of received attachments.
--
-- A webhook gives an attachment's type and CDN URL, not its size
-- (meta-webhooks.md §3). ingest_batch() now makes each new message with
-- attachments due for mi_media.c, which reads each URL's size with a HEAD
-- and writes it into the attachment ("size", "mime_type").
--
-- What is due is a table of its own, not columns of messages: a column
-- of messages that an index names (as the claim's order needs) makes
-- every update of it a non-HOT one, so the claim and the result would
-- each have written the message anew with an entry in every index of
-- the table. Here the message is written once, with its sizes. next_at
-- is when a row is due, and the lease of a claim; tries counts the
-- claims. No foreign key (a check per row, as for reply_jobs): a row
-- whose message is gone is dropped by the claim that finds it so.
CREATE TABLE media_due (
    message_id uuid PRIMARY KEY,
    next_at    timestamptz NOT NULL DEFAULT now(),
    tries      smallint NOT NULL DEFAULT 0
);
CREATE INDEX media_due_next ON media_due (next_at);
