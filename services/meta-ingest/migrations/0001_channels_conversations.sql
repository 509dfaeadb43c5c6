-- meta-ingest: Messenger and Instagram channels, the people who write to
-- them, conversations, messages, reactions, the ingest journal and the
-- durable "needs a reply" jobs. Every row carries its tenant_id, and every
-- query a tenant can reach filters on it.

-- A connected Facebook Page (messenger) or Instagram professional account.
-- Tokens are AES-256-GCM sealed ("v<key version>.<base64url>") with the AAD
-- "meta-ingest/channel/<id>/token" (or ".../app_secret"): never plaintext.
CREATE TABLE channels (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('messenger', 'instagram')),
    external_id         text NOT NULL CHECK (external_id ~ '^[0-9]{1,32}$'),
    login               text NOT NULL DEFAULT 'facebook'
                        CHECK (login IN ('facebook', 'instagram')),
    name                text,
    username            text,
    category            text,
    follower_count      bigint,
    account_type        text,
    token_sealed        text NOT NULL,
    app_secret_sealed   text,
    key_version         int NOT NULL,
    status              text NOT NULL DEFAULT 'ok'
                        CHECK (status IN ('ok', 'needs_reauth', 'rate_limited')),
    status_code         int,
    status_subcode      int,
    status_reason       text,
    status_at           timestamptz NOT NULL DEFAULT now(),
    rate_limited_until  timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    disconnected_at     timestamptz
);
-- One live connection per Page / IG account across all tenants: a webhook
-- entry id must map to exactly one tenant.
CREATE UNIQUE INDEX channels_live ON channels (kind, external_id)
    WHERE disconnected_at IS NULL;
CREATE INDEX channels_tenant ON channels (tenant_id);

-- A customer as seen by one channel (PSID for Messenger, IGSID for
-- Instagram). The profile is fetched once from the Graph API and cached.
CREATE TABLE participants (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           uuid NOT NULL,
    channel_id          uuid NOT NULL REFERENCES channels ON DELETE CASCADE,
    external_id         text NOT NULL,
    name                text,
    username            text,
    profile_pic         text,
    profile_state       text NOT NULL DEFAULT 'pending'
                        CHECK (profile_state IN ('pending', 'fetched',
                                                 'unavailable', 'failed')),
    profile_attempts    int NOT NULL DEFAULT 0,
    profile_fetched_at  timestamptz,
    limited_data_use    boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel_id, external_id)
);
CREATE INDEX participants_profile_pending ON participants (created_at)
    WHERE profile_state = 'pending';

-- One thread per (channel, customer).
CREATE TABLE conversations (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id             uuid NOT NULL,
    channel_id            uuid NOT NULL REFERENCES channels ON DELETE CASCADE,
    participant_id        uuid NOT NULL REFERENCES participants ON DELETE CASCADE,
    status                text NOT NULL DEFAULT 'open'
                          CHECK (status IN ('open', 'pending', 'closed')),
    -- Handover protocol: 'us' when our app is the thread owner, 'other'
    -- while Meta's inbox or another app owns it (we then get standby).
    thread_owner          text NOT NULL DEFAULT 'us'
                          CHECK (thread_owner IN ('us', 'other')),
    last_customer_msg_at  timestamptz, -- opens the 24 h / 7 d windows
    last_message_at       timestamptz,
    -- Receipts arrive in any order, before or after the echo of the
    -- message they cover: the highest watermark wins and is applied to
    -- outbound messages whenever they are stored.
    delivered_watermark   timestamptz,
    read_watermark        timestamptz,
    last_referral         jsonb,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel_id, participant_id)
);
CREATE INDEX conversations_inbox ON conversations
    (tenant_id, last_message_at DESC, id DESC);

