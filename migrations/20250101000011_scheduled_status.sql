-- Scheduled start: a request approved to start later waits in status
-- 'scheduled' until its start time (its due_at). It is unfinished, so the
-- partial indexes of a person's open requests and of unfinished requests by
-- status now include it; the queries repeat the same list.
DROP INDEX requests_open_by_requester;
CREATE INDEX requests_open_by_requester ON requests (requester, created_at)
    WHERE status IN ('pending', 'granting', 'scheduled', 'active', 'revoking', 'needs_attention');
DROP INDEX requests_open_by_status;
CREATE INDEX requests_open_by_status ON requests (status, created_at)
    WHERE status IN ('pending', 'granting', 'scheduled', 'active', 'revoking', 'needs_attention');
