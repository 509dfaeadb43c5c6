-- Edits that arrive before their message wait here for it.
--
-- ingest_batch() applied an edit to the message row only: an edit whose
-- message was not stored yet (its POST failed and Meta sent it again
-- later) changed nothing, and the message was then stored with its first
-- text for good, while an unsend that overtakes its message already left
-- a tombstone. Now such an edit is kept here (the highest edit count per
-- message), and applied when its message is stored; one whose message
-- never comes is dropped after two days (Meta stops sending a POST again
-- after 36 hours), and a conversation's delete takes its person's.
CREATE TABLE early_edits (
    channel_id   uuid NOT NULL REFERENCES channels ON DELETE CASCADE,
    mid          text NOT NULL,
    participant  text NOT NULL, -- external id of who edited
    text         text,
    edited_at    timestamptz NOT NULL,
    num_edit     int NOT NULL,
    PRIMARY KEY (channel_id, mid)
);
