-- Two batches stored at once no longer wait for each other from their
-- first statement, new messages and reply jobs get time-ordered ids, two
-- foreign keys that repeated others are gone, and the journal is listed
-- through an index its query can use (docs/PERFORMANCE.md). What changes:
--
-- 1. A participant or thread that exists is no longer offered to INSERT
--    ... ON CONFLICT DO NOTHING. That insert checks the unique index, and
--    when the row's newest version was written by a batch still in flight
--    (every batch updates its threads' rows), it waits for that batch to
--    commit: the second of two batches in flight waited from its first
--    statement, which made the two run one after the other. Only rows not
--    yet seen go through ON CONFLICT now; the threads' rows are locked,
--    as intended, at the end.
-- 2. Messages and reply jobs take UUIDv7 ids (48 bits of Unix time in ms,
--    then random bits, RFC 9562) instead of random v4 ones. A random key
--    lands on any page of its primary key index (and of reply_jobs'
--    message_id index), so once those indexes outgrow the cache every
--    insert reads and dirties a page of its own; time-ordered keys fill
--    the rightmost pages. Measured on a table of 700,000 messages: 20-25%
--    more batches per second. Ids already given out do not change.
-- 3. messages.channel_id and reply_jobs.conversation_id no longer carry a
--    foreign key: each repeated a reference the row already holds through
--    another one (its thread; its message), whose ON DELETE CASCADE covers
--    the same deletes. Each cost a lookup and a KEY SHARE row lock per
--    stored message, the first of them on the channel's row, which every
--    batch of a page locks: at 2,800 POSTs/s their lookups took about 5% of
--    ingest_batch()'s time (pg_stat_statements, track = all).
-- 4. The journal was indexed with GIN on tenant_ids and page_ids, which
--    its listing query (= ANY, and an OR) could not use: a tenant's page
--    of hits was found by walking the whole journal backwards (300 ms at
--    300,000 rows for a tenant with none), while every hit paid for two
--    GIN entries. Now each hit has one row per tenant it is listed for in
--    journal_by_tenant, keyed (tenant_id, journal_id), and tenant_ids
--    holds those tenants, so a purge deletes both by key. A hit whose
--    signature did not verify is listed for the tenants that have had a
--    channel on a page it names, as the listing did before; it is now
--    decided when the hit is stored, not when it is listed.
--    The purge also no longer needs an index on received_at: journal ids
--    are taken as hits are stored, so the oldest hits are the lowest ids,
--    and it deletes from the front of the primary key while they are old.

-- A UUIDv7 (RFC 9562): the Unix time in ms in the first 48 bits, version
-- 7, the rest random (the variant bits of a v4 are those of a v7).
-- A plain SQL expression, so the planner inlines it.
CREATE FUNCTION uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_byte(
            overlay(uuid_send(gen_random_uuid())
                    placing substring(int8send(floor(extract(epoch FROM
                        clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            6, (get_byte(uuid_send(gen_random_uuid()), 6) & 15) | 112),
        'hex')::uuid
$$;

ALTER TABLE messages ALTER COLUMN id SET DEFAULT uuid_v7();
ALTER TABLE reply_jobs ALTER COLUMN id SET DEFAULT uuid_v7();

-- A hit whose signature did not verify is listed for any tenant that has
-- had a channel on a page it names, connected or not (see 4.).
CREATE INDEX channels_external ON channels (external_id);

ALTER TABLE messages DROP CONSTRAINT messages_channel_id_fkey;
ALTER TABLE reply_jobs DROP CONSTRAINT reply_jobs_conversation_id_fkey;

DROP INDEX journal_tenants;
DROP INDEX journal_pages;
DROP INDEX journal_received;

CREATE TABLE journal_by_tenant (
    tenant_id   uuid NOT NULL,
    journal_id  bigint NOT NULL,
    PRIMARY KEY (tenant_id, journal_id)
);

UPDATE journal j
   SET tenant_ids = ARRAY(SELECT j.tenant_ids[i]
                            FROM generate_subscripts(j.tenant_ids, 1) i
                          UNION
                          SELECT c.tenant_id FROM channels c
                           WHERE c.external_id = ANY (j.page_ids))
 WHERE j.signature <> 'valid' AND j.page_ids <> '{}';

INSERT INTO journal_by_tenant (tenant_id, journal_id)
SELECT DISTINCT u.tenant_id, j.id
FROM journal j, unnest(j.tenant_ids) AS u(tenant_id);

CREATE OR REPLACE FUNCTION ingest_batch(batch jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    our_app   text := coalesce(batch ->> 'app_id', '');
    ev        ingest_event[];
    types     text[];
    new_rows  jsonb;
    hit_rows  jsonb;
    people    int;
BEGIN
    ev := ARRAY(SELECT e::ingest_event FROM batch_events(batch) e);
    types := ARRAY(SELECT DISTINCT e.type FROM unnest(ev) e);

    -- People and threads first: everything else hangs off them.
    -- Only the ones not seen yet go through ON CONFLICT (see 1. above).
    INSERT INTO participants (tenant_id, channel_id, external_id)
    SELECT DISTINCT e.tenant_id, e.channel_id, e.customer
    FROM unnest(ev) e
    WHERE e.customer IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM participants p
                       WHERE p.channel_id = e.channel_id
                         AND p.external_id = e.customer)
    ORDER BY e.channel_id, e.customer
    ON CONFLICT (channel_id, external_id) DO NOTHING;
    GET DIAGNOSTICS people = ROW_COUNT;

    INSERT INTO conversations (tenant_id, channel_id, participant_id)
    SELECT DISTINCT e.tenant_id, e.channel_id, p.id
    FROM unnest(ev) e
    JOIN participants p ON p.channel_id = e.channel_id
                       AND p.external_id = e.customer
    WHERE NOT EXISTS (SELECT 1 FROM conversations v
                       WHERE v.channel_id = e.channel_id
                         AND v.participant_id = p.id)
    ORDER BY e.channel_id, p.id
    ON CONFLICT (channel_id, participant_id) DO NOTHING;

    -- Echoes of our own sends complete the row the sender wrote.
    IF 'echo' = ANY (types) THEN
        UPDATE messages m
           SET mid = coalesce(m.mid, e.mid),
               state = CASE WHEN m.state IN ('queued', 'sending', 'failed')
                            THEN 'sent' ELSE m.state END,
               is_echo = true
          FROM unnest(ev) e
         WHERE e.type = 'echo'
           AND m.id = our_message_id(e.app_id, our_app, e.metadata)
           AND m.channel_id = e.channel_id;
    END IF;

    -- Messages: customers' (in), and echoes of what someone else sent
    -- from Meta's tools (out). A mid seen before is not stored again. An
    -- unsend that overtook its message stores an empty tombstone first,
    -- so the content arriving later is not kept.
    WITH rows AS (
        SELECT e.*, v.id AS conversation_id
        FROM unnest(ev) e
        JOIN participants p ON p.channel_id = e.channel_id
                           AND p.external_id = e.customer
        JOIN conversations v ON v.channel_id = e.channel_id
                            AND v.participant_id = p.id
        WHERE e.type IN ('message', 'postback', 'referral', 'unsend')
           OR (e.type = 'echo'
               AND our_message_id(e.app_id, our_app, e.metadata) IS NULL)
    ), ins AS (
        INSERT INTO messages (
            tenant_id, channel_id, conversation_id, direction, kind, text,
            attachments, payload, referral, mid, reply_to_mid,
            reply_to_story, author, author_ref, is_echo, standby, sent_at,
            state, unsent_at)
        SELECT DISTINCT ON (r.channel_id, r.mid)
            r.tenant_id, r.channel_id, r.conversation_id,
            CASE WHEN r.type = 'echo' THEN 'out' ELSE 'in' END,
            CASE WHEN r.type = 'unsend' THEN 'text' ELSE r.kind END,
            CASE WHEN r.type = 'unsend' THEN NULL ELSE r.text END,
            CASE WHEN r.type = 'unsend' THEN '[]' ELSE r.attachments END,
            r.payload, r.referral, r.mid, r.reply_to_mid, r.reply_to_story,
            CASE WHEN r.type <> 'echo' THEN 'customer'
                 WHEN r.app_id IS NULL OR r.app_id = '' THEN 'meta_inbox'
                 ELSE 'app' END,
            CASE WHEN r.type = 'echo' THEN r.app_id END,
            r.type = 'echo', r.standby, r.ts,
            CASE WHEN r.type = 'echo' THEN 'sent' ELSE 'received' END,
            CASE WHEN r.type = 'unsend' THEN r.ts END
        FROM rows r
        ORDER BY r.channel_id, r.mid, (r.type = 'unsend') DESC
        ON CONFLICT (channel_id, mid) DO NOTHING
        RETURNING id, tenant_id, conversation_id, channel_id, direction,
                  kind, author, standby, mid, unsent_at
    ), jobs AS (
        -- A new customer message needs a reply, unless another app owns
        -- the thread (standby) or it only carried ad context.
        INSERT INTO reply_jobs (tenant_id, conversation_id, message_id)
        SELECT i.tenant_id, i.conversation_id, i.id
        FROM ins i
        JOIN conversations v ON v.id = i.conversation_id
        WHERE i.author = 'customer' AND NOT i.standby
          AND i.kind <> 'referral' AND i.unsent_at IS NULL
          AND v.thread_owner = 'us'
        ON CONFLICT (message_id) DO NOTHING
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'tenant_id', i.tenant_id, 'conversation_id', i.conversation_id,
               'message_id', i.id, 'kind', i.kind, 'direction', i.direction,
               'channel', c.kind, 'channel_id', i.channel_id,
               'mid', i.mid, 'unsent', i.unsent_at IS NOT NULL)), '[]')
      INTO new_rows
      FROM ins i JOIN channels c ON c.id = i.channel_id;

    -- Unsends of messages we had: erase the content, keep the fact.
    IF 'unsend' = ANY (types) THEN
        UPDATE messages m
           SET text = NULL, attachments = '[]', payload = NULL,
               unsent_at = coalesce(m.unsent_at, e.ts)
          FROM unnest(ev) e
         WHERE e.type = 'unsend' AND m.channel_id = e.channel_id
           AND m.mid = e.mid;
    END IF;

    -- Edits: the highest edit count wins, whatever the arrival order.
    IF 'edit' = ANY (types) THEN
        UPDATE messages m
           SET text = e.text, edited_at = e.ts, edit_count = e.num_edit
          FROM (SELECT DISTINCT ON (x.channel_id, x.mid) x.*
                  FROM unnest(ev) x
                 WHERE x.type = 'edit'
                 ORDER BY x.channel_id, x.mid, x.num_edit DESC) e
         WHERE m.channel_id = e.channel_id AND m.mid = e.mid
           AND m.edit_count < e.num_edit AND m.unsent_at IS NULL;
    END IF;

    -- Reactions: the newest per (message, person) wins.
    IF 'reaction' = ANY (types) THEN
        INSERT INTO reactions (channel_id, tenant_id, mid, participant,
                               reaction, emoji, reacted_at)
        SELECT DISTINCT ON (e.channel_id, e.mid, e.customer)
               e.channel_id, e.tenant_id, e.mid, e.customer,
               CASE WHEN e.action = 'unreact' THEN NULL ELSE e.reaction END,
               CASE WHEN e.action = 'unreact' THEN NULL ELSE e.emoji END,
               e.ts
        FROM unnest(ev) e
        WHERE e.type = 'reaction' AND e.mid IS NOT NULL
        ORDER BY e.channel_id, e.mid, e.customer, e.ts DESC
        ON CONFLICT (channel_id, mid, participant) DO UPDATE
           SET reaction = EXCLUDED.reaction, emoji = EXCLUDED.emoji,
               reacted_at = EXCLUDED.reacted_at
         WHERE reactions.reacted_at < EXCLUDED.reacted_at;
    END IF;

    -- One journal row per hit, listed for the tenants whose pages it
    -- names (see 4. above): those with the page connected, and for a hit
    -- whose signature did not verify, any tenant that has had the page
    -- (it is shown to them as unverified). Its id is taken first so that
    -- its listing rows can name it.
    WITH h AS MATERIALIZED (
        SELECT nextval('journal_id_seq') AS id, x.*
        FROM jsonb_to_recordset(batch -> 'hits') AS x(
            n int, received_ms bigint, signature text, object text,
            page_ids jsonb, entries int, events int, kinds jsonb,
            bytes int, raw text, outcome text)
    ), t AS (
        -- Its pages, the tenants that have them connected (by the index
        -- on live channels), and the tenants it is listed for.
        SELECT x.n, x.pages, x.connected,
               CASE WHEN x.signature = 'valid' THEN x.connected
                    ELSE ARRAY(SELECT DISTINCT c.tenant_id FROM channels c
                                WHERE c.external_id = ANY (x.pages)) END
                   AS tenants
        FROM (SELECT h.n, h.signature, p.pages,
                     ARRAY(SELECT DISTINCT c.tenant_id FROM channels c
                            WHERE c.kind = CASE h.object
                                               WHEN 'page' THEN 'messenger'
                                               ELSE 'instagram' END
                              AND c.external_id = ANY (p.pages)
                              AND c.disconnected_at IS NULL) AS connected
                FROM h, LATERAL (SELECT ARRAY(
                            SELECT jsonb_array_elements_text(
                                coalesce(h.page_ids, '[]'))) AS pages) p) x
    ), n AS (
        -- New messages per hit (by the mids each hit carried). A mid
        -- that several hits of the batch carried (a redelivery arriving
        -- with the original) is new in the first of them only.
        SELECT f.hit AS n, count(*) AS new_messages
        FROM (SELECT DISTINCT ON (x ->> 'message_id') e.hit
                FROM jsonb_array_elements(new_rows) x
                JOIN unnest(ev) e
                  ON e.channel_id = (x ->> 'channel_id')::uuid
                 AND e.mid = x ->> 'mid'
               ORDER BY x ->> 'message_id', e.hit) f
        GROUP BY f.hit
    ), j AS (
        INSERT INTO journal (id, received_at, signature, object, page_ids,
                             tenant_ids, entries, events, kinds,
                             new_messages, outcome, bytes, raw)
        SELECT h.id, to_timestamp(h.received_ms / 1000.0), h.signature,
               h.object, t.pages, t.tenants, coalesce(h.entries, 0),
               coalesce(h.events, 0), coalesce(h.kinds, '{}'),
               coalesce(n.new_messages, 0),
               CASE WHEN h.outcome = 'stored'
                         AND cardinality(t.connected) = 0
                    THEN 'unknown_channel' ELSE h.outcome END,
               h.bytes, decode(h.raw, 'base64')
        FROM h LEFT JOIN t ON t.n = h.n LEFT JOIN n ON n.n = h.n
    ), l AS (
        INSERT INTO journal_by_tenant (tenant_id, journal_id)
        SELECT u.tenant_id, h.id
        FROM h JOIN t ON t.n = h.n, unnest(t.tenants) AS u(tenant_id)
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'n', h.n,
               'outcome', CASE WHEN h.outcome = 'stored'
                                AND cardinality(t.connected) = 0
                               THEN 'unknown_channel' ELSE h.outcome END,
               'new_messages', coalesce(n.new_messages, 0))), '[]')
      INTO hit_rows
      FROM h LEFT JOIN t ON t.n = h.n LEFT JOIN n ON n.n = h.n;

    -- The threads' rows, in id order (0005_ingest_cost.sql, 5.).
    PERFORM 1 FROM conversations v
     WHERE v.id IN (SELECT v2.id
                      FROM unnest(ev) e
                      JOIN participants p ON p.channel_id = e.channel_id
                                         AND p.external_id = e.customer
                      JOIN conversations v2 ON v2.channel_id = p.channel_id
                                           AND v2.participant_id = p.id)
     ORDER BY v.id
       FOR NO KEY UPDATE;

    -- Thread state: windows, activity, receipts (watermarks only move
    -- forward), referral context and thread ownership.
    UPDATE conversations v
       SET last_customer_msg_at = greatest(v.last_customer_msg_at, a.customer_at),
           last_message_at = greatest(v.last_message_at, a.message_at),
           delivered_watermark = greatest(v.delivered_watermark, a.delivered),
           read_watermark = greatest(v.read_watermark, a.read),
           last_referral = coalesce(a.referral, v.last_referral),
           thread_owner = coalesce(a.owner, v.thread_owner),
           updated_at = now()
      FROM (
        SELECT p.channel_id, p.id AS participant_id,
               max(e.ts) FILTER (WHERE e.type IN ('message', 'postback'))
                   AS customer_at,
               max(e.ts) FILTER (WHERE e.type IN ('message', 'postback',
                                                  'echo')) AS message_at,
               max(e.watermark) FILTER (WHERE e.type = 'delivery')
                   AS delivered,
               max(coalesce(e.watermark, rm.sent_at, e.ts))
                   FILTER (WHERE e.type = 'read') AS read,
               (array_agg(e.referral ORDER BY e.ts DESC)
                   FILTER (WHERE e.referral IS NOT NULL))[1] AS referral,
               (array_agg(e.owner ORDER BY e.ts DESC)
                   FILTER (WHERE e.owner IS NOT NULL))[1] AS owner
        FROM unnest(ev) e
        JOIN participants p ON p.channel_id = e.channel_id
                           AND p.external_id = e.customer
        LEFT JOIN messages rm ON e.type = 'read' AND e.watermark IS NULL
                             AND rm.channel_id = e.channel_id
                             AND rm.mid = e.mid
        GROUP BY p.channel_id, p.id
      ) a
     WHERE v.channel_id = a.channel_id AND v.participant_id = a.participant_id;

    -- Delivery receipts naming mids directly.
    IF 'delivery' = ANY (types) THEN
        UPDATE messages m
           SET state = CASE WHEN m.state IN ('sending', 'sent')
                            THEN 'delivered' ELSE m.state END,
               delivered_at = coalesce(m.delivered_at, e.ts)
          FROM unnest(ev) e,
               jsonb_array_elements_text(coalesce(e.mids, '[]')) AS d(mid)
         WHERE e.type = 'delivery' AND m.channel_id = e.channel_id
           AND m.mid = d.mid AND m.direction = 'out';
    END IF;

    -- Watermarks applied to the outbound messages of the threads whose
    -- watermark moved or that got an outbound row here (covers receipts
    -- that arrived before the echo of their message).
    IF types && ARRAY['delivery', 'read', 'echo'] THEN
        PERFORM apply_watermarks(array_agg(DISTINCT v.id))
          FROM unnest(ev) e
          JOIN participants p ON p.channel_id = e.channel_id
                             AND p.external_id = e.customer
          JOIN conversations v ON v.channel_id = p.channel_id
                              AND v.participant_id = p.id
         WHERE e.type IN ('delivery', 'read', 'echo');
    END IF;

    RETURN jsonb_build_object('new', new_rows, 'hits', hit_rows,
                              'people', people);
END;
$$;
