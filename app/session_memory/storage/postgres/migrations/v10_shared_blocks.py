"""Migration 10: the blocks the write functions shared, as helper functions.

Migrations 7 and 9 spelled out in each write function the same opening (a keyed
retry's replay, then the purge of an expired session), the same revision check, the
same tenant session limit, the same creation of a session, the same renewal of a
written session (counts, revision, time-to-live, expiry) and the same keeping of an
append's result for retries. Here each becomes one function, and the write
functions are redefined (``CREATE OR REPLACE``, same signatures and results) to call
them. The store's own statements use ``session_memory_now_us`` and
``session_memory_expiry`` too, so a revision and an expiry are computed in one place.

The helpers that touch tables are PL/pgSQL, whose plans are cached per connection;
the pure expressions are SQL functions, which the planner inlines.
"""

from __future__ import annotations

__all__ = ["SHARED_BLOCKS"]

_HELPERS = """
-- A revision as ``records.revision_at`` computes it: the clock in microseconds.
CREATE FUNCTION session_memory_now_us() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
$$;

-- When a session written at p_at expires: p_ttl seconds later, or never (NULL) when
-- p_ttl is 0 or NULL.
CREATE FUNCTION session_memory_expiry(p_ttl float8, p_at timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_ttl > 0 THEN p_at + make_interval(secs => p_ttl) END
$$;

-- Whether a write expecting revision p_expected (NULL: any; -1: the session must
-- exist; 0: it must not) is refused by a session at p_revision (0: no session).
CREATE FUNCTION session_memory_stale(p_expected bigint, p_revision bigint) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_expected IS NOT NULL
       AND CASE WHEN p_expected = -1 THEN p_revision = 0 ELSE p_revision <> p_expected END
$$;

-- How every keyed write starts: r_status 'inflight', 'mismatch' or 'replay' (with
-- r_replay) when the key says so; else (NULL) the session is purged if it has
-- expired, so the write starts it afresh.
CREATE FUNCTION session_memory_begin(
    p_tenant text, p_session text, p_key text, p_fingerprint text, p_inline bigint,
    OUT r_status text, OUT r_replay text
) LANGUAGE plpgsql AS $$
BEGIN
    IF p_key IS NOT NULL THEN
        SELECT * INTO r_status, r_replay
        FROM session_memory_replay(p_tenant, p_key, p_fingerprint);
        IF r_status IS NOT NULL THEN
            RETURN;
        END IF;
    END IF;
    PERFORM session_memory_purge(p_tenant, p_session, p_inline);
END
$$;

-- Whether a new session would pass its tenant's session limit (0: none).
CREATE FUNCTION session_memory_tenant_full(p_tenant text, p_max_sessions bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_live bigint;
BEGIN
    IF coalesce(p_max_sessions, 0) <= 0 THEN
        RETURN false;
    END IF;
    -- New sessions of a tenant queue here, so two cannot take the last place; the
    -- count, a statement of its own, sees every session committed while this waited.
    PERFORM pg_advisory_xact_lock(hashtextextended(p_tenant, 1));
    SELECT count(*) INTO v_live FROM sessions WHERE tenant = p_tenant
    AND (expires_at IS NULL OR expires_at > now());
    RETURN v_live >= p_max_sessions;
END
$$;

-- A new session holding seqs 1..p_count (r_id NULL when another writer created it
-- meanwhile). Its revision is above its tenant's floor, so an ETag never repeats.
CREATE FUNCTION session_memory_create(
    p_tenant text, p_session text, p_count bigint, p_ttl float8, p_default_ttl float8,
    p_metadata text, p_now_us bigint, OUT r_id bigint, OUT r_revision bigint
) LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sessions (tenant, session_id, created_at, updated_at, item_count, last_seq,
                          revision, ttl_seconds, expires_at, metadata)
    VALUES (p_tenant, p_session, now(), now(), p_count, p_count,
            greatest(p_now_us, coalesce((SELECT revision FROM revision_floors
                                         WHERE tenant = p_tenant), 0) + 1),
            p_ttl, session_memory_expiry(coalesce(p_ttl, p_default_ttl), now()), p_metadata)
    ON CONFLICT (tenant, session_id) DO NOTHING
    RETURNING id, revision INTO r_id, r_revision;
END
$$;

-- A write to session p_id, whose row the caller has locked: its item count moves by
-- p_items and its last seq by p_seqs, its revision and time move on, and its expiry
-- is renewed (p_ttl, when given, becomes its own time-to-live).
CREATE FUNCTION session_memory_renew(
    p_id bigint, p_items bigint, p_seqs bigint, p_ttl float8, p_default_ttl float8,
    p_now_us bigint, OUT r_last bigint, OUT r_revision bigint
) LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sessions SET
        item_count = item_count + p_items,
        last_seq = last_seq + p_seqs,
        updated_at = clock_timestamp(),
        revision = greatest(revision + 1, p_now_us),
        ttl_seconds = coalesce(p_ttl, ttl_seconds),
        expires_at = session_memory_expiry(coalesce(p_ttl, ttl_seconds, p_default_ttl),
                                           clock_timestamp())
    WHERE id = p_id
    RETURNING last_seq, revision INTO r_last, r_revision;
END
$$;

-- A keyed append, replace or fork keeps its result, as ``records.encode_append``
-- writes it, for the key's retries; without a key, nothing.
CREATE FUNCTION session_memory_record_append(
    p_tenant text, p_key text, p_fingerprint text, p_key_ttl float8, p_session text,
    p_count bigint, p_first bigint, p_last bigint, p_revision bigint
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_key IS NOT NULL THEN
        PERFORM session_memory_record(
            p_tenant, p_key, p_fingerprint,
            json_build_array(p_count, p_first, p_last, p_revision)::text, p_key_ttl,
            p_session, false);
    END IF;
END
$$;
"""

