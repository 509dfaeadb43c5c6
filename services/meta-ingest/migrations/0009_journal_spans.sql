-- 1. The journal is listed per tenant through spans of ids, one row per
--    batch and tenant, instead of one row per hit and tenant.
-- 2. uuid_v7() draws one random UUID instead of two.
--
-- 1. journal_by_tenant (0006_ingest_overlap.sql, 4.) gave every hit a heap
-- tuple and an index entry per tenant it is listed for: 2 of the 14.8 WAL
-- records ingest_batch() wrote per stored message. A batch now takes its
-- hits' ids as one block: the sequence steps by 1024, one nextval() per
-- 1024 hits, and its i-th hit gets block + i. Blocks of batches running
-- at once never interleave, so a tenant's hits of a batch lie in one
-- range of ids that holds no other batch's hits: journal_spans
-- (tenant_id, first_id, last_id) names it, first_id and last_id being the
-- tenant's first and last hit of the block. A page of a tenant's hits is
-- read from its newest spans by key (journal_page() below), each giving
-- the hits of its range that list the tenant (tenant_ids). Ids keep
-- growing with the time hits are stored, which the purge relies on; they
-- are no longer dense.
-- pgbench calling ingest_batch() with 18 messages a call (one client, held
-- bench setup, six alternated pairs, pg_stat_statements): WAL records per
-- message 14.78 -> 12.86, WAL bytes per message 1,724-1,787 -> 1,546-1,590.
-- The time per call did not move beyond the noise (2.66-4.06 ms before,
-- 2.66-4.05 after).
-- ingest_batch() is otherwise the one of 0008_reply_jobs_by_message.sql,
-- but for two subqueries kept whole (OFFSET 0) where the planner had
-- flattened them:
-- - the journal statement computes a hit's pages and connected tenants
--   once, not two and three times (that CTE over 20,000 hits: 152-240 ms
--   -> 69-72 ms);
-- - the thread update looks a read's message up only for a read without
--   a watermark; it probed the messages' mid index for every event (the
--   aggregate over 20,000 message events: 75-169 ms -> 26-29 ms).
--
-- 2. uuid_v7() (0006_ingest_overlap.sql) called gen_random_uuid() twice,
-- once for the random bits and once more for the byte that holds the
-- version, since an inlined SQL function cannot name a value twice. Each
-- call reads the CSPRNG, and every stored message takes one id: 9.3-9.7
-- us a call here (100,000 calls). It now edits the text of one v4 UUID:
-- the first 12 hex digits become the time in ms and the version digit
-- becomes 7; the variant bits are already those of a v7. 4.2-6.7 us.

CREATE TABLE journal_spans (
    tenant_id  uuid NOT NULL,
    first_id   bigint NOT NULL,
    last_id    bigint NOT NULL CHECK (last_id >= first_id),
    PRIMARY KEY (tenant_id, first_id)
);

-- Hits stored before this migration are spans of one.
INSERT INTO journal_spans (tenant_id, first_id, last_id)
SELECT tenant_id, journal_id, journal_id FROM journal_by_tenant;

DROP TABLE journal_by_tenant;

ALTER SEQUENCE journal_id_seq INCREMENT BY 1024;

CREATE OR REPLACE FUNCTION uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT overlay(overlay(gen_random_uuid()::text
                           placing overlay(lpad(to_hex(floor(extract(
                                       epoch FROM clock_timestamp()) * 1000
                                   )::bigint), 12, '0')
                                   placing '-' FROM 9 FOR 0)
                           FROM 1 FOR 13)
                   placing '7' FROM 15 FOR 1)::uuid
$$;

