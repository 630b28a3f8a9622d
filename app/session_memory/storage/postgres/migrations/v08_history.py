"""Migration 8 (released: never edited): session metadata, its labels and the follow trigger."""

from __future__ import annotations

__all__ = ["HISTORY_MIGRATION"]

# Metadata as text on the session (returned as stored); its top-level scalars copied
# into session_labels, keyed by what a filter names so a filter reads only matching
# entries. ON DELETE CASCADE: labels go with their session, whoever deletes it.
# The trigger tells followers on every replica (LISTEN session_memory) that a
# session changed; NOTIFY is sent on commit, so a rolled-back write says nothing.
# NOTIFY serialises commits, so only followed sessions (session_followers, kept by
# each process's listener) are notified; other writes pay one index probe.
# The channel is the database's: the payload names the schema, for deployments
# that share a database.
HISTORY_MIGRATION = """
ALTER TABLE sessions ADD COLUMN metadata TEXT;
CREATE TABLE session_labels (
    tenant  TEXT   NOT NULL,
    key     TEXT   NOT NULL,
    value   TEXT   NOT NULL,
    session BIGINT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    PRIMARY KEY (tenant, key, value, session)
);
CREATE INDEX session_labels_by_session ON session_labels (session);
CREATE UNLOGGED TABLE session_followers (
    tenant      TEXT    NOT NULL,
    session_id  TEXT    NOT NULL,
    backend_pid INTEGER NOT NULL,
    PRIMARY KEY (tenant, session_id, backend_pid)
);
CREATE FUNCTION session_memory_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind text;
    s sessions;
BEGIN
    IF TG_OP = 'DELETE' THEN
        s := OLD;
    ELSE
        s := NEW;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM session_followers f
                   WHERE f.tenant = s.tenant AND f.session_id = s.session_id) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        s := OLD;
        kind := 'clear';
    ELSE
        s := NEW;
        IF TG_OP = 'INSERT' THEN
            kind := 'append';
        ELSIF NEW.last_seq > OLD.last_seq
              AND NEW.item_count - OLD.item_count = NEW.last_seq - OLD.last_seq THEN
            kind := 'append';
        ELSIF NEW.last_seq = OLD.last_seq AND NEW.item_count < OLD.item_count THEN
            kind := 'pop';
        ELSIF NEW.last_seq <> OLD.last_seq OR NEW.item_count <> OLD.item_count THEN
            kind := 'replace';
        ELSE
            RETURN NULL;
        END IF;
    END IF;
    PERFORM pg_notify('session_memory', json_build_array(
        kind, TG_TABLE_SCHEMA, s.tenant, s.session_id,
        CASE WHEN TG_OP = 'DELETE' THEN 0 ELSE s.revision END, s.last_seq)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER sessions_notify AFTER INSERT OR UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION session_memory_notify();
"""