# Statuses as migration 7 says: ok, replay (r_replay), inflight, mismatch,
# precondition (r_revision: the session's), full (r_held, r_kept), sessions.
_APPEND = """
CREATE OR REPLACE FUNCTION session_memory_append(
    p_tenant text, p_session text, p_items text[], p_max_items bigint, p_max_sessions bigint,
    p_key text, p_fingerprint text, p_key_ttl float8, p_expected bigint, p_ttl float8,
    p_default_ttl float8, p_inline bigint,
    OUT r_status text, OUT r_first bigint, OUT r_last bigint, OUT r_revision bigint,
    OUT r_held bigint, OUT r_kept bigint, OUT r_replay text
) LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint := cardinality(p_items);
    v_now_us bigint := session_memory_now_us();
    v_id bigint;
BEGIN
    SELECT * INTO r_status, r_replay
    FROM session_memory_begin(p_tenant, p_session, p_key, p_fingerprint, p_inline);
    IF r_status IS NOT NULL THEN
        RETURN;
    END IF;
    LOOP
        -- The row lock queues concurrent writers of this session: contiguous seqs.
        SELECT id, item_count, kept_items, revision INTO v_id, r_held, r_kept, r_revision
        FROM sessions WHERE tenant = p_tenant AND session_id = p_session FOR UPDATE;
        IF NOT FOUND THEN
            r_held := 0;
            r_kept := 0;
            r_revision := 0;
        END IF;
        IF session_memory_stale(p_expected, r_revision) THEN
            r_status := 'precondition';
            RETURN;
        END IF;
        IF p_max_items IS NOT NULL AND r_held + r_kept + v_count > p_max_items THEN
            r_status := 'full';
            RETURN;
        END IF;
        IF v_id IS NOT NULL THEN
            SELECT * INTO r_last, r_revision
            FROM session_memory_renew(v_id, v_count, v_count, p_ttl, p_default_ttl, v_now_us);
            EXIT;
        END IF;
        IF session_memory_tenant_full(p_tenant, p_max_sessions) THEN
            r_status := 'sessions';
            RETURN;
        END IF;
        SELECT * INTO v_id, r_revision FROM session_memory_create(
            p_tenant, p_session, v_count, p_ttl, p_default_ttl, NULL, v_now_us);
        r_last := v_count;
        EXIT WHEN v_id IS NOT NULL;
        -- Another writer created the session meanwhile: lock it and start over.
    END LOOP;
    r_first := r_last - v_count + 1;
    INSERT INTO items (session, seq, body)
    SELECT v_id, r_first + ordinality - 1, body
    FROM unnest(p_items) WITH ORDINALITY AS batch(body, ordinality);
    PERFORM session_memory_record_append(
        p_tenant, p_key, p_fingerprint, p_key_ttl, p_session,
        v_count, r_first, r_last, r_revision);
    r_status := 'ok';
END
$$;
"""

