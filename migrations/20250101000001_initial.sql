-- accessbot's PostgreSQL schema, version 1. Every query the bot runs is
-- answered from one of the indexes below; none reads every request.

-- One row per access request. `body` is the whole AccessRequest as JSON (the
-- same document sled stores); the columns beside it are copies the queries
-- and indexes need, written in the same statement as `body`.
CREATE TABLE requests (
    id          text PRIMARY KEY,
    requester   text        NOT NULL,
    runbook_id  text        NOT NULL,
    status      text        NOT NULL,
    created_at  timestamptz NOT NULL,
    body        jsonb       NOT NULL,
    -- The request's next deadline (AccessRequest::next_due); NULL when none.
    due_at      timestamptz,
    -- Due work claimed by a replica until lease_until; cleared by every update.
    lease_owner text,
    lease_until timestamptz
);

-- The timer's queue: unleased deadlines in time order.
CREATE INDEX requests_due ON requests (due_at, id) WHERE due_at IS NOT NULL;
-- Leases in flight, so the earliest moment a lease runs out is one index probe.
CREATE INDEX requests_leased ON requests (lease_until) WHERE lease_until IS NOT NULL;
-- A person's open requests (status, Home tab).
CREATE INDEX requests_open_by_requester ON requests (requester, created_at)
    WHERE status IN ('pending', 'granting', 'active', 'revoking', 'needs_attention');
-- Unfinished requests by status (recovery of interrupted grants and revokes).
CREATE INDEX requests_open_by_status ON requests (status, created_at)
    WHERE status IN ('pending', 'granting', 'active', 'revoking', 'needs_attention');
-- Grants that hold (or are about to hold) access: the revoke's "covering" check.
CREATE INDEX requests_holding ON requests (requester, runbook_id)
    WHERE status IN ('granting', 'active');
-- A person's history, newest first.
CREATE INDEX requests_by_requester ON requests (requester, created_at DESC);

-- Slack messages not yet delivered, delivered per order_key in seq order.
CREATE TABLE outbox (
    seq         bigserial PRIMARY KEY,
    order_key   text        NOT NULL,
    item        jsonb       NOT NULL,
    not_before  timestamptz,
    lease_owner text,
    lease_until timestamptz
);
CREATE INDEX outbox_by_order_key ON outbox (order_key, seq);

-- The hash-chained audit log. `event` is the AuditEvent as JSON, so the
-- timestamp that the hash covers round-trips exactly.
CREATE TABLE audit_log (
    seq   bigint PRIMARY KEY,
    hash  text  NOT NULL,
    event jsonb NOT NULL
);

-- The chain head: one row, locked by every append so the chain has one order
-- across replicas.
CREATE TABLE audit_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    seq      bigint NOT NULL,
    hash     text   NOT NULL
);
INSERT INTO audit_head (only_row, seq, hash) VALUES (true, 0, '');

-- The replay guard: a Slack delivery's signature or event id, and the answer
-- given the first time.
CREATE TABLE seen (
    key     bytea PRIMARY KEY,
    seen_at timestamptz NOT NULL,
    answer  bytea       NOT NULL
);
CREATE INDEX seen_by_time ON seen (seen_at);
