-- XEP-0268 verbs: an incident row is a report, a request ("please act") or a response
-- ("this is what we did"); `counterpart` is the peer that sent it or that we answered.
ALTER TABLE incidents ADD COLUMN verb TEXT NOT NULL DEFAULT 'report';
ALTER TABLE incidents ADD COLUMN counterpart TEXT;
CREATE INDEX incidents_by_verb ON incidents (verb, seq);