# Statuses: ok (r_item: the popped item, NULL when empty), replay, inflight, mismatch,
# precondition (r_revision).
_POP_AND_CLEAR = """
CREATE OR REPLACE FUNCTION session_memory_pop(
    p_tenant text, p_session text, p_key text, p_fingerprint text, p_key_ttl float8,
    p_expected bigint, p_default_ttl float8, p_inline bigint,
    OUT r_status text, OUT r_item text, OUT r_revision bigint, OUT r_replay text
) LANGUAGE plpgsql AS $$
DECLARE
    v_now_us bigint := session_memory_now_us();
    v_id bigint;
BEGIN
    SELECT * INTO r_status, r_replay
    FROM session_memory_begin(p_tenant, p_session, p_key, p_fingerprint, p_inline);
    IF r_status IS NOT NULL THEN
        RETURN;
    END IF;
    -- Lock first, in its own statement: the next one sees every pop and append
    -- committed while this waited, so each item goes to one popper.
    SELECT id, revision INTO v_id, r_revision
    FROM sessions WHERE tenant = p_tenant AND session_id = p_session FOR UPDATE;
    r_revision := coalesce(r_revision, 0);
    IF session_memory_stale(p_expected, r_revision) THEN
        r_status := 'precondition';
        RETURN;
    END IF;
    IF v_id IS NOT NULL THEN
        DELETE FROM items
        WHERE session = v_id AND seq = (SELECT max(seq) FROM items WHERE session = v_id)
        RETURNING body INTO r_item;
        IF FOUND THEN
            PERFORM session_memory_renew(v_id, -1, 0, NULL, p_default_ttl, v_now_us);
        END IF;
    END IF;
    IF p_key IS NOT NULL THEN
        PERFORM session_memory_record(
            p_tenant, p_key, p_fingerprint,
            CASE WHEN r_item IS NULL THEN '[]' ELSE json_build_array(r_item)::text END,
            p_key_ttl, p_session, r_item IS NOT NULL);
    END IF;
    r_status := 'ok';
END
$$;

-- Status: ok, precondition (r_revision).
CREATE OR REPLACE FUNCTION session_memory_clear(
    p_tenant text, p_session text, p_expected bigint, p_inline bigint,
    OUT r_status text, OUT r_revision bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint; v_items bigint;
BEGIN
    PERFORM session_memory_purge(p_tenant, p_session, p_inline);
    IF p_expected IS NOT NULL THEN
        SELECT revision INTO r_revision
        FROM sessions WHERE tenant = p_tenant AND session_id = p_session FOR UPDATE;
        r_revision := coalesce(r_revision, 0);
        IF session_memory_stale(p_expected, r_revision) THEN
            r_status := 'precondition';
            RETURN;
        END IF;
    END IF;
    DELETE FROM sessions WHERE tenant = p_tenant AND session_id = p_session
    RETURNING id, revision, item_count INTO v_id, r_revision, v_items;
    IF FOUND THEN
        -- A statement of its own: it sees items an append committed while we waited.
        PERFORM session_memory_forget(v_id, p_tenant, p_session, r_revision, v_items, p_inline);
    END IF;
    r_status := 'ok';
END
$$;
"""

# Statuses as migration 9 says: ok, replay (r_replay), inflight, mismatch,
# precondition (r_revision), full (r_held: items left after the replace, r_kept),
# sessions.
_REPLACE = """
CREATE OR REPLACE FUNCTION session_memory_replace(
    p_tenant text, p_session text, p_items text[], p_from bigint, p_max_items bigint,
    p_max_sessions bigint, p_key text, p_fingerprint text, p_key_ttl float8,
    p_expected bigint, p_ttl float8, p_default_ttl float8, p_inline bigint,
    OUT r_status text, OUT r_first bigint, OUT r_last bigint, OUT r_revision bigint,
    OUT r_held bigint, OUT r_kept bigint, OUT r_replay text
) LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint := cardinality(p_items);
    v_now_us bigint := session_memory_now_us();
    v_id bigint;
    v_last bigint;
    v_removed bigint;
BEGIN
    SELECT * INTO r_status, r_replay
    FROM session_memory_begin(p_tenant, p_session, p_key, p_fingerprint, p_inline);
    IF r_status IS NOT NULL THEN
        RETURN;
    END IF;
    LOOP
        -- The row lock queues this session's writers: the statements below see
        -- every write committed while this one waited.
        SELECT id, item_count, kept_items, last_seq, revision
        INTO v_id, r_held, r_kept, v_last, r_revision
        FROM sessions WHERE tenant = p_tenant AND session_id = p_session FOR UPDATE;
        IF NOT FOUND THEN
            r_held := 0;
            r_kept := 0;
            r_revision := 0;
        END IF;
        IF session_memory_stale(p_expected, r_revision) THEN
            r_status := 'precondition';
            RETURN;
        END IF;
        -- A missing session with nothing to put in it is not made.
        EXIT WHEN v_id IS NOT NULL OR v_count = 0;
        IF p_max_items IS NOT NULL AND v_count > p_max_items THEN
            r_status := 'full';
            RETURN;
        END IF;
        IF session_memory_tenant_full(p_tenant, p_max_sessions) THEN
            r_status := 'sessions';
            RETURN;
        END IF;
        -- Made empty (the write below fills it), its expiry set by that write.
        SELECT * INTO v_id, r_revision
        FROM session_memory_create(p_tenant, p_session, 0, NULL, NULL, NULL, v_now_us);
        v_last := 0;
        EXIT WHEN v_id IS NOT NULL;
        -- Another writer created the session meanwhile: lock it and start over.
    END LOOP;
    IF v_id IS NOT NULL THEN
        -- Counted before deleting, so a refusal changes nothing.
        SELECT count(*) INTO v_removed FROM items
        WHERE session = v_id AND seq >= coalesce(p_from, 0);
        r_held := r_held - v_removed;
        IF p_max_items IS NOT NULL AND r_held + r_kept + v_count > p_max_items THEN
            r_status := 'full';
            RETURN;
        END IF;
        DELETE FROM items WHERE session = v_id AND seq >= coalesce(p_from, 0);
        -- Numbered above every seq the session gave: numbers never repeat.
        INSERT INTO items (session, seq, body)
        SELECT v_id, v_last + ordinality, body
        FROM unnest(p_items) WITH ORDINALITY AS batch(body, ordinality);
        SELECT * INTO r_last, r_revision FROM session_memory_renew(
            v_id, v_count - v_removed, v_count, p_ttl, p_default_ttl, v_now_us);
        IF v_count > 0 THEN
            r_first := v_last + 1;
        ELSE
            r_last := NULL;
        END IF;
    END IF;
    PERFORM session_memory_record_append(
        p_tenant, p_key, p_fingerprint, p_key_ttl, p_session,
        v_count, r_first, r_last, r_revision);
    r_status := 'ok';
END
$$;
"""

