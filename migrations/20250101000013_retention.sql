-- Retention (ACCESSBOT_RETENTION): finished requests by age, so removing
-- those that ended long ago reads the index, not every request.
CREATE INDEX requests_finished ON requests (created_at)
    WHERE status IN ('revoked', 'denied', 'expired', 'failed', 'cancelled');