-- A page of a tenant's hits older than `before`, newest first: its spans
-- are read newest first, each by its range of the primary key, until
-- `lim` hits are found. Every span holds at least one of the tenant's
-- hits, so no more than `lim` spans are read, and no more hits than the
-- page needs. (One join of the spans to the journal let the planner walk
-- the whole journal backwards instead, which for a tenant with rare hits
-- reads nearly all of it; a lateral read of each of the newest `lim`
-- spans read up to lim * lim hits.)
CREATE FUNCTION journal_page(tenant uuid, before bigint, lim int)
RETURNS SETOF journal LANGUAGE plpgsql STABLE AS $$
DECLARE
    s    record;
    got  int := 0;
    n    int;
BEGIN
    FOR s IN SELECT first_id, last_id FROM journal_spans
              WHERE tenant_id = tenant AND first_id < before
              ORDER BY first_id DESC
    LOOP
        RETURN QUERY SELECT * FROM journal j
                      WHERE j.id BETWEEN s.first_id AND s.last_id
                        AND j.id < before AND tenant = ANY (j.tenant_ids)
                      ORDER BY j.id DESC
                      LIMIT lim - got;
        GET DIAGNOSTICS n = ROW_COUNT;
        got := got + n;
        EXIT WHEN got >= lim;
    END LOOP;
END;
$$;
CREATE OR REPLACE FUNCTION ingest_batch(batch jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    our_app   text := coalesce(batch ->> 'app_id', '');
    ev        ingest_event[];
    types     text[];
    new_rows  jsonb;
    hit_rows  jsonb;
    people    int;
    blocks    bigint[];
BEGIN
    ev := ARRAY(SELECT e::ingest_event FROM batch_events(batch) e);
    types := ARRAY(SELECT DISTINCT e.type FROM unnest(ev) e);

    -- People and threads first: everything else hangs off them.
    -- Only the ones not seen yet go through ON CONFLICT
    -- (0006_ingest_overlap.sql, 1.).
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
    -- names (0006_ingest_overlap.sql, 4.): those with the page connected,
    -- and for a hit whose signature did not verify, any tenant that has
    -- had the page (it is shown to them as unverified). The hits' ids are
    -- taken first, as blocks of 1024 (see above), so that one span per
    -- block and tenant lists them.
    blocks := ARRAY(SELECT nextval('journal_id_seq')
                      FROM generate_series(1, (coalesce(jsonb_array_length(
                               batch -> 'hits'), 0) + 1023) / 1024));
    WITH h AS MATERIALIZED (
        SELECT blocks[(x.i - 1) / 1024 + 1] + (x.i - 1) % 1024 AS id,
               (x.i - 1) / 1024 AS block, x.*
        FROM (SELECT row_number() OVER () AS i, r.*
                FROM jsonb_to_recordset(batch -> 'hits') AS r(
                    n int, received_ms bigint, signature text,
                    object text, page_ids jsonb, entries int, events int,
                    kinds jsonb, bytes int, raw text, outcome text)) x
    ), t AS (
        -- Its pages, the tenants that have them connected (by the index
        -- on live channels), and the tenants it is listed for. OFFSET 0
        -- keeps each subquery whole: flattened into this one, its arrays
        -- were computed again wherever they are named (the pages three
        -- times a hit, the connected tenants twice).
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
                                coalesce(h.page_ids, '[]'))) AS pages
                                 OFFSET 0) p
              OFFSET 0) x
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
        INSERT INTO journal_spans (tenant_id, first_id, last_id)
        SELECT u.tenant_id, min(h.id), max(h.id)
        FROM h JOIN t ON t.n = h.n, unnest(t.tenants) AS u(tenant_id)
        GROUP BY u.tenant_id, h.block
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
        -- A read without a watermark names its message: its time is the
        -- watermark. A lateral subquery kept whole (OFFSET 0), so that the
        -- test of the event's type gates the lookup: as a join's ON
        -- clause it gave every event its own probe of the messages' mid
        -- index, and then dropped what it found.
        LEFT JOIN LATERAL (
            SELECT m.sent_at FROM messages m
             WHERE e.type = 'read' AND e.watermark IS NULL
               AND m.channel_id = e.channel_id AND m.mid = e.mid
            OFFSET 0) rm ON true
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
