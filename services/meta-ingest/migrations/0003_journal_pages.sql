-- The journal is listed per tenant by the tenants its stored events
-- belonged to, and by the pages a rejected POST named (unverified, shown
-- as such): both need an index.
CREATE INDEX journal_pages ON journal USING gin (page_ids);
