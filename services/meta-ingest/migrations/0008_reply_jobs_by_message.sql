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
-- The job's insert also loses its ON CONFLICT (message_id): the message
-- was inserted by the same statement, so it cannot have a job yet, and a
-- speculative insertion writes one more WAL record per row (15.8 -> 14.8
-- per message; 2.75-3.09 ms a call against 2.97-3.84, alternated).
-- ingest_batch() is otherwise the one of 0006_ingest_overlap.sql.
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
-- such DELETE on messages takes their jobs with it. The trigger fires for
-- whoever deletes, so it keeps this schema's search_path.
CREATE FUNCTION messages_take_jobs() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM reply_jobs j USING gone g WHERE j.message_id = g.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER messages_take_jobs AFTER DELETE ON messages
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION messages_take_jobs();

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
        -- the thread (standby) or it only carried ad context. Its message
        -- was inserted just now, so it has no job yet: no ON CONFLICT
        -- (a speculative insertion costs a WAL record more per row).
        INSERT INTO reply_jobs (tenant_id, conversation_id, message_id)
        SELECT i.tenant_id, i.conversation_id, i.id
        FROM ins i
        JOIN conversations v ON v.id = i.conversation_id
        WHERE i.author = 'customer' AND NOT i.standby
          AND i.kind <> 'referral' AND i.unsent_at IS NULL
          AND v.thread_owner = 'us'
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
