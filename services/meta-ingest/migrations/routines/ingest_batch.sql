-- ingest_batch(app, hits, events): stores one batch of webhook hits in
-- one transaction; meta-ingest commits a batch before it answers any of
-- its POSTs (mi_webhook.c).
--
-- The batch (built by mi_webhook.c; rows of types of 0012_ingest_rows.sql):
--   app    our Meta app id, or ''
--   hits   the POSTs, one row each, in order (a hit's "n" is its place)
--   events their normalized events, each naming its hit
-- returns (json):
--   {"announce": "TENANT CONVERSATION MESSAGE KIND CHANNEL\n..."
--                -- the new customer messages, to announce: a line of
--                -- five words each (the ids, the message's kind, the
--                -- channel's kind; no word has a space),
--    "hits":   [{"n", "outcome"}]  -- only those whose outcome it changed
--                                  (stored -> unknown_channel),
--    "people": people stored for the first time}
-- Everything here is idempotent: a redelivered POST changes nothing.
--
-- ingest_batch(batch jsonb) takes the same batch as one document,
-- {"app_id", "hits": [...], "events": [...]} with the fields as members.
--
-- This is a routine (common/src/db_migrate.c): edited in place and
-- applied again when it changes. A change it cannot make alone (a new
-- return type, a new type it uses) goes in a migration, which runs first.
-- Why each part is the way it is: the migrations that changed it, 0002,
-- 0005, 0006, 0008, 0009, 0010, 0011, 0012, 0014, 0015, 0018 and 0019.

-- The events of a batch with their channel (only connected channels):
-- made in 0012_ingest_rows.sql, and a part of this routine since, so that
-- it is edited in place too.
--
-- (*) A time in ms becomes a timestamptz through float8, not numeric:
-- bigint / 1000.0 is numeric, and to_timestamp() takes float8, which
-- PostgreSQL 15 converts from numeric by printing and parsing it. The
-- result is the same for any time below 2^53 ms (the bigint is exact as
-- a float8, and either way the quotient is rounded once); it takes 5 k
-- instructions less per event and hit (tests/bench/ingest_instructions).
CREATE OR REPLACE FUNCTION batch_events(events ingest_event_in[])
RETURNS TABLE (
    hit int, object text, page text, customer text, ts timestamptz,
    type text, standby boolean, mid text, kind text, text text,
    attachments jsonb, payload text, reply_to_mid text, reply_to_story jsonb,
    referral jsonb, app_id text, metadata text, watermark timestamptz,
    mids jsonb, action text, reaction text, emoji text, num_edit int,
    owner text, channel_id uuid, tenant_id uuid, channel_kind text)
LANGUAGE sql STABLE AS $$
    SELECT e.hit, e.object, e.page, e.customer,
           to_timestamp(e.ts_ms::float8 / 1000), e.type,
           coalesce(e.standby, false), e.mid, e.kind, e.text,
           coalesce(e.attachments, '[]'), e.payload, e.reply_to_mid,
           e.reply_to_story, e.referral, e.app_id, e.metadata,
           to_timestamp(e.watermark_ms::float8 / 1000), e.mids, e.action,
           e.reaction, e.emoji, e.num_edit, e.owner,
           c.id, c.tenant_id, c.kind
    FROM unnest(events) e
    JOIN channels c
      ON c.kind = CASE e.object WHEN 'page' THEN 'messenger'
                                 ELSE 'instagram' END
     AND c.external_id = e.page
     AND c.disconnected_at IS NULL
$$;

-- Generic plans only: each call re-planned several of its statements (in
-- auto mode, a statement whose generic plan is estimated dearer than its
-- custom plans is planned again at every call; an array parameter's size
-- is only known to a custom plan). Counted by tests/bench/ingest_instructions:
-- 0.47 M instructions less a call, 15 % of a call of one message, 4 % of
-- one of 18, 1 % of one of 75, and as much with 100,000 conversations
-- stored, where the generic plans were no dearer per message either.
CREATE OR REPLACE FUNCTION ingest_batch(
    app text, hits ingest_hit_in[], events ingest_event_in[]) RETURNS json
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    our_app   text := coalesce(app, '');
    ev        ingest_event[];
    types     text[];
    announce  json;
    new_ch    uuid[];
    new_mid   text[];
    media     uuid[];
    hit_rows  json;
    people    int;
    blocks    bigint[];
    th        ingest_thread[];
    want      int;
    locked    int;
    newc      int[];
    s         record;
    pages     text[];
    connected uuid[];
    tenants   uuid[];
    span_t    uuid[] := '{}';
    span_lo   bigint[] := '{}';
    span_hi   bigint[] := '{}';
    unknown   int[] := '{}';
BEGIN
    -- The events, their types, and their threads, those not stored yet
    -- first (0010_ingest_instructions.sql, 1.).
    WITH e AS MATERIALIZED (SELECT * FROM batch_events(events))
    SELECT ARRAY(SELECT e::ingest_event FROM e),
           ARRAY(SELECT DISTINCT e.type FROM e),
           ARRAY(SELECT ROW(k.channel_id, k.customer, k.tenant_id,
                            k.channel_kind, p.id, v.id,
                            v.thread_owner)::ingest_thread
                   FROM (SELECT DISTINCT e.channel_id, e.customer,
                                e.tenant_id, e.channel_kind
                           FROM e WHERE e.customer IS NOT NULL) k
                   LEFT JOIN participants p
                          ON p.channel_id = k.channel_id
                         AND p.external_id = k.customer
                   LEFT JOIN conversations v
                          ON v.channel_id = k.channel_id
                         AND v.participant_id = p.id
                  ORDER BY v.id NULLS FIRST)
      INTO ev, types, th;
    want := cardinality(th);

    -- People and threads first: everything else hangs off them. Only
    -- those not stored yet go through ON CONFLICT (0006_ingest_overlap.sql,
    -- 1.), and then th is resolved again.
    people := 0;
    IF cardinality(th) > 0 AND th[1].conversation_id IS NULL THEN
        INSERT INTO participants (tenant_id, channel_id, external_id)
        SELECT DISTINCT t.tenant_id, t.channel_id, t.customer
        FROM unnest(th) t
        WHERE t.participant_id IS NULL
        ORDER BY t.channel_id, t.customer
        ON CONFLICT (channel_id, external_id) DO NOTHING;
        GET DIAGNOSTICS people = ROW_COUNT;

        INSERT INTO conversations (tenant_id, channel_id, participant_id)
        SELECT t.tenant_id, t.channel_id, p.id
        FROM unnest(th) t
        JOIN participants p ON p.channel_id = t.channel_id
                           AND p.external_id = t.customer
        WHERE t.conversation_id IS NULL
        ORDER BY t.channel_id, p.id
        ON CONFLICT (channel_id, participant_id) DO NOTHING;

        th := ARRAY(
            SELECT ROW(t.channel_id, t.customer, t.tenant_id,
                       t.channel_kind, p.id, v.id,
                       v.thread_owner)::ingest_thread
              FROM unnest(th) t
              JOIN participants p ON p.channel_id = t.channel_id
                                 AND p.external_id = t.customer
              JOIN conversations v ON v.channel_id = t.channel_id
                                  AND v.participant_id = p.id);
    END IF;

    -- The threads' rows share-locked before anything is written into
    -- them, as a foreign key's check did per message (0011_thread_lock.sql):
    -- a thread deleted since it was resolved fails the batch, and its hits
    -- are tried again alone.
    PERFORM 1 FROM conversations v
     WHERE v.id = ANY (ARRAY(SELECT t.conversation_id FROM unnest(th) t))
     ORDER BY v.id
       FOR KEY SHARE;
    GET DIAGNOSTICS locked = ROW_COUNT;
    IF locked < want THEN
        RAISE EXCEPTION 'a conversation was deleted while its messages were being stored'
              USING ERRCODE = 'foreign_key_violation';
    END IF;

    -- Echoes of our own sends complete the row the sender wrote. One that
    -- overtakes the sender's own record of the send dates the message
    -- from the send, as that record would (mi_sender.c): from when it
    -- was queued, a read receipt the customer gave before it went out
    -- would cover it below.
    IF 'echo' = ANY (types) THEN
        UPDATE messages m
           SET mid = coalesce(m.mid, e.mid),
               state = CASE WHEN m.state IN ('queued', 'sending', 'failed')
                            THEN 'sent' ELSE m.state END,
               sent_at = CASE WHEN m.state IN ('queued', 'sending', 'failed')
                              THEN greatest(m.sent_at, e.ts)
                              ELSE m.sent_at END,
               is_echo = true
          FROM unnest(ev) e
         WHERE e.type = 'echo'
           AND m.id = our_message_id(e.app_id, our_app, e.metadata)
           AND m.channel_id = e.channel_id;
    END IF;

    -- Messages: customers' (in), and echoes of what someone else sent
    -- from Meta's tools (out). A mid seen before is not stored again. An
    -- unsend that overtook its message stores an empty tombstone first,
    -- so the content arriving later is not kept. The sort by mid is also
    -- the order in which two calls insert the same new mids, so that they
    -- cannot deadlock on them (without it, a call of 64 took 1.0 M
    -- instructions less: docs/PERFORMANCE.md).
    WITH rows AS (
        SELECT e.*, t.conversation_id
        FROM unnest(ev) e
        JOIN unnest(th) t ON t.channel_id = e.channel_id
                         AND t.customer = e.customer
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
        -- The threads we own are one array, computed once: as a join
        -- with unnest(th), the generic plan (which cannot know either
        -- side's size) was a nested loop that went through every thread
        -- of the batch for every new message (16.5 k instructions a
        -- message with 16 threads; quadratic in a busy Page's batches).
        INSERT INTO reply_jobs (tenant_id, conversation_id, message_id)
        SELECT i.tenant_id, i.conversation_id, i.id
        FROM ins i
        WHERE i.author = 'customer' AND NOT i.standby
          AND i.kind <> 'referral' AND i.unsent_at IS NULL
          AND i.conversation_id = ANY (ARRAY(
                  SELECT t.conversation_id FROM unnest(th) t
                   WHERE t.thread_owner = 'us'))
    )
    -- What the caller announces, and the keys of all new rows for the
    -- journal's counts. Lines of words, not an object a message: the
    -- objects' keys and the escaping of every character they added cost
    -- 1.16 M instructions more a call of 64 messages (3.7 %). (During a
    -- rolling upgrade, a meta-ingest older than this reads no "new" and
    -- announces nothing: announcements only wake; the jobs are stored.)
    SELECT to_json(coalesce(string_agg(
               i.tenant_id || ' ' || i.conversation_id || ' ' || i.id
                   || ' ' || i.kind || ' ' || k.channel_kind, E'\n')
               FILTER (WHERE i.direction = 'in' AND i.unsent_at IS NULL),
               '')),
           array_agg(i.channel_id), array_agg(i.mid),
           array_agg(i.id) FILTER (WHERE i.kind = 'attachment')
      INTO announce, new_ch, new_mid, media
      FROM ins i
      JOIN unnest(th) k ON k.conversation_id = i.conversation_id;

    -- New attachments get their sizes read (0018_media_sizes.sql). A
    -- statement of its own, run only when there are some: in the one
    -- above, its executor set-up would cost every call.
    IF media IS NOT NULL THEN
        INSERT INTO media_due (message_id) SELECT unnest(media);
    END IF;

    -- The jobs above go by the thread's owner before this batch. When
    -- the batch has handover events, the newest of them up to a message's
    -- time decides instead, if newer than the thread's: a thread passed
    -- to us and the customer's next message often come in one POST. (Not
    -- in the statement above: a subquery there costs every call 80 k
    -- instructions of executor set-up, handover or not.)
    IF 'handover' = ANY (types) AND new_mid IS NOT NULL THEN
        INSERT INTO reply_jobs (tenant_id, conversation_id, message_id)
        SELECT m.tenant_id, m.conversation_id, m.id
          FROM unnest(new_ch, new_mid) AS n(channel_id, mid)
          JOIN messages m ON m.channel_id = n.channel_id AND m.mid = n.mid
          JOIN unnest(th) t ON t.conversation_id = m.conversation_id
          JOIN conversations v ON v.id = m.conversation_id
         WHERE t.thread_owner <> 'us' AND m.author = 'customer'
           AND NOT m.standby AND m.kind <> 'referral'
           AND m.unsent_at IS NULL
           AND (SELECT e.owner FROM unnest(ev) e
                 WHERE e.owner IS NOT NULL AND e.channel_id = t.channel_id
                   AND e.customer = t.customer AND e.ts <= m.sent_at
                   AND e.ts >= coalesce(v.thread_owner_at, '-infinity')
                 ORDER BY e.ts DESC LIMIT 1) = 'us';
    END IF;

    -- A reply from someone else (a person in Meta's inbox, or another
    -- app: meta-webhooks.md §6.3) answers what the customer wrote before
    -- it: the reply jobs of those messages not done yet are cancelled, so
    -- the AI does not answer them again. Only the day before the reply is
    -- looked at: an AI reply cannot go later than that anyway.
    IF 'echo' = ANY (types) THEN
        UPDATE reply_jobs j SET state = 'cancelled', lease_until = NULL
          FROM (SELECT t.conversation_id, max(e.ts) AS at
                  FROM unnest(ev) e
                  JOIN unnest(th) t ON t.channel_id = e.channel_id
                                   AND t.customer = e.customer
                 WHERE e.type = 'echo'
                   AND our_message_id(e.app_id, our_app, e.metadata) IS NULL
                 GROUP BY t.conversation_id) x,
               messages m
         WHERE m.conversation_id = x.conversation_id
           AND m.sent_at <= x.at AND m.sent_at > x.at - interval '1 day'
           AND m.direction = 'in'
           AND j.message_id = m.id AND j.state IN ('pending', 'claimed');
    END IF;

    -- Unsends of messages we had: erase the content, keep the fact.
    -- Nothing is left to answer: the message's reply job, if not done
    -- yet, is cancelled (a claimer completing it learns it was not).
    IF 'unsend' = ANY (types) THEN
        WITH u AS (
            UPDATE messages m
               SET text = NULL, attachments = '[]', payload = NULL,
                   unsent_at = coalesce(m.unsent_at, e.ts)
              FROM unnest(ev) e
             WHERE e.type = 'unsend' AND m.channel_id = e.channel_id
               AND m.mid = e.mid
            RETURNING m.id)
        UPDATE reply_jobs j SET state = 'cancelled', lease_until = NULL
          FROM u
         WHERE j.message_id = u.id AND j.state IN ('pending', 'claimed');
    END IF;

    -- Edits: the highest edit count wins, whatever the arrival order. One
    -- whose message is not stored yet waits for it in early_edits, and is
    -- taken from there with the batch that stores the message
    -- (0015_early_edits.sql).
    IF 'edit' = ANY (types)
       OR (new_mid IS NOT NULL AND EXISTS (SELECT 1 FROM early_edits)) THEN
        WITH w AS (
            DELETE FROM early_edits x
             USING unnest(new_ch, new_mid) AS n(channel_id, mid)
             WHERE x.channel_id = n.channel_id AND x.mid = n.mid
            RETURNING x.channel_id, x.mid, x.participant, x.text,
                      x.edited_at, x.num_edit
        ), e AS (
            SELECT DISTINCT ON (a.channel_id, a.mid) a.*
              FROM (SELECT x.channel_id, x.mid, x.customer AS participant,
                           x.text, x.ts AS edited_at, x.num_edit
                      FROM unnest(ev) x
                     WHERE x.type = 'edit' AND x.mid IS NOT NULL
                    UNION ALL
                    SELECT * FROM w) a
             ORDER BY a.channel_id, a.mid, a.num_edit DESC
        ), u AS (
            UPDATE messages m
               SET text = e.text, edited_at = e.edited_at,
                   edit_count = e.num_edit
              FROM e
             WHERE m.channel_id = e.channel_id AND m.mid = e.mid
               AND m.edit_count < e.num_edit AND m.unsent_at IS NULL)
        INSERT INTO early_edits (channel_id, mid, participant, text,
                                 edited_at, num_edit)
        SELECT e.channel_id, e.mid, e.participant, e.text, e.edited_at,
               e.num_edit
          FROM e
         WHERE e.participant IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM messages m
                            WHERE m.channel_id = e.channel_id
                              AND m.mid = e.mid)
        ON CONFLICT (channel_id, mid) DO UPDATE
           SET text = EXCLUDED.text, edited_at = EXCLUDED.edited_at,
               num_edit = EXCLUDED.num_edit
         WHERE early_edits.num_edit < EXCLUDED.num_edit;
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
    -- taken first, as blocks of 1024 (0009_journal_spans.sql, 1.: the
    -- sequence steps by 1024, and this must agree with it), so that one
    -- span per block and tenant lists them. They are written set of pages
    -- by set of pages (0019_journal_by_page_set.sql), the spans of all
    -- sets after them.
    blocks := ARRAY(SELECT nextval('journal_id_seq')
                      FROM generate_series(1, (coalesce(cardinality(hits), 0)
                                               + 1023) / 1024));
    -- New messages per hit, by its n (its place in hits, from 0). A mid that
    -- several hits of the batch carried (a redelivery arriving with the
    -- original) is new in the first of them only.
    IF new_mid IS NOT NULL THEN
        newc := ARRAY(
            SELECT coalesce(k.c, 0)
              FROM generate_series(0, cardinality(hits) - 1) AS g(i)
              LEFT JOIN (SELECT f.hit, count(*) AS c
                           FROM (SELECT min(e.hit) AS hit
                                   FROM unnest(new_ch, new_mid)
                                        AS x(channel_id, mid)
                                   JOIN unnest(ev) e
                                     ON e.channel_id = x.channel_id
                                    AND e.mid = x.mid
                                  GROUP BY x.channel_id, x.mid) f
                          GROUP BY f.hit) k ON k.hit = g.i
             ORDER BY g.i);
    END IF;
    -- Each set of pages that hits name (a batch's hits mostly name the
    -- same Page): its pages, the tenants that have them connected (by the
    -- index on live channels), and the tenants its hits are listed for.
    FOR s IN SELECT DISTINCT coalesce(x.object, '') AS object,
                    coalesce(x.signature, '') AS signature,
                    coalesce(x.page_ids, '[]') AS page_ids
               FROM unnest(hits) x LOOP
        pages := ARRAY(SELECT jsonb_array_elements_text(s.page_ids::jsonb));
        connected := ARRAY(SELECT DISTINCT c.tenant_id FROM channels c
                            WHERE c.kind = CASE s.object
                                               WHEN 'page' THEN 'messenger'
                                               ELSE 'instagram' END
                              AND c.external_id = ANY (pages)
                              AND c.disconnected_at IS NULL);
        IF s.signature = 'valid' THEN
            tenants := connected;
        ELSE
            tenants := ARRAY(SELECT DISTINCT c.tenant_id FROM channels c
                              WHERE c.external_id = ANY (pages));
        END IF;
        WITH h AS (
            SELECT blocks[(x.i - 1) / 1024 + 1] + (x.i - 1) % 1024 AS id,
                   x.*
            FROM unnest(hits) WITH ORDINALITY AS x(
                     n, received_ms, signature, object, page_ids, entries,
                     events, kinds, bytes, raw, outcome, i)
            WHERE coalesce(x.object, '') = s.object
              AND coalesce(x.signature, '') = s.signature
              AND coalesce(x.page_ids, '[]') = s.page_ids
        ), j AS (
            INSERT INTO journal (id, received_at, signature, object,
                                 page_ids, tenant_ids, entries, events,
                                 kinds, new_messages, outcome, bytes, raw)
            SELECT h.id, to_timestamp(h.received_ms::float8 / 1000), -- (*)
                   h.signature, h.object, pages, tenants,
                   coalesce(h.entries, 0), coalesce(h.events, 0),
                   coalesce(h.kinds, '{}'), coalesce(newc[h.n + 1], 0),
                   CASE WHEN h.outcome = 'stored'
                             AND cardinality(connected) = 0
                        THEN 'unknown_channel' ELSE h.outcome END,
                   h.bytes, decode(h.raw, 'base64')
            FROM h
            RETURNING id
        )
        -- The set's range of ids in each block, for each of its tenants.
        SELECT span_t || array_agg(u.tenant_id), span_lo || array_agg(b.lo),
               span_hi || array_agg(b.hi)
          INTO span_t, span_lo, span_hi
          FROM (SELECT min(j.id) AS lo, max(j.id) AS hi FROM j
                 GROUP BY (j.id - blocks[1]) / 1024) b,
               unnest(tenants) AS u(tenant_id);
        -- Its hits stored for no channel connected: their outcome is
        -- decided here.
        IF cardinality(connected) = 0 THEN
            unknown := unknown || ARRAY(
                SELECT x.n FROM unnest(hits) x
                 WHERE x.outcome = 'stored'
                   AND coalesce(x.object, '') = s.object
                   AND coalesce(x.signature, '') = s.signature
                   AND coalesce(x.page_ids, '[]') = s.page_ids);
        END IF;
    END LOOP;
    -- One span per tenant and block, whatever the sets: the blocks'
    -- starts all agree modulo 1024.
    INSERT INTO journal_spans (tenant_id, first_id, last_id)
    SELECT x.t, min(x.lo), max(x.hi)
      FROM unnest(span_t, span_lo, span_hi) AS x(t, lo, hi)
     GROUP BY x.t, (x.lo - blocks[1]) / 1024;
    hit_rows := '[]';
    IF cardinality(unknown) > 0 THEN
        hit_rows := (SELECT json_agg(json_build_object(
                                'n', u.n, 'outcome', 'unknown_channel'))
                       FROM unnest(unknown) AS u(n));
    END IF;

    -- The threads' rows, in id order (0005_ingest_cost.sql, 5.).
    PERFORM 1 FROM conversations v
     WHERE v.id = ANY (ARRAY(SELECT t.conversation_id FROM unnest(th) t))
     ORDER BY v.id
       FOR NO KEY UPDATE;

    -- Thread state: windows, activity, receipts (watermarks only move
    -- forward), referral context and thread ownership (decided by the
    -- newest event that decides it: 0014_thread_owner_at.sql).
    UPDATE conversations v
       SET last_customer_msg_at = greatest(v.last_customer_msg_at, a.customer_at),
           last_message_at = greatest(v.last_message_at, a.message_at),
           delivered_watermark = greatest(v.delivered_watermark, a.delivered),
           read_watermark = greatest(v.read_watermark, a.read),
           last_referral = coalesce(a.referral, v.last_referral),
           thread_owner = CASE WHEN a.owner_at >= coalesce(
                                   v.thread_owner_at, '-infinity')
                               THEN a.owner ELSE v.thread_owner END,
           thread_owner_at = greatest(v.thread_owner_at, a.owner_at),
           updated_at = now()
      FROM (
        SELECT t.conversation_id,
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
                   FILTER (WHERE e.owner IS NOT NULL))[1] AS owner,
               max(e.ts) FILTER (WHERE e.owner IS NOT NULL) AS owner_at
        FROM unnest(ev) e
        JOIN unnest(th) t ON t.channel_id = e.channel_id
                         AND t.customer = e.customer
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
        GROUP BY t.conversation_id
      ) a
     WHERE v.id = a.conversation_id;

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
        PERFORM apply_watermarks(array_agg(DISTINCT t.conversation_id))
          FROM unnest(ev) e
          JOIN unnest(th) t ON t.channel_id = e.channel_id
                           AND t.customer = e.customer
         WHERE e.type IN ('delivery', 'read', 'echo');
    END IF;

    RETURN json_build_object('announce', announce, 'hits', hit_rows,
                              'people', people);
END;
$$;

-- The batch as one document (above): older callers and SQL by hand.
CREATE OR REPLACE FUNCTION ingest_batch(batch jsonb) RETURNS json
LANGUAGE sql AS $$
    SELECT ingest_batch(batch ->> 'app_id',
        ARRAY(SELECT jsonb_populate_recordset(NULL::ingest_hit_in,
                                              batch -> 'hits')),
        ARRAY(SELECT jsonb_populate_recordset(NULL::ingest_event_in,
                                              batch -> 'events')))
$$;
