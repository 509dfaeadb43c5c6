-- Throttled tries of an outbound message, apart from its attempts.
--
-- Every try counted against ASHOON_META_SEND_MAX_ATTEMPTS, so a message
-- that Meta throttled six times failed at its first 5xx after, "after 7
-- attempts", although it had never really failed. A throttled answer only
-- asks us to wait: it is counted here, the budget is attempts - throttles,
-- and the backoff still grows with attempts. A resend starts both at 0.
ALTER TABLE messages ADD COLUMN throttles int NOT NULL DEFAULT 0
    CHECK (throttles >= 0);
