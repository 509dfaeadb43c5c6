-- uuid_v7(): a time-ordered UUID (RFC 9562, version 7) for the ids of
-- rows that arrive all the time (messages): the first 48 bits are the
-- time in ms, so new keys land on the right edge of their indexes instead
-- of on a random page (0006_ingest_overlap.sql). The other 74 bits are
-- random: the variant and 70 bits from one gen_random_uuid(), and 4 from
-- random() (an inlined SQL function cannot name a value twice, so the
-- version byte cannot keep the random nibble it had).
--
-- Worked on bytes, not text: 0009_journal_spans.sql edited the text of
-- the UUID, with the time as numeric (extract). This takes 10 k fewer
-- instructions a stored message (tests/bench/ingest_instructions: calls of
-- 18 messages 11.65 M -> 11.48 M, of 75 38.69 M -> 37.96 M).
--
-- A routine (common/src/db_migrate.c): edited in place.

CREATE OR REPLACE FUNCTION uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(set_byte(overlay(uuid_send(gen_random_uuid())
                                   placing substring(int8send(floor(
                                       date_part('epoch', clock_timestamp())
                                       * 1000)::bigint) FROM 3)
                                   FROM 1 FOR 6),
                           6, 112 + floor(random() * 16)::int),
                  'hex')::uuid
$$;
