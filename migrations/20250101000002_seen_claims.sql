-- The replay guard's claims, shared by every replica: a delivery being
-- handled is a row with no answer yet, claimed by one handler (claimed_by)
-- until claimed_until. Another copy of the delivery, on any replica, finds
-- the row and waits for the answer; a claim whose claimer died (its lease
-- ran out) is taken over. Recording the answer clears the claim.
ALTER TABLE seen ALTER COLUMN answer DROP NOT NULL;
ALTER TABLE seen ADD COLUMN claimed_by text;
ALTER TABLE seen ADD COLUMN claimed_until timestamptz;
