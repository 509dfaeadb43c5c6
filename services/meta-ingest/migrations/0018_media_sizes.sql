-- The sizes of received attachments.
--
-- A webhook gives an attachment's type and CDN URL, not its size
-- (meta-webhooks.md §3). ingest_batch() now makes each new message with
-- attachments due for mi_media.c (media_next_at = when), which reads each
-- URL's size with a HEAD and writes it into the attachment ("size",
-- "mime_type"), then clears media_next_at. media_next_at also holds the
-- lease of a claim; media_tries counts the claims. The index holds only
-- the messages not done yet, so text messages cost it nothing.
ALTER TABLE messages
    ADD COLUMN media_next_at timestamptz,
    ADD COLUMN media_tries smallint NOT NULL DEFAULT 0;
CREATE INDEX messages_media_due ON messages (media_next_at)
    WHERE media_next_at IS NOT NULL;
