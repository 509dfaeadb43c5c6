-- meta-ingest: when a participant's profile may be looked up next.
-- The fetcher claims pending participants whose profile_next_at has come
-- (FOR UPDATE SKIP LOCKED, in created_at order through
-- participants_profile_pending) and moves it forward by a lease in the same
-- statement, so two replicas never fetch one profile at once; after a
-- transient error it holds the retry time (backoff). NULL: due now.
ALTER TABLE participants ADD COLUMN profile_next_at timestamptz;