-- Inbound messages (direction 'in'), and outbound ones (direction 'out'):
-- ours (queued by conv.send and worked by the sender) and echoes of what a
-- human or another app sent from Meta's own tools.
CREATE TABLE messages (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL,
    channel_id       uuid NOT NULL REFERENCES channels ON DELETE CASCADE,
    conversation_id  uuid NOT NULL REFERENCES conversations ON DELETE CASCADE,
    direction        text NOT NULL CHECK (direction IN ('in', 'out')),
    -- text | attachment | postback | referral | unsupported
    kind             text NOT NULL,
    text             text,
    attachments      jsonb NOT NULL DEFAULT '[]',
    payload          text,  -- quick reply / postback payload
    referral         jsonb,
    mid              text,  -- Meta's message id: the dedupe key
    reply_to_mid     text,
    reply_to_story   jsonb,
    -- customer | ai | agent | meta_inbox (a human in Meta's tools) |
    -- app (another app's send)
    author           text NOT NULL
                     CHECK (author IN ('customer', 'ai', 'agent',
                                       'meta_inbox', 'app')),
    author_ref       text,  -- agent user, or the other app's id
    ai_generated     boolean NOT NULL DEFAULT false,
    is_echo          boolean NOT NULL DEFAULT false,
    standby          boolean NOT NULL DEFAULT false,
    sent_at          timestamptz NOT NULL, -- Meta's timestamp, or enqueue
    created_at       timestamptz NOT NULL DEFAULT now(),
    state            text NOT NULL
                     CHECK (state IN ('received', 'queued', 'sending', 'sent',
                                      'delivered', 'read', 'failed',
                                      'refused')),
    delivered_at     timestamptz,
    read_at          timestamptz,
    edited_at        timestamptz,
    edit_count       int NOT NULL DEFAULT 0,
    unsent_at        timestamptz, -- the customer unsent it: content erased
    -- Outbound work (the sender claims due rows with SKIP LOCKED).
    messaging_type   text,
    tag              text,
    client_id        text,        -- caller's idempotency key
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    lease_until      timestamptz,
    failure_code     int,
    failure_subcode  int,
    failure_reason   text,
    UNIQUE (channel_id, mid),
    UNIQUE (conversation_id, client_id)
);
CREATE INDEX messages_thread ON messages (conversation_id, sent_at, id);
CREATE INDEX messages_outbox ON messages (next_attempt_at)
    WHERE state IN ('queued', 'sending');

-- The latest reaction of one person to one message (by mid, so a reaction
-- that overtakes its message is kept too). Applied only if newer.
CREATE TABLE reactions (
    channel_id    uuid NOT NULL REFERENCES channels ON DELETE CASCADE,
    tenant_id     uuid NOT NULL,
    mid           text NOT NULL,
    participant   text NOT NULL, -- external id of who reacted
    reaction      text,          -- NULL after an unreact
    emoji         text,
    reacted_at    timestamptz NOT NULL,
    PRIMARY KEY (channel_id, mid, participant)
);

-- Every webhook hit, whatever became of it: "did Meta ever call?" has an
-- answer. Kept 90 days. raw holds the body only when it could not be
-- processed (unparseable, or events of a kind we do not know).
CREATE TABLE journal (
    id            bigserial PRIMARY KEY,
    received_at   timestamptz NOT NULL,
    stored_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    signature     text NOT NULL CHECK (signature IN ('valid', 'invalid',
                                                     'missing')),
    object        text,
    page_ids      text[] NOT NULL DEFAULT '{}',
    tenant_ids    uuid[] NOT NULL DEFAULT '{}',
    entries       int NOT NULL DEFAULT 0,
    events        int NOT NULL DEFAULT 0,
    kinds         jsonb NOT NULL DEFAULT '{}', -- {"message": 2, "read": 1}
    new_messages  int NOT NULL DEFAULT 0,
    outcome       text NOT NULL,  -- stored | rejected | unparseable |
                                  -- unknown_channel | failed
    bytes         int NOT NULL,
    raw           bytea
);
CREATE INDEX journal_received ON journal (received_at);
CREATE INDEX journal_tenants ON journal USING gin (tenant_ids);

-- "This inbound message needs a reply": claimed by ai-router through
-- conv.jobs.claim (SKIP LOCKED leases), completed through
-- conv.jobs.complete. Made in the same transaction as the message.
CREATE TABLE reply_jobs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL,
    conversation_id  uuid NOT NULL REFERENCES conversations ON DELETE CASCADE,
    message_id       uuid NOT NULL REFERENCES messages ON DELETE CASCADE,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'claimed', 'done',
                                      'cancelled')),
    attempts         int NOT NULL DEFAULT 0,
    lease_until      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id)
);
CREATE INDEX reply_jobs_due ON reply_jobs (created_at)
    WHERE state IN ('pending', 'claimed');