# Statuses as migration 9 says: ok (r_count items copied, r_revision: the new
# session's), replay, inflight, mismatch, precondition (r_revision: the source's),
# missing (no source), exists (the target), sessions.
_FORK = """
CREATE OR REPLACE FUNCTION session_memory_fork(
    p_tenant text, p_source text, p_target text, p_through bigint, p_max_sessions bigint,
    p_key text, p_fingerprint text, p_key_ttl float8, p_expected bigint,
    p_default_ttl float8, p_inline bigint,
    OUT r_status text, OUT r_count bigint, OUT r_revision bigint, OUT r_replay text
) LANGUAGE plpgsql AS $$
DECLARE
    v_now_us bigint := session_memory_now_us();
    v_source bigint;
    v_ttl float8;
    v_metadata text;
    v_id bigint;
BEGIN
    SELECT * INTO r_status, r_replay
    FROM session_memory_begin(p_tenant, p_target, p_key, p_fingerprint, p_inline);
    IF r_status IS NOT NULL THEN
        RETURN;
    END IF;
    -- FOR SHARE: writes to the source wait until the copy has committed.
    SELECT id, revision, ttl_seconds, metadata INTO v_source, r_revision, v_ttl, v_metadata
    FROM sessions WHERE tenant = p_tenant AND session_id = p_source
    AND (expires_at IS NULL OR expires_at > now()) FOR SHARE;
    IF NOT FOUND THEN
        r_status := 'missing';
        RETURN;
    END IF;
    IF session_memory_stale(p_expected, r_revision) THEN
        r_status := 'precondition';
        RETURN;
    END IF;
    PERFORM 1 FROM sessions WHERE tenant = p_tenant AND session_id = p_target;
    IF FOUND THEN
        r_status := 'exists';
        RETURN;
    END IF;
    IF session_memory_tenant_full(p_tenant, p_max_sessions) THEN
        r_status := 'sessions';
        RETURN;
    END IF;
    SELECT * INTO v_id, r_revision FROM session_memory_create(
        p_tenant, p_target, 0, v_ttl, p_default_ttl, v_metadata, v_now_us);
    IF v_id IS NULL THEN
        r_status := 'exists';
        RETURN;
    END IF;
    -- One statement, so the copy never leaves the database.
    INSERT INTO items (session, seq, body)
    SELECT v_id, row_number() OVER (ORDER BY seq), body FROM items
    WHERE session = v_source AND seq <= p_through;
    GET DIAGNOSTICS r_count = ROW_COUNT;
    INSERT INTO session_labels
    SELECT tenant, key, value, v_id FROM session_labels WHERE session = v_source;
    UPDATE sessions SET item_count = r_count, last_seq = r_count WHERE id = v_id;
    PERFORM session_memory_record_append(
        p_tenant, p_key, p_fingerprint, p_key_ttl, p_target,
        r_count, CASE WHEN r_count > 0 THEN 1 END, nullif(r_count, 0), r_revision);
    r_status := 'ok';
END
$$;
"""

SHARED_BLOCKS = _HELPERS + _APPEND + _POP_AND_CLEAR + _REPLACE + _FORK
